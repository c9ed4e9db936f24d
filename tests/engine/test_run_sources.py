"""Every source kind end to end: SAFE folder and zip, STAC item and band files over HTTP
range requests; the products equal those from local files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from madrone import process
from madrone.errors import UnknownDateWarning
from tests.engine.test_run import TINY, assert_close_with_nan, ratio, read
from tests.support.http import read_log, serve_directory
from tests.support.safe import build_mini_safe, zip_folder

NEW = "S2B_MSIL1C_20220615T101559_N0400_R065_T32UPC_20220615T122549"
CATALOG = "stac_L2A_T33TWL_T33TWM_202308"
ITEM = "S2A_33TWM_20230815_0_L2A"


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_safe_product_uses_its_offset(data_dir: Path, tmp_path: Path, zipped: bool) -> None:
    safe = build_mini_safe(tmp_path / "build", data_dir, NEW)
    source = zip_folder(safe, tmp_path / f"{NEW}.zip") if zipped else safe
    result = process([str(source)], ["ndvi"], str(tmp_path / "out"), workers=1)
    toa = data_dir / TINY / f"{NEW}_toa.tif"
    stack = data_dir / TINY / f"{NEW}.tif"
    expected = ratio(read(toa, 8), read(toa, 4))
    expected[(read(stack, 8) == 0) | (read(stack, 4) == 0)] = np.nan
    assert_close_with_nan(read(result.products["NDVI"].files["cog"]), expected)
    assert result.name == NEW


def test_stac_item_over_http_range_reads(data_dir: Path, tmp_path: Path) -> None:
    local = data_dir / CATALOG / "sentinel-2-l2a" / ITEM / f"{ITEM}.json"
    here = process([str(local)], ["ndvi"], str(tmp_path / "local"), workers=1, products=["cog"])
    log_path = str(tmp_path / "requests.log")
    with serve_directory(str(data_dir / CATALOG), log_path) as url:
        there = process([f"{url}/sentinel-2-l2a/{ITEM}/{ITEM}.json"], ["ndvi"],
                        str(tmp_path / "http"), workers=2, products=["cog"])  # fmt: skip
    local_bytes = Path(here.products["NDVI"].files["cog"]).read_bytes()
    assert Path(there.products["NDVI"].files["cog"]).read_bytes() == local_bytes
    ranged = [path for path, byte_range in read_log(log_path) if byte_range.startswith("bytes=")]
    assert any(path.endswith("B04.tif") for path in ranged), "pixels came by range requests"


def test_band_urls(data_dir: Path, tmp_path: Path) -> None:
    folder = data_dir / "L1C_T19UDP_20170729_900m"
    # Files named B04.tif and B08.tif state no date: the run says so and goes on.
    with serve_directory(str(folder)) as url, pytest.warns(UnknownDateWarning, match="B04"):
        result = process([], ["ndvi"], str(tmp_path), workers=1, name="remote",
                         bands={"B04": f"{url}/B04.tif", "nir": f"{url}/B08.tif"},
                         products=["cog"])  # fmt: skip
    assert result.datetime is None and result.undated == ("B04",)
    with rasterio.open(result.products["NDVI"].files["cog"]) as product:
        with rasterio.open(folder / "B04.tif") as red:
            assert product.transform == red.transform
        values = product.read(1)
    red, nir = read(folder / "B04.tif"), read(folder / "B08.tif")
    expected = ratio(nir / 1e4, red / 1e4)
    expected[(red == 0) | (nir == 0)] = np.nan
    assert_close_with_nan(values, expected)
