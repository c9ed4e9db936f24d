"""NDVI with rioxarray + Dask: lazy chunked arrays, written by Dask's threaded scheduler.

The setup a competent user picks on one machine: chunks that are whole multiples of the
inputs' internal blocks, lock-free parallel reads (each task opens its own handle), the
threaded scheduler with one thread per core (GDAL and numpy release the GIL), and a
threading.Lock around the GeoTIFF writer, as rioxarray's documentation recommends.
(dask.distributed is not installed in the bench environment; on one machine the threaded
scheduler is also the lighter choice.)

    python bench/peers/rioxarray_dask.py RED NIR OUT [--workers 2] [--chunk 2048]
"""

from __future__ import annotations

import argparse
import threading

import dask
import numpy as np
import rioxarray

QUANTIFICATION = 10000.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("red")
    parser.add_argument("nir")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--codec", default="deflate")
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()

    chunks = {"band": 1, "y": args.chunk, "x": args.chunk}
    red_dn = rioxarray.open_rasterio(args.red, chunks=chunks, lock=False).squeeze("band")
    nir_dn = rioxarray.open_rasterio(args.nir, chunks=chunks, lock=False).squeeze("band")
    red = red_dn.astype(np.float32) / QUANTIFICATION
    nir = nir_dn.astype(np.float32) / QUANTIFICATION
    ndvi = ((nir - red) / (nir + red)).where((red_dn != 0) & (nir_dn != 0))
    ndvi = ndvi.astype(np.float32).rio.write_nodata(np.nan, encoded=False)
    ndvi = ndvi.rio.write_crs(red_dn.rio.crs).rio.write_transform(red_dn.rio.transform())

    with dask.config.set(scheduler="threads", num_workers=args.workers):
        ndvi.rio.to_raster(
            args.out,
            driver="GTiff",
            dtype="float32",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            predictor=3,
            compress=args.codec.upper(),  # the codec and level madrone writes (see README)
            **{"zstd_level" if args.codec.lower() == "zstd" else "zlevel": args.level},
            lock=threading.Lock(),
        )


if __name__ == "__main__":
    main()
