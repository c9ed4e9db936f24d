"""``madrone mosaic``: the default sample mosaic works on a fresh clone, and every preflight
error is one clear line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from madrone.cli.main import cli
from tests.cli.test_main import assert_refused

CATALOG = "stac_L2A_T33TWL_T33TWM_202308/catalog.json"
CORNERS = "25.08,-11.42,24.98,-11.32"  # inside the bundled sample mosaic


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["mosaic", *args], catch_exceptions=False, env=env)


def test_corners_without_a_source_read_the_sample_mosaic(outdir: Path) -> None:
    result = invoke("--corners", CORNERS, "-i", "ndvi,ndsi", "-o", str(outdir), "--workers", "1")
    assert result.exit_code == 0, result.output
    stem = "S2A_L2A_T29RKH_20200219_mosaic"
    for index in ("ndvi", "ndsi"):
        for suffix in (".tif", "_count.tif", ".png", ".legend.png", ".json"):
            assert (outdir / f"{stem}_{index}{suffix}").exists(), suffix
    with rasterio.open(outdir / f"{stem}_ndvi.tif") as dataset:
        assert dataset.crs.to_epsg() == 32629 and dataset.res == (10.0, 10.0)
        values = dataset.read(1)
    assert 0.0 < np.nanmedian(values) < 0.2  # hyper-arid desert: sparse shrubs at most


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--corners", "24.98,-11.42,25.08,-11.32"], ["upper-left latitude 24.98", "south of"]),
        (["--corners", "25.08,-11.32,24.98,-11.42"], ["upper-left longitude -11.32", "east of"]),
        (["--corners", "95,-11.42,24.98,-11.32"], ["upper-left latitude 95", "[-90, 90]"]),
        (["--corners", "25.08,-191,24.98,-11.32"], ["upper-left longitude -191"]),
        (["--corners", "25.08,-11.42,25.08,-11.32"], ["empty area"]),
        ([], ["give exactly one area"]),
        (["--corners", CORNERS, "--bbox", "1,2,3,4"], ["exactly one area", "corners and bbox"]),
        (["--bbox", "179.8,-17,-179.8,-16.8"], ["no source covers", "179.8,-17,-179.8,-16.8"]),
        (["--corners", "60,10,59,11"], ["no source covers", "S2A_L2A_T29RKH_20200219_mosaic"]),
        (["--corners", CORNERS, "--band-map", "red=9,nir=4"], ["red=9", "bands 1 to 5"]),
        (
            ["--corners", CORNERS, "--band-map", "red=3,nir=4", "-i", "ndsi"],
            ["band B03 is needed", "only: B04, B08"],
        ),
        (["--corners", CORNERS, "--max-cloud", "10"], ["not a STAC catalog", "--max-cloud"]),
        (["--corners", CORNERS, "--source", "http://127.0.0.1:9/mosaic.tif"], ["mosaic.tif"]),
        (["--corners", CORNERS, "--resolution", "-10"], ["resolution", "-10"]),
    ],
)
def test_preflight_errors_with_the_sample_mosaic(args, fragments, outdir: Path) -> None:
    assert_refused(invoke(*args, "-o", str(outdir)), outdir, *fragments)


def test_area_over_the_limit_gives_both_numbers(outdir: Path) -> None:
    result = invoke("--corners", CORNERS, "-o", str(outdir), env={"MADRONE_MAX_AREA_KM2": "50"})
    assert_refused(result, outdir, "km2, over the limit of 50 km2", "MADRONE_MAX_AREA_KM2")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--datetime", "2022-01-01/2022-01-31"], ["no items", "2022-01-01", "15.2000,45.7000"]),
        (["--datetime", "2023-08-01/2023-08-31", "--max-cloud", "0.1"], ["no items", "0.1"]),
        (["--datetime", "2023-08-31/2023-08-01"], ["2023-08-31/2023-08-01"]),
        (["--datetime", "August"], ["August"]),
        # The items' B11 asset points to the cloud archive, which is not here.
        (["--datetime", "2023-08-15", "-i", "ndsi"], ["B11.tif: band B11 of S2A_33TWL_20230815"]),
    ],
)
def test_preflight_errors_with_the_static_catalog(args, fragments, data_dir, outdir) -> None:
    common = ["--bbox", "15.2,45.7,15.8,46.3", "--resolution", "120"]
    result = invoke(*common, "--source", str(data_dir / CATALOG), *args, "-o", str(outdir))
    assert_refused(result, outdir, *fragments)


def test_antimeridian_search_repeats_the_split_box(data_dir: Path, outdir: Path) -> None:
    result = invoke("--bbox", "179.8,-17,-179.8,-16.8", "--source", str(data_dir / CATALOG),
                    "-o", str(outdir))  # fmt: skip
    assert_refused(result, outdir, "no items", "179.8")


def test_stac_api_key_comes_from_the_settings(data_dir: Path, outdir: Path) -> None:
    from tests.support.stac_api import API_KEY, API_KEY_HEADER, serve_stac_api

    folder = str(data_dir / "stac_L2A_T33TWL_T33TWM_202308")
    args = ["--bbox", "15.2,45.7,15.8,46.3", "--resolution", "240", "--datetime", "2023-08-13",
            "--products", "cog", "-o", str(outdir), "--workers", "1"]  # fmt: skip
    with serve_stac_api(folder, require_key=True) as url:
        refused = invoke("--source", url, *args)
        assert_refused(refused, outdir, url)
        env = {"MADRONE_STAC_HEADERS": f"{API_KEY_HEADER}: {API_KEY}"}
        result = invoke("--source", url, *args, env=env)
    assert result.exit_code == 0, result.output
    with rasterio.open(outdir / "mosaic_20230813_first_ndvi.tif") as dataset:
        assert dataset.crs.to_epsg() == 32633
        assert np.nanmean(dataset.read(1)) > 0.5  # August forest and fields
