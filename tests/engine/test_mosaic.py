"""Area mosaics end to end: the sample mosaic over HTTP and the real static STAC catalog of
two adjacent tiles and five dates, against references computed here with rasterio + numpy."""

from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from madrone.api import build_mosaic_spec, mosaic
from madrone.engine.plan import plan
from madrone.engine.spec import JobSpec
from madrone.sources.mosaic import SAMPLE_CORNERS, sample_mosaic
from tests.support.http import read_log, serve_directory

CATALOG = "stac_L2A_T33TWL_T33TWM_202308"
AUGUST = "2023-08-01/2023-08-31"
BOX = (15.2, 45.7, 15.8, 46.3)  # across the overlap of 33TWL (south) and 33TWM (north)
MASKED = (0, 1, 3, 8, 9, 10, 11)


def read(path: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.profile


def warp(path: str, profile: dict, band: int = 1, resampling: str = "bilinear") -> np.ndarray:
    """A band on the output grid, as an independent reference reads it."""
    kind = "uint8" if resampling == "nearest" else "float32"
    with rasterio.open(path) as source, WarpedVRT(
        source, crs=profile["crs"], transform=profile["transform"], width=profile["width"],
        height=profile["height"], resampling=Resampling[resampling], src_nodata=0,
        nodata=0 if kind == "uint8" else np.nan, dtype=kind,
    ) as vrt:  # fmt: skip
        return vrt.read(band)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    red, nir = red / 10000.0, nir / 10000.0  # Earth Search removed the offset already
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((nir - red) / (nir + red)).astype(np.float32)


def items(data_dir: Path) -> list[dict]:
    found = []
    for path in sorted((data_dir / CATALOG / "sentinel-2-l2a").glob("*/*.json")):
        item = json.loads(path.read_text())
        for asset in item["assets"].values():
            asset["href"] = str((path.parent / asset["href"]).resolve())
        found.append(item)
    return sorted(found, key=lambda i: i["properties"]["eo:cloud_cover"])


def item_ndvi(item: dict, profile: dict) -> np.ndarray:
    """One item's NDVI on the grid, SCL-masked like madrone's default."""
    assets = item["assets"]
    values = ndvi(warp(assets["red"]["href"], profile), warp(assets["nir"]["href"], profile))
    scl = warp(assets["scl"]["href"], profile, resampling="nearest")
    values[np.isin(scl, MASKED) | (scl > 11)] = np.nan
    return values


def daily_ndvi(data_dir: Path, profile: dict) -> dict[str, np.ndarray]:
    """Per date, the first valid pixel of the two tiles (least cloudy first)."""
    days: dict[str, np.ndarray] = {}
    for item in items(data_dir):
        day = item["properties"]["datetime"][:10]
        values = item_ndvi(item, profile)
        if day not in days:
            days[day] = values
        else:
            fill = np.isnan(days[day])
            days[day][fill] = values[fill]
    return days


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(actual[valid], expected[valid], atol=2e-6)


def test_sample_mosaic_over_http_equals_a_warped_reference(tmp_path: Path) -> None:
    folder, name = os.path.split(sample_mosaic())
    log = str(tmp_path / "requests.log")
    with serve_directory(folder, log) as url:
        result = mosaic(corners=SAMPLE_CORNERS, source=f"{url}/{name}", indices=["ndvi"],
                        output_dir=str(tmp_path / "out"), workers=2)  # fmt: skip
    values, profile = read(result.products["NDVI"].files["cog"])
    assert profile["crs"].to_epsg() == 32629  # 11.4 W: UTM zone 29, north
    assert profile["transform"].a == 10.0
    left, top = profile["transform"].c, profile["transform"].f
    right, bottom = left + 10.0 * profile["width"], top - 10.0 * profile["height"]
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32629", always_xy=True)
    north, west, south, east = SAMPLE_CORNERS
    for lon, lat in ((west, north), (east, north), (west, south), (east, south)):
        x, y = to_utm.transform(lon, lat)
        assert left <= x <= right and bottom <= y <= top
        assert min(x - left, right - x, y - bottom, top - y) < 10 * 300  # no wide margin
    expected = ndvi(warp(sample_mosaic(), profile, 3), warp(sample_mosaic(), profile, 4))
    assert_same(values, expected)
    assert np.count_nonzero(~np.isnan(values)) > 0.99 * values.size
    ranges = [r for path, r in read_log(log) if path.endswith(name) and r]
    assert ranges, "the mosaic was read by ranges"
    assert all(r.startswith("bytes=") for r in ranges)


@pytest.fixture(scope="module")
def median_run(data_dir: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("median")
    result = mosaic(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"), datetime=AUGUST,
                    method="median", resolution=120, output_dir=str(out), workers=2)  # fmt: skip
    return result.products["NDVI"].files


def test_median_over_five_dates_equals_the_reference(data_dir: Path, median_run: dict) -> None:
    values, profile = read(median_run["cog"])
    assert profile["crs"].to_epsg() == 32633
    days = daily_ndvi(data_dir, profile)
    assert sorted(days) == ["2023-08-10", "2023-08-13", "2023-08-15", "2023-08-18", "2023-08-20"]
    stack = np.stack(list(days.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    assert_same(values, expected)
    counts, _ = read(median_run["count"])
    np.testing.assert_array_equal(counts, np.count_nonzero(~np.isnan(stack), axis=0))
    assert counts.max() == 5 and counts.dtype == np.uint16


def test_provenance_lists_the_items_and_the_observations(median_run: dict) -> None:
    assert Path(median_run["cog"]).name == "mosaic_20230810-20230820_median_ndvi.tif"
    item = json.loads(Path(median_run["json"]).read_text())
    props = item["properties"]
    sources = props["madrone:sources"]
    assert len(sources) == 10 and all(s["pixels"] > 0 for s in sources)
    assert {s["tile"] for s in sources} == {"33TWL", "33TWM"}
    assert props["madrone:method"] == "median" and props["madrone:days"] == 5
    assert props["madrone:search"]["datetime"] == AUGUST
    assert props["start_datetime"].startswith("2023-08-10")
    assert props["end_datetime"].startswith("2023-08-20")
    counts, _ = read(median_run["count"])
    by_count = {str(n): int(c) for n, c in enumerate(np.bincount(counts.ravel())) if c}
    assert props["madrone:observations"]["pixels_by_count"] == by_count
    assert "count" in item["assets"]
    # The Earth Search trap: the flag wins over raster:bands' -0.1, for every item.
    assert all(s["radiometry"].startswith("offset 0 DN") for s in sources)
    assert all("earthsearch:boa_offset_applied is true" in s["radiometry"] for s in sources)


def test_two_adjacent_tiles_mosaic_without_a_seam(data_dir: Path, tmp_path: Path) -> None:
    result = mosaic(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"),
                    datetime="2023-08-15", resolution=120, output_dir=str(tmp_path),
                    products=["cog"], workers=2)  # fmt: skip
    values, profile = read(result.products["NDVI"].files["cog"])
    both = [item_ndvi(i, profile) for i in items(data_dir) if "20230815" in i["id"]]
    assert len(both) == 2
    last_row = lambda v: np.flatnonzero(~np.isnan(v).all(axis=1)).max()  # noqa: E731
    south, north = sorted(both, key=last_row, reverse=True)
    union = ~np.isnan(south) | ~np.isnan(north)
    # Each tile alone leaves a large part of the box empty; together they cover it.
    assert np.isnan(south).mean() > 0.2 and np.isnan(north).mean() > 0.2
    assert union.mean() > 0.97
    np.testing.assert_array_equal(~np.isnan(values), union)
    # 33TWL (0.204 % cloud) before 33TWM (0.207 %): least cloudy first.
    assert_same(values, np.where(np.isnan(south), north, south))
    rows = np.flatnonzero((~np.isnan(south) & ~np.isnan(north)).any(axis=1))
    assert rows.size > 50  # the 10 km overlap at 120 m
    assert (~np.isnan(values[rows.min() - 5 : rows.max() + 5])).mean() > 0.99


def test_scl_cloud_pixels_are_masked(data_dir: Path, tmp_path: Path) -> None:
    result = mosaic(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"),
                    datetime="2023-08-18", resolution=120, output_dir=str(tmp_path),
                    products=["cog"], workers=2)  # fmt: skip
    values, profile = read(result.products["NDVI"].files["cog"])
    cloudy = np.ones(values.shape, bool)
    for item in items(data_dir):
        if "20230818" in item["id"]:
            scl = warp(item["assets"]["scl"]["href"], profile, resampling="nearest")
            cloudy &= np.isin(scl, (0, 3, 8, 9, 10))
    assert cloudy.sum() > 10_000  # a cloudy day: about 45 %
    assert np.isnan(values[cloudy]).all()
    assert_same(values, daily_ndvi(data_dir, profile)["2023-08-18"])


def test_max_ndvi_is_the_greenest_day(data_dir: Path, tmp_path: Path) -> None:
    result = mosaic(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"), datetime=AUGUST,
                    method="max-ndvi", resolution=120, output_dir=str(tmp_path),
                    products=["cog"], workers=2)  # fmt: skip
    values, profile = read(result.products["NDVI"].files["cog"])
    stack = np.stack(list(daily_ndvi(data_dir, profile).values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert_same(values, np.nanmax(stack, axis=0))


def test_pixels_outside_the_polygon_are_nodata(tmp_path: Path) -> None:
    north, west, south, east = SAMPLE_CORNERS
    triangle = [[west, south], [east, south], [west, north], [west, south]]
    geometry = {"type": "Polygon", "coordinates": [triangle]}
    boxed = mosaic(corners=SAMPLE_CORNERS, output_dir=str(tmp_path / "box"), products=["cog"])
    clipped = mosaic(geometry=geometry, output_dir=str(tmp_path / "poly"), products=["cog"])
    inside, profile = read(clipped.products["NDVI"].files["cog"])
    whole, _ = read(boxed.products["NDVI"].files["cog"])
    assert inside.shape == whole.shape
    valid = ~np.isnan(inside)
    assert 0.45 < valid.mean() < 0.55  # half the box
    np.testing.assert_array_equal(inside[valid], whole[valid])
    to_pixel = ~profile["transform"]
    to_utm = Transformer.from_crs("EPSG:4326", profile["crs"], always_xy=True)
    probes = ((west + 0.01, south + 0.01, True), (east - 0.01, north - 0.01, False))
    for lon, lat, expected in probes:
        col, row = to_pixel * to_utm.transform(lon, lat)
        assert valid[int(row), int(col)] == expected  # south-west corner in, north-east out


def test_planned_spec_carries_the_items_so_workers_never_search(
    data_dir: Path, tmp_path: Path
) -> None:
    catalog = str(data_dir / CATALOG / "catalog.json")
    spec = build_mosaic_spec(
        bbox=BOX, source=catalog, datetime="2023-08-13", resolution=120, output_dir=str(tmp_path)
    )
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    planned = plan(spec)
    assert [s.item["id"] for s in planned.spec.sources] == [
        "S2B_33TWM_20230813_0_L2A",
        "S2B_33TWL_20230813_0_L2A",
    ]  # least cloudy first
    wire = json.loads(json.dumps(planned.spec.to_dict()))
    wire["search"]["catalog"] = str(tmp_path / "gone.json")  # a worker cannot search
    again = plan(JobSpec.from_dict(wire), writes=False)
    assert again.context.groups == planned.context.groups == ((0, 1),)
    assert again.grid == planned.grid


def test_scenes_by_day_are_grouped_and_ordered(data_dir: Path, tmp_path: Path) -> None:
    spec = build_mosaic_spec(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"),
                             datetime=AUGUST, max_cloud=50, resolution=120,
                             output_dir=str(tmp_path))  # fmt: skip
    planned = plan(spec)
    names = [scene.name for scene in planned.scenes]
    days = defaultdict(set)
    for group in planned.context.groups:
        for position in group:
            days[tuple(group)].add(names[position][10:18])
    assert all(len(dates) == 1 for dates in days.values())
    assert len(planned.context.groups) == 4  # 08-10 is 70 % cloudy on both tiles
    assert names[0] == "S2A_33TWL_20230815_0_L2A"  # 0.20 % cloud


def test_static_catalog_over_http_gives_the_same_median(
    data_dir: Path, tmp_path: Path, median_run: dict
) -> None:
    with serve_directory(str(data_dir / CATALOG)) as url:
        result = mosaic(bbox=BOX, source=f"{url}/catalog.json", datetime=AUGUST, method="median",
                        resolution=120, output_dir=str(tmp_path), workers=2)  # fmt: skip
    files = result.products["NDVI"].files
    remote, _ = read(files["cog"])
    local, _ = read(median_run["cog"])
    np.testing.assert_array_equal(remote, local)
    sources = json.loads(Path(files["json"]).read_text())["properties"]["madrone:sources"]
    assert all(s["href"].startswith(url) for s in sources)


def test_warped_mosaic_values_do_not_depend_on_the_tile_size(tmp_path: Path) -> None:
    # A per-band view of a multi-band file, warped alone, broke this by up to 0.08 NDVI.
    runs = [
        mosaic(corners=SAMPLE_CORNERS, indices=["ndvi", "ndsi"], tile_size=size,
               output_dir=str(tmp_path / str(size)), products=["cog"], workers=2)
        for size in (300, 1024)
    ]  # fmt: skip
    for index in ("NDVI", "NDSI"):
        small, large = (read(run.products[index].files["cog"])[0] for run in runs)
        np.testing.assert_array_equal(small, large)


def test_first_gives_the_same_values_with_or_without_the_count(
    data_dir: Path, tmp_path: Path
) -> None:
    # Without "count" the first-valid path stops reading once every pixel is filled.
    request = dict(bbox=BOX, source=str(data_dir / CATALOG / "catalog.json"), datetime=AUGUST,
                   indices=["ndvi", "ndwi"], resolution=240, workers=2)  # fmt: skip
    fast = mosaic(output_dir=str(tmp_path / "fast"), products=["cog"], **request)
    counted = mosaic(output_dir=str(tmp_path / "counted"), products=["cog", "count"], **request)
    for index in ("NDVI", "NDWI"):
        a, _ = read(fast.products[index].files["cog"])
        b, _ = read(counted.products[index].files["cog"])
        np.testing.assert_array_equal(a, b)
    counts, _ = read(counted.products["NDVI"].files["count"])
    assert counts.max() == 5


def test_area_grid_keeps_the_items_pixel_edges(data_dir: Path, tmp_path: Path) -> None:
    catalog = str(data_dir / CATALOG / "catalog.json")
    spec = build_mosaic_spec(
        bbox=BOX, source=catalog, datetime="2023-08-15", resolution=120, output_dir=str(tmp_path)
    )
    planned = plan(spec)
    left, top = planned.grid.transform[2], planned.grid.transform[5]
    assert (left % 120, top % 120) == (499980 % 120, 5100000 % 120)  # 33TWL's origin
    first = planned.context.scenes[0]
    assert first.name == "S2A_33TWL_20230815_0_L2A" and first.bands["B04"].direct
    # 33TWM's rows are half a 120 m pixel off 33TWL's: it is resampled.
    assert not planned.context.scenes[1].bands["B04"].direct
    spec10 = build_mosaic_spec(corners=SAMPLE_CORNERS, output_dir=str(tmp_path))
    grid10 = plan(spec10).grid  # a geographic mosaic: edges on multiples of 10 m
    assert (grid10.transform[2] % 10, grid10.transform[5] % 10) == (0, 0)
