"""An area across the antimeridian: items in UTM zones 60 and 1, found by a bbox whose west
edge is east of its east edge, mosaic into one continuous grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from madrone.api import mosaic

BOX = (179.9, -17.05, -179.9, -16.95)  # 0.2 x 0.1 degree around 180 E/W


def write_item(folder: Path, zone_epsg: int, lon0: float, lon1: float, red: int, nir: int):
    """A small L2A-like item: red and nir COGs at 60 m in its UTM zone, uniform values."""
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{zone_epsg}", always_xy=True)
    xs, ys = to_utm.transform([lon0, lon1, lon0, lon1], [-17.1, -17.1, -16.9, -16.9])
    left, top = np.floor(min(xs) / 60) * 60, np.ceil(max(ys) / 60) * 60
    width, height = int((max(xs) - left) // 60) + 1, int((top - min(ys)) // 60) + 1
    name = f"S2B_{zone_epsg}_20230815"
    item_dir = folder / name
    item_dir.mkdir(parents=True)
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                   crs=f"EPSG:{zone_epsg}", transform=from_origin(left, top, 60, 60), nodata=0,
                   tiled=True, blockxsize=256, blockysize=256)  # fmt: skip
    for band, value in (("red", red), ("nir", nir)):
        with rasterio.open(item_dir / f"{band}.tif", "w", **profile) as dataset:
            dataset.write(np.full((1, height, width), value, "uint16"))
    bounds = transform_bounds(profile["crs"], "EPSG:4326", left, top - 60 * height,
                              left + 60 * width, top)  # fmt: skip
    item = pystac.Item(name, {"type": "Polygon", "coordinates": [[
        [bounds[0], bounds[1]], [bounds[2], bounds[1]], [bounds[2], bounds[3]],
        [bounds[0], bounds[3]], [bounds[0], bounds[1]]]]}, list(bounds),
        pystac.utils.str_to_datetime("2023-08-15T22:30:00Z"),
        {"eo:cloud_cover": 1.0, "platform": "sentinel-2b"})  # fmt: skip
    for band in ("red", "nir"):
        item.add_asset(band, pystac.Asset(f"./{band}.tif", media_type=pystac.MediaType.COG,
                                          roles=["data"]))  # fmt: skip
    return item


def test_box_across_the_antimeridian_mosaics_both_zones(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    catalog = pystac.Catalog("antimeridian", "two items either side of 180 degrees")
    catalog.add_item(write_item(root, 32760, 179.8, 179.99999, red=500, nir=3500))  # NDVI 0.75
    catalog.add_item(write_item(root, 32701, -179.99999, -179.8, red=1000, nir=3000))  # 0.5
    catalog.normalize_and_save(str(root), pystac.CatalogType.SELF_CONTAINED)
    result = mosaic(bbox=BOX, source=str(root / "catalog.json"), resolution=60,
                    output_dir=str(tmp_path / "out"), workers=1)  # fmt: skip
    files = result.products["NDVI"].files
    with rasterio.open(files["cog"]) as dataset:
        values, transform, crs = dataset.read(1), dataset.transform, dataset.crs
    assert crs.to_epsg() == 32701  # the box's centre, 180 degrees, falls in zone 1
    assert values.shape[1] * 60 > 20_000  # 0.2 degree of longitude, about 21 km, continuous
    assert np.isnan(values).sum() == 0  # no seam at the antimeridian
    to_pixel = ~transform
    to_grid = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    for lon, expected in ((179.95, 0.75), (-179.95, 0.5)):
        col, row = to_pixel * to_grid.transform(lon, -17.0)
        assert values[int(row), int(col)] == pytest.approx(expected, abs=1e-6)
    sources = json.loads(Path(files["json"]).read_text())["properties"]["madrone:sources"]
    assert sorted(s["name"] for s in sources) == ["S2B_32701_20230815", "S2B_32760_20230815"]
    assert all(s["pixels"] > 0 for s in sources)
