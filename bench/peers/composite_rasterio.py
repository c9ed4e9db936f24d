"""A median NDVI composite from a static STAC catalog with pystac + rasterio + numpy, one
process.

What a careful user writes: walk the catalog with pystac, keep the items in the date range
whose footprint meets the area, warp each item's red and NIR (bilinear) and SCL (nearest)
onto the output grid, compute NDVI on reflectance (honouring Earth Search's
``earthsearch:boa_offset_applied`` flag), mask SCL classes that are not clear ground (no data,
saturated, cloud shadow, clouds, cirrus, snow, and values that are no class), merge the items
of one day (least cloudy first, first valid pixel wins), then take the per-pixel median over
days, ignoring NaN.

    python bench/peers/composite_rasterio.py CATALOG OUT --crs EPSG:32633 --bounds L,B,R,T \
        --res 120 --datetime 2023-08-01/2023-08-31
"""

from __future__ import annotations

import argparse
import warnings
from datetime import date

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds

MASKED_SCL = (0, 1, 3, 8, 9, 10, 11)  # madrone's default; classes above 11 do not exist


def warp_band(href: str, shape: tuple[int, int], grid: dict, resampling: Resampling) -> np.ndarray:
    """One band file warped onto the grid as float32, NaN where it has no data."""
    out = np.full(shape, np.nan, dtype=np.float32)
    with rasterio.open(href) as src:
        reproject(
            rasterio.band(src, 1),
            out,
            dst_crs=grid["crs"],
            dst_transform=grid["transform"],
            src_nodata=src.nodata if src.nodata is not None else 0,
            dst_nodata=np.nan,
            resampling=resampling,
        )
    return out


def item_ndvi(item: pystac.Item, shape: tuple[int, int], grid: dict) -> np.ndarray:
    """The item's NDVI on the grid, NaN where masked or outside it."""
    hrefs = {key: item.assets[key].get_absolute_href() for key in ("red", "nir", "scl")}
    red = warp_band(hrefs["red"], shape, grid, Resampling.bilinear)
    nir = warp_band(hrefs["nir"], shape, grid, Resampling.bilinear)
    scl = warp_band(hrefs["scl"], shape, grid, Resampling.nearest)
    applied = item.properties.get(
        "earthsearch:boa_offset_applied", item.properties.get("sentinel:boa_offset_applied")
    )
    baseline = float(item.properties.get("s2:processing_baseline", "0"))
    offset = -1000.0 if baseline >= 4.0 and not applied else 0.0
    red = (red + offset) / 10000.0
    nir = (nir + offset) / 10000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    bad = np.isnan(scl) | np.isin(scl, MASKED_SCL) | (scl > 11)
    ndvi[bad] = np.nan
    return ndvi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("catalog")
    parser.add_argument("out")
    parser.add_argument("--crs", required=True)
    parser.add_argument("--bounds", required=True, help="left,bottom,right,top in the CRS")
    parser.add_argument("--res", type=float, required=True)
    parser.add_argument("--datetime", required=True, help="START/END dates, inclusive")
    args = parser.parse_args()
    left, bottom, right, top = (float(v) for v in args.bounds.split(","))
    width, height = round((right - left) / args.res), round((top - bottom) / args.res)
    grid = {"crs": args.crs, "transform": from_origin(left, top, args.res, args.res)}
    shape = (height, width)
    start, end = (date.fromisoformat(text) for text in args.datetime.split("/"))
    west, south, east, north = transform_bounds(args.crs, "EPSG:4326", left, bottom, right, top)

    items = [
        item
        for item in pystac.Catalog.from_file(args.catalog).get_items(recursive=True)
        if start <= item.datetime.date() <= end
        and item.bbox[0] < east
        and item.bbox[2] > west
        and item.bbox[1] < north
        and item.bbox[3] > south
    ]
    items.sort(key=lambda item: item.properties.get("eo:cloud_cover", 100.0))
    days: dict[date, np.ndarray] = {}
    for item in items:
        ndvi = item_ndvi(item, shape, grid)
        day = days.get(item.datetime.date())
        if day is None:
            days[item.datetime.date()] = ndvi
        else:
            empty = np.isnan(day)
            day[empty] = ndvi[empty]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        median = np.nanmedian(np.stack(list(days.values())), axis=0).astype(np.float32)

    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "float32",
        "crs": args.crs,
        "transform": grid["transform"],
        "nodata": np.nan,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 3,
        "zlevel": 1,
    }
    with rasterio.open(args.out, "w", **profile) as dst:
        dst.write(median, 1)
    print(f"{len(items)} items, {len(days)} days")


if __name__ == "__main__":
    main()
