"""NDVI with plain rasterio + numpy: read block windows, compute, write; one process.

What a careful user writes by hand: iterate over the input's internal blocks (so each
compressed block is decoded once), mask Sentinel-2's nodata (DN 0), compute on reflectance,
write a tiled float32 DEFLATE GeoTIFF with NaN as nodata.

    python bench/peers/rasterio_numpy.py RED NIR OUT
"""

from __future__ import annotations

import sys

import numpy as np
import rasterio

QUANTIFICATION = 10000.0


def ndvi(red_dn: np.ndarray, nir_dn: np.ndarray) -> np.ndarray:
    red = red_dn.astype(np.float32) / QUANTIFICATION
    nir = nir_dn.astype(np.float32) / QUANTIFICATION
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - red) / (nir + red)
    out[(red_dn == 0) | (nir_dn == 0)] = np.nan
    return out


def main(red_path: str, nir_path: str, out_path: str) -> None:
    with rasterio.open(red_path) as red, rasterio.open(nir_path) as nir:
        profile = red.profile
        profile.update(
            driver="GTiff",
            dtype="float32",
            nodata=np.nan,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
            predictor=3,
            zlevel=1,  # the level madrone writes (see README)
        )
        with rasterio.open(out_path, "w", **profile) as dst:
            for _, window in red.block_windows(1):
                dst.write(
                    ndvi(red.read(1, window=window), nir.read(1, window=window)), 1, window=window
                )


if __name__ == "__main__":
    main(*sys.argv[1:])
