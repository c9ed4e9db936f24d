"""Small float32 rasters for product tests (the products' inputs are engine outputs)."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def write_raster(
    path, data: np.ndarray, transform=TRANSFORM, nodata=np.nan, crs="EPSG:32633", **options
) -> str:
    """Write a single-band float32 GeoTIFF (EPSG:32633, 10 m pixels by default)."""
    height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=nodata,
        **options,
    ) as ds:
        ds.write(data.astype(np.float32), 1)
    return str(path)
