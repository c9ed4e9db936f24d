"""Sources whose acquisition date is unknown (bare band files, a mosaic without an
ACQUISITION_DATE tag) make every default product; the STAC item says the date is unknown
in a form STAC accepts, a warning names the source, and the result exposes no date."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict

from madrone import mosaic, process
from madrone.errors import UnknownDateWarning
from madrone.sources.mosaic import SAMPLE_CORNERS, sample_mosaic

T19 = "L1C_T19UDP_20170729_900m"
ALL_KINDS = {"cog", "png", "legend", "json"}


def undated_folder(data_dir: Path, folder: Path, names: dict[str, str]) -> Path:
    """Copy real band files under names that carry no date (``{"B04": "red.tif"}``)."""
    folder.mkdir(parents=True)
    for band, name in names.items():
        shutil.copy(data_dir / T19 / f"{band}.tif", folder / name)
    return folder


def undated_mosaic(path: Path) -> Path:
    """The sample mosaic's pixels and band names, without its ACQUISITION_DATE tag and
    under a name with no date in it."""
    with rasterio.open(sample_mosaic()) as source:
        profile, data, names = source.profile, source.read(), source.descriptions
        assert source.tags()["ACQUISITION_DATE"] == "2020-02-19"
    with rasterio.open(path, "w", **profile) as target:
        target.write(data)
        target.descriptions = names
    with rasterio.open(path) as check:
        assert "ACQUISITION_DATE" not in check.tags()
    return path


def item_of(result, index: str = "NDVI") -> dict:
    return json.loads(Path(result.products[index].files["json"]).read_text())


def assert_unknown_date(item: dict) -> None:
    props = item["properties"]
    assert props["datetime"] is None and props["madrone:datetime"] == "unknown"
    assert (props["start_datetime"], props["end_datetime"]) == (
        "2015-06-23T00:00:00Z", "9999-12-31T23:59:59Z",
    )  # fmt: skip
    assert pystac.Item.from_dict(item).datetime is None
    validate_dict(item, extensions=[])  # the core STAC item schema, bundled with pystac


@pytest.mark.parametrize(
    "names", [{"B04": "B04.tif", "B08": "B08.tif"}, {"B04": "red.tif", "B08": "nir.tif"}],
    ids=["band-ids", "common-names"],
)  # fmt: skip
def test_band_files_without_a_date_make_every_product(
    data_dir: Path, tmp_path: Path, names: dict[str, str]
) -> None:
    folder = undated_folder(data_dir, tmp_path / "scene", names)
    with pytest.warns(UnknownDateWarning, match=r"^scene: acquisition date unknown") as caught:
        result = process([str(folder)], ["ndvi"], str(tmp_path / "out"), workers=1)
    assert len(caught) == 1
    assert set(result.products["NDVI"].files) == ALL_KINDS
    assert (result.datetime, result.start_datetime, result.end_datetime) == (None, None, None)
    assert result.undated == ("scene",)
    item = item_of(result)
    assert_unknown_date(item)
    assert item["properties"]["madrone:warnings"] == result.warnings
    assert "scene: acquisition date unknown" in result.warnings[0]
    with (
        rasterio.open(data_dir / T19 / "B04.tif") as red,
        rasterio.open(data_dir / T19 / "B08.tif") as nir,
    ):
        r, n = red.read(1).astype(float), nir.read(1).astype(float)
    with rasterio.open(result.products["NDVI"].files["cog"]) as product:
        values = product.read(1)
    valid = (r > 0) & (n > 0)
    r, n = r[valid], n[valid]
    np.testing.assert_allclose(values[valid], (n - r) / (n + r), atol=1e-6)
    assert np.isnan(values[~valid]).all()


def test_explicit_band_files_without_a_date(data_dir: Path, tmp_path: Path) -> None:
    folder = undated_folder(data_dir, tmp_path / "files", {"B04": "red.tif", "B08": "nir.tif"})
    with pytest.warns(UnknownDateWarning, match="red: acquisition date unknown"):
        bands = {"red": str(folder / "red.tif"), "nir": str(folder / "nir.tif")}
        result = process([], ["ndvi"], str(tmp_path / "out"), workers=1, bands=bands)
    assert result.name == "red" and result.datetime is None
    assert_unknown_date(item_of(result))


def test_a_stated_date_is_recorded_and_no_warning_given(data_dir: Path, tmp_path: Path) -> None:
    folder = undated_folder(data_dir, tmp_path / "scene", {"B04": "B04.tif", "B08": "B08.tif"})
    result = process([str(folder)], ["ndvi"], str(tmp_path / "out"), workers=1,
                     datetime="2017-07-29T15:39:11Z")  # fmt: skip
    moment = dt.datetime(2017, 7, 29, 15, 39, 11, tzinfo=dt.UTC)
    assert (result.datetime, result.start_datetime, result.end_datetime) == (moment,) * 3
    assert result.undated == () and result.warnings == []
    props = item_of(result)["properties"]
    assert props["datetime"] == "2017-07-29T15:39:11Z" and "madrone:datetime" not in props


def test_a_dated_source_beside_an_undated_one_gives_the_date(
    data_dir: Path, tmp_path: Path
) -> None:
    undated = undated_folder(data_dir, tmp_path / "copy", {"B04": "B04.tif", "B08": "B08.tif"})
    with pytest.warns(UnknownDateWarning, match="copy: .*dates are those of the other sources"):
        result = process([str(data_dir / T19), str(undated)], ["ndvi"], str(tmp_path / "out"),
                         workers=1)  # fmt: skip
    assert result.datetime == dt.datetime(2017, 7, 29, tzinfo=dt.UTC)
    assert result.undated == ("copy",)
    props = item_of(result)["properties"]
    assert props["datetime"] == "2017-07-29T00:00:00Z" and "madrone:datetime" not in props


def test_mosaic_raster_without_acquisition_date(tmp_path: Path) -> None:
    source = undated_mosaic(tmp_path / "cloudless_mosaic.tif")
    with pytest.warns(UnknownDateWarning, match="^cloudless_mosaic: acquisition date unknown"):
        result = mosaic(corners=SAMPLE_CORNERS, source=str(source), indices=["ndvi", "ndsi"],
                        output_dir=str(tmp_path / "out"), workers=1)  # fmt: skip
    assert result.datetime is None and result.undated == ("cloudless_mosaic",)
    for index in ("NDVI", "NDSI"):
        assert set(result.products[index].files) == {*ALL_KINDS, "count"}
        assert_unknown_date(item_of(result, index))
    assert result.products["NDVI"].stats["valid_pixels"] > 0


def test_mosaic_date_given_by_the_request(tmp_path: Path) -> None:
    source = undated_mosaic(tmp_path / "cloudless_mosaic.tif")
    result = mosaic(corners=SAMPLE_CORNERS, source=str(source), datetime="2020-02-19",
                    output_dir=str(tmp_path / "out"), products=["cog", "json"])  # fmt: skip
    assert result.datetime == dt.datetime(2020, 2, 19, tzinfo=dt.UTC) and result.warnings == []
    assert item_of(result)["properties"]["datetime"] == "2020-02-19T00:00:00Z"
