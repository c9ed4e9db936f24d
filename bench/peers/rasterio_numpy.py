"""NDVI with plain rasterio + numpy: read block windows, compute, write; one process.

What a careful user writes by hand: iterate over the input's internal blocks (so each
compressed block is decoded once), mask Sentinel-2's nodata (DN 0), compute on reflectance,
write a tiled float32 GeoTIFF with NaN as nodata, in the codec and level madrone writes.

    python bench/peers/rasterio_numpy.py RED NIR OUT [--codec zstd] [--level 1]
"""

from __future__ import annotations

import argparse

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


def codec_options(codec: str, level: int) -> dict:
    """GDAL creation options of a codec at a level, with the floating-point predictor."""
    key = "zstd_level" if codec.lower() == "zstd" else "zlevel"
    return {"compress": codec.upper(), "predictor": 3, key: level}


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("red", "nir", "out"):
        parser.add_argument(name)
    parser.add_argument("--codec", default="deflate")
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()
    with rasterio.open(args.red) as red, rasterio.open(args.nir) as nir:
        profile = red.profile
        profile.update(
            driver="GTiff",
            dtype="float32",
            nodata=np.nan,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            **codec_options(args.codec, args.level),  # what madrone writes (see README)
        )
        with rasterio.open(args.out, "w", **profile) as dst:
            for _, window in red.block_windows(1):
                dst.write(
                    ndvi(red.read(1, window=window), nir.read(1, window=window)), 1, window=window
                )


if __name__ == "__main__":
    main()
