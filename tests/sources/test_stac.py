"""STAC items: asset mapping, radiometry (the Earth Search offset flag), hrefs, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from madrone.bands import ESA_ORDER
from madrone.errors import SourceError
from madrone.sources.base import BandRef
from madrone.sources.catalog import SearchSpec, search_items
from madrone.sources.stac import read_stac_item
from tests.support.http import serve_directory
from tests.support.stac_api import serve_stac_api

CATALOG = "stac_L2A_T33TWL_T33TWM_202308"
ITEM = "S2A_33TWM_20230815_0_L2A"
LOCAL_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}
# 64 x 64 pixels of the 120 m files, almost all SCL class 4 (vegetation): forest.
FOREST = Window(col_off=704, row_off=672, width=64, height=64)
ALL_L2A_BANDS = sorted([*(b for b in ESA_ORDER if b != "B10"), "SCL"])


def _item_path(data_dir: Path, item_id: str = ITEM) -> Path:
    return data_dir / CATALOG / "sentinel-2-l2a" / item_id / f"{item_id}.json"


def _catalog_items(data_dir: Path) -> list[Path]:
    items = sorted((data_dir / CATALOG / "sentinel-2-l2a").glob("*/*.json"))
    assert len(items) == 10
    return items


def _red_reflectance(ref: BandRef) -> np.ndarray:
    with rasterio.open(ref.uri) as band:
        dn = band.read(ref.band_index, window=FOREST).astype("float64")
    return (dn[dn != ref.nodata] + ref.offset) * ref.scale


def _copy_item(data_dir: Path, tmp_path: Path, edit) -> Path:
    """Copy the item into tmp_path with local hrefs made absolute, then let ``edit`` change it."""
    source = _item_path(data_dir)
    item = json.loads(source.read_text())
    for asset in item["assets"].values():
        if "://" not in asset["href"]:
            asset["href"] = str(source.parent / asset["href"])
    item["links"] = [link for link in item["links"] if link["rel"] not in ("root", "parent")]
    edit(item)
    target = tmp_path / f"{ITEM}.json"
    target.write_text(json.dumps(item))
    return target


# --- the Earth Search items of baseline 05.09, offset already removed ------------------------


def test_every_catalog_item_honours_the_offset_flag(data_dir: Path) -> None:
    for path in _catalog_items(data_dir):
        scene = read_stac_item(str(path))
        assert scene.name == path.stem
        assert sorted(scene.bands) == ALL_L2A_BANDS
        for band_id in ("B02", "B03", "B04", "B08"):
            ref = scene.band(band_id)
            assert (ref.offset, ref.scale, ref.nodata) == (0.0, 1e-4, 0.0)
            assert ref.uri == str(path.parent / f"{band_id}.tif")
        assert scene.metadata["boa_offset_applied"] is True
        assert scene.metadata["processing_baseline"] == "05.09"
        assert (
            "raster:bands offset -0.1 ignored: earthsearch:boa_offset_applied is true"
            in (scene.metadata["radiometry"])
        )


def test_item_metadata_and_asset_choice(data_dir: Path) -> None:
    path = _item_path(data_dir)
    scene = read_stac_item(str(path))
    assert scene.metadata["href"] == str(path)
    assert scene.metadata["datetime"] == "2023-08-15T09:57:57.246000+00:00"
    assert scene.metadata["platform"] == "sentinel-2a"
    assert scene.metadata["tile"] == "33TWM"
    assert scene.metadata["cloud_cover"] == pytest.approx(0.207328)
    assert scene.metadata["product_type"] == "S2MSI2A"
    # COG assets win over their -jp2 twins on s3; cloud COGs are read over /vsicurl/.
    base = "/vsicurl/https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    assert scene.band("B11").uri == f"{base}/33/T/WM/2023/8/{ITEM}/B11.tif"
    assert scene.band("B05").uri.endswith("/B05.tif")  # rededge1: eo:bands says only "rededge"
    assert not any(ref.uri.startswith("/vsis3/") for ref in scene.bands.values())
    scl = scene.band("SCL")
    assert (scl.uri, scl.scale, scl.offset, scl.nodata) == (str(path.parent / "SCL.tif"), 1, 0, 0)


def test_flag_true_gives_plausible_forest_reflectance(data_dir: Path) -> None:
    scene = read_stac_item(str(_item_path(data_dir)))
    with rasterio.open(scene.band("SCL").uri) as scl:
        assert (scl.read(1, window=FOREST) == 4).mean() > 0.95
    red = _red_reflectance(scene.band("B04"))
    assert red.size > 0.95 * FOREST.width * FOREST.height
    assert 0 < np.median(red) < 0.2
    assert (red < 0).mean() < 0.05


def test_without_the_flag_the_offset_is_applied(data_dir: Path, tmp_path: Path) -> None:
    path = _copy_item(
        data_dir, tmp_path, lambda item: item["properties"].pop("earthsearch:boa_offset_applied")
    )
    scene = read_stac_item(str(path))
    assert scene.metadata["boa_offset_applied"] is None
    assert scene.band("B04").offset == pytest.approx(-1000.0)
    assert scene.band("B08").offset == pytest.approx(-1000.0)
    assert "ignored" not in scene.metadata["radiometry"]
    assert scene.metadata["radiometry"] == "offset -1000 DN, scale 0.0001 from raster:bands"
    # These pixels already had the offset removed: applying it again is the trap.
    assert (_red_reflectance(scene.band("B04")) < 0).mean() > 0.9


def test_older_flag_name_is_honoured(data_dir: Path, tmp_path: Path) -> None:
    def rename(item: dict) -> None:
        item["properties"]["sentinel:boa_offset_applied"] = item["properties"].pop(
            "earthsearch:boa_offset_applied"
        )

    scene = read_stac_item(str(_copy_item(data_dir, tmp_path, rename)))
    assert scene.band("B04").offset == 0.0
    assert "ignored: sentinel:boa_offset_applied is true" in scene.metadata["radiometry"]


def test_bands_that_disagree_are_described_apart(data_dir: Path, tmp_path: Path) -> None:
    def zero_red_offset(item: dict) -> None:
        item["properties"].pop("earthsearch:boa_offset_applied")
        item["assets"]["red"]["raster:bands"][0]["offset"] = 0

    scene = read_stac_item(str(_copy_item(data_dir, tmp_path, zero_red_offset)))
    assert scene.band("B04").offset == 0.0
    assert scene.band("B08").offset == pytest.approx(-1000.0)
    sentence = scene.metadata["radiometry"]
    assert "B04: offset 0 DN, scale 0.0001 from raster:bands; baseline 05.09 would imply -1000" in (
        sentence
    )
    assert "B01, B02, B03, B05" in sentence


def _drop_raster_bands(item: dict, flag: bool | None) -> None:
    for asset in item["assets"].values():
        asset.pop("raster:bands", None)
    item["properties"].pop("earthsearch:boa_offset_applied")
    if flag is not None:
        item["properties"]["earthsearch:boa_offset_applied"] = flag


@pytest.mark.parametrize(("flag", "offset"), [(None, -1000.0), (False, -1000.0), (True, 0.0)])
def test_without_raster_bands_the_baseline_decides(
    data_dir: Path, tmp_path: Path, flag: bool | None, offset: float
) -> None:
    path = _copy_item(data_dir, tmp_path, lambda item: _drop_raster_bands(item, flag))
    scene = read_stac_item(str(path))
    ref = scene.band("B04")
    assert (ref.offset, ref.scale, ref.nodata) == (offset, 1e-4, 0.0)
    assert "no raster:bands" in scene.metadata["radiometry"]
    if flag:
        assert "offset -1000 DN not applied" in scene.metadata["radiometry"]


# --- older items: hrefs in the cloud, mapping and radiometry only (no pixel reads) -----------


def test_older_earth_search_item(data_dir: Path) -> None:
    path = data_dir / "L2A_T29RKH_20200219_100m" / "stac-item.json"
    scene = read_stac_item(str(path))
    assert scene.name == "S2A_29RKH_20200219_0_L2A"
    assert sorted(scene.bands) == ALL_L2A_BANDS
    base = "/vsicurl/https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    assert scene.band("B04").uri == f"{base}/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/B04.tif"
    assert {ref.offset for ref in scene.bands.values()} == {0.0}
    assert scene.metadata["processing_baseline"] == "02.14"
    assert scene.metadata["boa_offset_applied"] is False
    assert scene.metadata["tile"] == "29RKH"
    assert scene.metadata["radiometry"] == "offset 0 DN, scale 0.0001 from raster:bands"


def test_stac_0_8_item_with_band_id_keys(data_dir: Path) -> None:
    folder = (
        data_dir / "SAFE_metadata" / "S2A_MSIL2A_20181229T095411_N0211_R079_T33SVB_20181229T112231"
    )
    scene = read_stac_item(str(folder / f"{folder.name}.json"))
    assert sorted(scene.bands) == ALL_L2A_BANDS  # AOT and WVP are not bands
    assert scene.band("B04").uri == str(
        folder / f"{folder.name}.SAFE/GRANULE/L2A_T33SVB_A018380_20181229T095413/IMG_DATA/R10m/"
        "T33SVB_20181229T095411_B04_10m.jp2"
    )
    # No raster:bands and no s2:processing_baseline: the N0211 in the id is the baseline.
    assert scene.metadata["processing_baseline"] == "02.11"
    assert scene.band("B04").offset == 0.0
    assert scene.metadata["tile"] == "33SVB"
    assert "no raster:bands" in scene.metadata["radiometry"]


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def catalog_url(data_dir: Path) -> Iterator[str]:
    """The static catalog served on 127.0.0.1."""
    with serve_directory(str(data_dir / CATALOG)) as url:
        yield url


def test_item_over_http(catalog_url: str) -> None:
    href = f"{catalog_url}/sentinel-2-l2a/{ITEM}/{ITEM}.json"
    scene = read_stac_item(href)
    assert scene.name == ITEM
    assert scene.metadata["href"] == href
    for key, band_id in LOCAL_KEYS.items():
        expected = f"/vsicurl/{catalog_url}/sentinel-2-l2a/{ITEM}/{band_id}.tif"
        assert scene.band(band_id).uri == expected, key
    assert scene.band("B04").offset == 0.0


def test_missing_item_over_http(catalog_url: str) -> None:
    href = f"{catalog_url}/sentinel-2-l2a/nothing.json"
    with pytest.raises(SourceError, match=f"{href}: cannot read a STAC item"):
        read_stac_item(href)


# --- errors name the href ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    href = str(tmp_path / "absent.json")
    with pytest.raises(SourceError, match=f"{href}: no such file"):
        read_stac_item(href)


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"type": "Feature", ')
    with pytest.raises(SourceError, match=f"{path}: cannot read a STAC item"):
        read_stac_item(str(path))


def test_catalog_is_not_an_item(data_dir: Path) -> None:
    href = str(data_dir / CATALOG / "catalog.json")
    with pytest.raises(SourceError, match=f"{href}: not a STAC item"):
        read_stac_item(href)


def test_item_without_band_assets(data_dir: Path, tmp_path: Path) -> None:
    def keep_metadata_only(item: dict) -> None:
        item["assets"] = {k: a for k, a in item["assets"].items() if k in ("thumbnail", "aot")}

    path = _copy_item(data_dir, tmp_path, keep_metadata_only)
    with pytest.raises(SourceError, match=f"{path}: STAC item {ITEM} has no Sentinel-2 band"):
        read_stac_item(str(path))


@pytest.mark.parametrize(("field", "value"), [("scale", "ten"), ("scale", 0), ("offset", [1])])
def test_bad_raster_bands_values(data_dir: Path, tmp_path: Path, field: str, value: object) -> None:
    def spoil(item: dict) -> None:
        item["assets"]["nir"]["raster:bands"][0][field] = value

    path = _copy_item(data_dir, tmp_path, spoil)
    with pytest.raises(SourceError, match=f"{path}: asset nir: raster:bands {field} is"):
        read_stac_item(str(path))


# --- item dicts, as search_items returns them --------------------------------------------------


def test_item_dicts_read_as_their_files(data_dir: Path) -> None:
    catalog = str(data_dir / CATALOG / "catalog.json")
    found = search_items(SearchSpec(catalog), (14.0, 44.0, 17.5, 48.0))
    assert len(found) == 10
    for item in found:
        path = _item_path(data_dir, item["id"])
        from_dict, from_file = read_stac_item(item), read_stac_item(str(path))
        assert from_dict.name == from_file.name == item["id"]
        assert from_dict.bands == from_file.bands
        assert from_dict.metadata == from_file.metadata
        assert from_dict.metadata["href"] == str(path)  # the self link names the dict
        assert from_dict.band("B04").offset == 0.0  # the offset flag is still honoured


def test_item_dict_from_an_api_reads_local_files(data_dir: Path) -> None:
    with serve_stac_api(str(data_dir / CATALOG)) as url:
        found = search_items(SearchSpec(url, datetime="2023-08-15"), (15.5, 46.5, 15.6, 46.6))
    (item,) = found
    assert item["id"] == ITEM
    scene = read_stac_item(item)
    assert scene.metadata["href"] == f"{url}/collections/sentinel-2-l2a/items/{ITEM}"
    expected = read_stac_item(str(_item_path(data_dir)))
    # The API's file:// hrefs become the same local paths as the file's relative hrefs.
    assert item["assets"]["red"]["href"] == (_item_path(data_dir).parent / "B04.tif").as_uri()
    assert scene.bands == expected.bands
    assert scene.band("B04").uri == str(_item_path(data_dir).parent / "B04.tif")
    assert 0 < np.median(_red_reflectance(scene.band("B04"))) < 0.2


def test_item_dict_without_self_link_is_named_by_id(data_dir: Path) -> None:
    path = _item_path(data_dir)
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        if "://" not in asset["href"]:
            asset["href"] = str(path.parent / asset["href"])
    item["links"] = []
    scene = read_stac_item(item)
    assert scene.metadata["href"] == ITEM
    assert scene.bands == read_stac_item(str(path)).bands
    assert item["links"] == []  # the caller's dict is left alone


def test_item_dict_errors_name_the_item(data_dir: Path) -> None:
    item = json.loads(_item_path(data_dir).read_text())
    item["links"] = []
    # Relative hrefs and no self link: nothing to resolve them against.
    with pytest.raises(SourceError, match=f"{ITEM}: asset .* has no usable href"):
        read_stac_item(item)
    with pytest.raises(SourceError, match=f"{ITEM}: cannot read a STAC item"):
        read_stac_item({"type": "Feature", "stac_version": "1.0.0", "id": ITEM, "links": []})
    with pytest.raises(SourceError, match="catalog-1: not a STAC item"):
        read_stac_item({"type": "Catalog", "id": "catalog-1", "links": []})


def test_mosaic_date_comes_from_its_acquisition_tag(tmp_path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from madrone.sources.files import date_from_tags, read_multiband

    assert date_from_tags({"ACQUISITION_DATE": "2020-02-19"}) == "2020-02-19T00:00:00Z"
    assert date_from_tags({"ACQUISITION_DATE": "2020-02-19T11:34:25Z"}) == "2020-02-19T11:34:25Z"
    assert date_from_tags({"TIFFTAG_DATETIME": "2024:01:01 00:00:00"}) is None
    path = tmp_path / "mosaic.tif"  # no date in the name
    profile = dict(driver="GTiff", width=4, height=4, count=2, dtype="uint16", crs="EPSG:4326",
                   transform=from_origin(10, 45, 0.001, 0.001))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.ones((2, 4, 4), "uint16"))
        dataset.descriptions = ("B04", "B08")
        dataset.update_tags(ACQUISITION_DATE="2021-06-30")
    assert read_multiband(str(path)).metadata["datetime"] == "2021-06-30T00:00:00Z"
