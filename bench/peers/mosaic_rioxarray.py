"""NDVI of an area from a mosaic with rioxarray + Dask: a WarpedVRT opened lazily in chunks,
computed and written by Dask's threaded scheduler.

rioxarray's ``rio.reproject`` is eager (it loads the whole source into memory), so the lazy,
parallel way to reproject is the one rioxarray documents: open a ``WarpedVRT`` with
``chunks`` and ``lock=False``, so each task warps its own chunk through its own handle.
Chunks are multiples of the 512 px output blocks; the writer takes a lock, as rioxarray's
documentation recommends.

    python bench/peers/mosaic_rioxarray.py SRC OUT --crs EPSG:32633 --bounds L,B,R,T --res 10
"""

from __future__ import annotations

import argparse
import threading

import dask
import numpy as np
import rasterio
import rioxarray
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

QUANTIFICATION = 10000.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--crs", required=True)
    parser.add_argument("--bounds", required=True, help="left,bottom,right,top in the CRS")
    parser.add_argument("--res", type=float, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args()
    left, bottom, right, top = (float(v) for v in args.bounds.split(","))
    width, height = round((right - left) / args.res), round((top - bottom) / args.res)

    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(args.src) as src,
        WarpedVRT(
            src,
            crs=args.crs,
            transform=from_origin(left, top, args.res, args.res),
            width=width,
            height=height,
            resampling=Resampling.bilinear,
        ) as vrt,
    ):
        bands = rioxarray.open_rasterio(
            vrt, chunks={"band": 1, "y": args.chunk, "x": args.chunk}, lock=False
        )
        red_dn = bands.isel(band=src.descriptions.index("B04"))
        nir_dn = bands.isel(band=src.descriptions.index("B08"))
        red = red_dn.astype(np.float32) / QUANTIFICATION
        nir = nir_dn.astype(np.float32) / QUANTIFICATION
        ndvi = ((nir - red) / (nir + red)).where((red_dn != 0) & (nir_dn != 0))
        ndvi.attrs.clear()  # the mosaic's band names and scales describe four bands, not this
        ndvi = ndvi.astype(np.float32).rio.write_nodata(np.nan, encoded=False)
        with dask.config.set(scheduler="threads", num_workers=args.workers):
            ndvi.rio.to_raster(
                args.out,
                driver="GTiff",
                dtype="float32",
                tiled=True,
                blockxsize=512,
                blockysize=512,
                compress="DEFLATE",
                predictor=3,
                zlevel=1,  # the level madrone writes
                lock=threading.Lock(),
            )


if __name__ == "__main__":
    main()
