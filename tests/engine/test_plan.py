"""Preflight: the output grid, tiles and checks, decided from headers before any pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from madrone import process
from madrone.api import build_spec
from madrone.engine.plan import plan
from madrone.engine.spec import JobSpec
from madrone.errors import GridError, InputError
from tests.engine.test_run import T29, assert_close_with_nan, read

T18 = "L1C_T18SVG_20160112_crop"


def test_default_grid_is_the_finest_bands_and_tiles_align_to_blocks(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi", "ndsi"]))
    with rasterio.open(data_dir / T29 / "B04.tif") as red:
        assert checked.grid.transform == tuple(red.transform)[:6]
        assert (checked.grid.height, checked.grid.width) == red.shape
        assert checked.grid.crs == red.crs.to_string()
    # B04 has 512 px blocks at 100 m, B11 and SCL 512 px blocks at 200 m: a 1024 px tile
    # covers whole blocks of every band.
    assert checked.tile_size == 1024
    assert len(checked.tiles) == 4
    read_b04 = checked.context.scenes[0].bands["B04"]
    read_b11 = checked.context.scenes[0].bands["B11"]
    assert read_b04.direct and not read_b11.direct


def test_resolution_keeps_the_pixel_edges(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi"], resolution=300))
    with rasterio.open(data_dir / T29 / "B04.tif") as red:
        left, top = red.transform.c, red.transform.f
        assert checked.grid.res_x == 300 and checked.grid.res_y == 300
        assert (checked.grid.transform[2] - left) % 300 == 0
        assert (top - checked.grid.transform[5]) % 300 == 0
        assert checked.grid.width == int(np.ceil(red.width * 100 / 300))


def test_another_crs_covers_the_data(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T18)], ["ndvi"], crs="EPSG:32617"))
    assert checked.grid.crs == "EPSG:32617"
    with rasterio.open(data_dir / T18 / "B04.tif") as red:
        expected = transform_bounds(red.crs, "EPSG:32617", *red.bounds)
    left, bottom, right, top = checked.grid.bounds
    assert left <= expected[0] and bottom <= expected[1]
    assert right >= expected[2] and top >= expected[3]
    assert not checked.context.scenes[0].bands["B04"].direct


def test_average_to_a_coarser_grid_equals_block_means(data_dir: Path, tmp_path: Path) -> None:
    result = process([str(data_dir / T29)], ["ndvi"], str(tmp_path), resolution=200,
                     resampling="average", workers=1, products=["cog"])  # fmt: skip
    red, nir = (read(data_dir / T29 / f"{b}.tif").astype(np.float64) for b in ("B04", "B08"))

    def block_mean(band: np.ndarray) -> np.ndarray:
        valid = band != 0
        sums = np.add.reduceat(np.add.reduceat(np.where(valid, band, 0), range(0, 1098, 2), 0),
                               range(0, 1098, 2), 1)  # fmt: skip
        counts = np.add.reduceat(np.add.reduceat(valid.astype(int), range(0, 1098, 2), 0),
                                 range(0, 1098, 2), 1)  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts

    r, n = block_mean(red), block_mean(nir)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (n - r) / (n + r)
    scl = read(data_dir / T29 / "SCL.tif")  # 200 m: already on the output grid
    expected[np.isin(scl, (0, 1, 3, 8, 9, 10, 11))] = np.nan
    actual = read(result.products["NDVI"].files["cog"])
    assert actual.shape == (549, 549)
    assert_close_with_nan(actual, expected, atol=1e-5)


def test_job_spec_is_plain_json(data_dir: Path) -> None:
    spec = build_spec([str(data_dir / T29)], ["ndvi"], "out", expressions={"x": "B08-B04"},
                      bbox=(-8.9, 24.9, -8.5, 25.2), mask_classes=(3, 8, 9))  # fmt: skip
    text = json.dumps(spec.to_dict())
    assert JobSpec.from_dict(json.loads(text)) == spec


def test_mosaic_grid_is_the_union_of_the_scenes(data_dir: Path) -> None:
    catalog = data_dir / "stac_L2A_T33TWL_T33TWM_202308/sentinel-2-l2a"
    items = [catalog / f"S2A_33TW{t}_20230815_0_L2A/S2A_33TW{t}_20230815_0_L2A.json"
             for t in ("M", "L")]  # fmt: skip
    checked = plan(build_spec([str(p) for p in items], ["ndvi"]))
    bounds = []
    for item in items:
        with rasterio.open(item.parent / "B04.tif") as red:
            bounds.append(red.bounds)
    # The grid follows the first scene's pixels; the tiles' origins are 100020 m apart, not
    # a multiple of these 120 m files' pixels, so the second scene is resampled onto it.
    assert checked.context.scenes[0].bands["B04"].direct
    assert not checked.context.scenes[1].bands["B04"].direct
    left, bottom, right, top = checked.grid.bounds
    assert left == min(b.left for b in bounds) and top == max(b.top for b in bounds)
    assert right - 120 < max(b.right for b in bounds) <= right
    assert bottom <= min(b.bottom for b in bounds) < bottom + 120


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"resampling": "lanczos"}, InputError, "lanczos"),
        ({"products": ["cog", "pdf"]}, InputError, "pdf"),
        ({"tile_size": 4}, InputError, "tile size"),
        ({"mask_classes": (3, 42)}, InputError, "42"),
        ({"bbox": (10, 45, 9, 46)}, InputError, "west 10"),
        ({"bbox": (10, 95, 11, 96)}, InputError, "south 95"),
        ({"crs": "EPSG:999999"}, InputError, "EPSG:999999"),
        ({"resolution": -5}, InputError, "-5"),
        ({"name": "fields/north"}, InputError, "name 'fields/north'"),
        ({"name": ".."}, InputError, "only dots or blanks"),
        ({"name": "a\\b"}, InputError, "file prefix"),
    ],
)
def test_parameters_are_refused_before_any_pixel(
    data_dir: Path, options: dict, error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        plan(build_spec([str(data_dir / T29)], ["ndvi"], **options))


def test_grid_error_is_an_input_error() -> None:
    assert issubclass(GridError, InputError)
