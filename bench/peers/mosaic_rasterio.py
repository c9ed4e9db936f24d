"""NDVI of an area from a mosaic with plain rasterio + numpy: a WarpedVRT onto the output
grid, read block by block, one process.

What a careful user writes: open the mosaic (a path or an http(s) URL, read with range
requests), find red and NIR by band description, warp them on the fly onto the UTM grid with
bilinear resampling, compute NDVI on reflectance with DN 0 as nodata, write a tiled float32
DEFLATE GeoTIFF with NaN as nodata.

    python bench/peers/mosaic_rasterio.py SRC OUT --crs EPSG:32633 --bounds L,B,R,T --res 10
"""

from __future__ import annotations

import argparse

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

QUANTIFICATION = 10000.0
BLOCK = 512


def ndvi(red_dn: np.ndarray, nir_dn: np.ndarray) -> np.ndarray:
    red = red_dn.astype(np.float32) / QUANTIFICATION
    nir = nir_dn.astype(np.float32) / QUANTIFICATION
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - red) / (nir + red)
    out[(red_dn == 0) | (nir_dn == 0)] = np.nan
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--crs", required=True)
    parser.add_argument("--bounds", required=True, help="left,bottom,right,top in the CRS")
    parser.add_argument("--res", type=float, required=True)
    args = parser.parse_args()
    left, bottom, right, top = (float(v) for v in args.bounds.split(","))
    width, height = round((right - left) / args.res), round((top - bottom) / args.res)
    transform = from_origin(left, top, args.res, args.res)

    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(args.src) as src,
        WarpedVRT(
            src,
            crs=args.crs,
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.bilinear,
        ) as vrt,
    ):
        red_band = src.descriptions.index("B04") + 1
        nir_band = src.descriptions.index("B08") + 1
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "float32",
            "crs": args.crs,
            "transform": transform,
            "nodata": np.nan,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
            "compress": "deflate",
            "predictor": 3,
            "zlevel": 1,  # the level madrone writes
        }
        with rasterio.open(args.out, "w", **profile) as dst:
            for row in range(0, height, BLOCK):
                for col in range(0, width, BLOCK):
                    window = Window(col, row, min(BLOCK, width - col), min(BLOCK, height - row))
                    red, nir = vrt.read((red_band, nir_band), window=window)
                    dst.write(ndvi(red, nir), 1, window=window)


if __name__ == "__main__":
    main()
