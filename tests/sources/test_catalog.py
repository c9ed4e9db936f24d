"""STAC searches: a static catalog (local and over HTTP) and a STAC API, on the real items."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac
import pytest

from madrone.errors import InputError, SourceError
from madrone.sources.catalog import SearchSpec, parse_interval, search_items, solar_day
from tests.support.http import serve_directory
from tests.support.stac_api import API_KEY, API_KEY_HEADER, PAGE_SIZE, read_log, serve_stac_api

CATALOG = "stac_L2A_T33TWL_T33TWM_202308"
AUGUST = "2023-08-01/2023-08-31"
BOTH_TILES = (14.0, 44.0, 17.5, 48.0)
LOCAL_ASSETS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}
# Near Fiji: a box across the antimeridian, and one on each side of it.
ACROSS = (179.5, -17.0, -179.5, -16.0)


# --- what the item files say, read without madrone --------------------------------------------


@pytest.fixture(scope="module")
def raw_items(data_dir: Path) -> list[dict[str, Any]]:
    paths = sorted((data_dir / CATALOG / "sentinel-2-l2a").glob("*/*.json"))
    items = [json.loads(path.read_text()) for path in paths]
    assert len(items) == 10
    return items


def _tile(item: dict[str, Any]) -> str:
    return item["id"].split("_")[1]


def _tile_bbox(items: list[dict[str, Any]], tile: str) -> tuple[float, float, float, float]:
    boxes = [item["bbox"] for item in items if _tile(item) == tile]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _exclusive_boxes(items: list[dict[str, Any]]) -> dict[str, tuple[float, float, float, float]]:
    """A box in each tile that no item of the other tile touches (33TWM lies north of 33TWL)."""
    south, north = _tile_bbox(items, "33TWL"), _tile_bbox(items, "33TWM")
    assert south[3] < north[3] and south[1] < north[1]
    west, east = max(south[0], north[0]) + 0.1, min(south[2], north[2]) - 0.1
    return {
        "33TWL": (west, south[1] + 0.05, east, north[1] - 0.05),
        "33TWM": (west, south[3] + 0.05, east, north[3] - 0.05),
    }


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def _clouds(items: list[dict[str, Any]]) -> list[float]:
    return [item["properties"]["eo:cloud_cover"] for item in items]


def _sorted_ids(items: list[dict[str, Any]]) -> list[str]:
    """The order search_items promises, computed here from the raw items."""
    ordered = sorted(
        items,
        key=lambda i: (i["properties"]["eo:cloud_cover"], i["properties"]["datetime"], i["id"]),
    )
    return _ids(ordered)


def _self_href(item: dict[str, Any]) -> str:
    (href,) = [link["href"] for link in item["links"] if link["rel"] == "self"]
    return href


# --- a static catalog on disk -----------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_path(data_dir: Path) -> str:
    return str(data_dir / CATALOG / "catalog.json")


def test_month_over_both_tiles(catalog_path: str, raw_items: list[dict], data_dir: Path) -> None:
    found = search_items(SearchSpec(catalog_path, datetime=AUGUST), BOTH_TILES)
    assert _ids(found) == _sorted_ids(raw_items)
    assert _clouds(found) == sorted(_clouds(found))
    folder = data_dir / CATALOG / "sentinel-2-l2a"
    for item in found:
        assert _self_href(item) == str(folder / item["id"] / f"{item['id']}.json")
        for key, band in LOCAL_ASSETS.items():
            href = item["assets"][key]["href"]
            assert href == str(folder / item["id"] / f"{band}.tif")
            assert os.path.isfile(href)
        for asset in item["assets"].values():
            assert asset["href"].startswith(("/", "https://", "s3://")), asset["href"]
        for link in item["links"]:
            assert link["href"].startswith(("/", "https://", "s3://")), link
    # The dict is JSON, and pystac reads it back without its catalog.
    again = pystac.Item.from_dict(json.loads(json.dumps(found[0])))
    assert again.assets["red"].get_absolute_href() == found[0]["assets"]["red"]["href"]


@pytest.mark.parametrize("max_cloud", [1.5, 10.0, 50.0])
def test_cloud_limit(catalog_path: str, raw_items: list[dict], max_cloud: float) -> None:
    expected = [i for i in raw_items if i["properties"]["eo:cloud_cover"] <= max_cloud]
    assert 0 < len(expected) < len(raw_items)
    found = search_items(SearchSpec(catalog_path, max_cloud=max_cloud), BOTH_TILES)
    assert _ids(found) == _sorted_ids(expected)
    assert max(_clouds(found)) <= max_cloud


def test_one_day(catalog_path: str, raw_items: list[dict]) -> None:
    expected = [i for i in raw_items if i["properties"]["datetime"].startswith("2023-08-15")]
    assert len(expected) == 2
    found = search_items(SearchSpec(catalog_path, datetime="2023-08-15"), BOTH_TILES)
    assert _ids(found) == _sorted_ids(expected)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("../2023-08-13", ["10", "13"]),
        ("2023-08-18/..", ["18", "20"]),
        ("2023-08-13T10:00:00Z/2023-08-15T12:00:00+02:00", ["13", "15"]),
        ("2023-08-13T10:08:00Z", []),  # an instant between the two 08-13 acquisitions
        ("2023-08", ["10", "13", "15", "18", "20"]),
    ],
)
def test_open_and_timed_intervals(
    catalog_path: str, raw_items: list[dict], text: str, days: list[str]
) -> None:
    spec = SearchSpec(catalog_path, datetime=text)
    if not days:
        with pytest.raises(SourceError, match="no items"):
            search_items(spec, BOTH_TILES)
        return
    found = search_items(spec, BOTH_TILES)
    assert sorted({item["properties"]["datetime"][8:10] for item in found}) == days
    assert len(found) == 2 * len(days)


@pytest.mark.parametrize("tile", ["33TWL", "33TWM"])
def test_one_tile_only(catalog_path: str, raw_items: list[dict], tile: str) -> None:
    box = _exclusive_boxes(raw_items)[tile]
    found = search_items(SearchSpec(catalog_path, datetime=AUGUST), box)
    assert _ids(found) == _sorted_ids([i for i in raw_items if _tile(i) == tile])
    assert len(found) == 5


def test_collections_filter(catalog_path: str) -> None:
    kept = search_items(SearchSpec(catalog_path, collections=("sentinel-2-l2a",)), BOTH_TILES)
    assert len(kept) == 10
    with pytest.raises(SourceError, match="collections sentinel-2-l1c: widen"):
        search_items(SearchSpec(catalog_path, collections=("sentinel-2-l1c",)), BOTH_TILES)


def test_collection_json_as_the_catalog(data_dir: Path, raw_items: list[dict]) -> None:
    path = str(data_dir / CATALOG / "sentinel-2-l2a" / "collection.json")
    found = search_items(SearchSpec(path, max_cloud=10), BOTH_TILES)
    assert _ids(found) == _sorted_ids(
        [i for i in raw_items if i["properties"]["eo:cloud_cover"] <= 10]
    )


def test_limit_takes_the_least_cloudy(
    catalog_path: str, raw_items: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="madrone.sources.catalog"):
        found = search_items(SearchSpec(catalog_path, limit=3), BOTH_TILES)
    assert _ids(found) == _sorted_ids(raw_items)[:3]
    (record,) = caplog.records
    assert "10 items match" in record.getMessage()
    assert "taking the first 3" in record.getMessage()


def test_relative_catalog_path(
    data_dir: Path, raw_items: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data_dir / CATALOG)
    found = search_items(SearchSpec("catalog.json", max_cloud=1.2), BOTH_TILES)
    expected = [i for i in raw_items if i["properties"]["eo:cloud_cover"] <= 1.2]
    assert _ids(found) == _sorted_ids(expected)
    for item in found:
        assert os.path.isfile(item["assets"]["red"]["href"])
        assert os.path.isabs(item["assets"]["red"]["href"])


# --- the antimeridian --------------------------------------------------------------------------


def _fiji_catalog(data_dir: Path, folder: Path) -> Path:
    """A static catalog of real items moved to the antimeridian (only their boxes change)."""
    source = data_dir / CATALOG / "sentinel-2-l2a" / "S2A_33TWM_20230815_0_L2A"
    boxes = {
        "east-side": [179.6, -16.8, 179.9, -16.2],
        "west-side": [-179.9, -16.8, -179.6, -16.2],
        "across": [179.8, -17.8, -179.8, -17.2],
        "far": [10.0, -16.8, 10.5, -16.2],
    }
    catalog = pystac.Catalog("fiji", "real items at made-up places near 180 degrees")
    for name, box in boxes.items():
        data = json.loads((source / f"{source.name}.json").read_text())
        data["id"], data["bbox"], data["links"] = name, box, []
        west, south, east, north = box
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        data["geometry"] = {"type": "Polygon", "coordinates": [ring]}
        for asset in data["assets"].values():
            if "://" not in asset["href"]:
                asset["href"] = str(source / asset["href"])
        catalog.add_item(pystac.Item.from_dict(data))
    catalog.normalize_hrefs(str(folder))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


@pytest.mark.parametrize(
    ("box", "names"),
    [
        (ACROSS, ["east-side", "west-side"]),
        ((179.0, -18.0, -179.0, -16.0), ["across", "east-side", "west-side"]),
        ((-179.85, -17.6, -179.81, -17.4), ["across"]),  # only the item that crosses
        ((179.81, -17.6, 179.85, -17.4), ["across"]),
        ((0.0, -17.0, 11.0, -16.0), ["far"]),
    ],
)
def test_antimeridian_static(
    data_dir: Path, tmp_path: Path, box: tuple[float, ...], names: list[str]
) -> None:
    path = _fiji_catalog(data_dir, tmp_path)
    assert sorted(_ids(search_items(SearchSpec(str(path)), box))) == names


def test_antimeridian_api_sends_one_search_per_side(data_dir: Path, tmp_path: Path) -> None:
    _fiji_catalog(data_dir, tmp_path / "fiji")
    log = str(tmp_path / "requests.log")
    with serve_stac_api(str(tmp_path / "fiji"), log_path=log) as url:
        found = search_items(SearchSpec(url), ACROSS)
    assert sorted(_ids(found)) == ["east-side", "west-side"]
    assert read_log(log).count("POST /search") == 2


def test_antimeridian_box_finds_nothing_here(catalog_path: str) -> None:
    with pytest.raises(SourceError) as raised:
        search_items(SearchSpec(catalog_path, datetime=AUGUST), ACROSS)
    assert "bbox 179.5000,-17.0000,-179.5000,-16.0000" in str(raised.value)


# --- the same catalog over HTTP, static ---------------------------------------------------------


def test_static_catalog_over_http(data_dir: Path, raw_items: list[dict]) -> None:
    with serve_directory(str(data_dir / CATALOG)) as url:
        found = search_items(SearchSpec(f"{url}/catalog.json", datetime=AUGUST), BOTH_TILES)
        box = _exclusive_boxes(raw_items)["33TWL"]
        one_tile = search_items(SearchSpec(f"{url}/catalog.json", max_cloud=10), box)
    assert _ids(found) == _sorted_ids(raw_items)
    for item in found:
        folder = f"{url}/sentinel-2-l2a/{item['id']}"
        assert _self_href(item) == f"{folder}/{item['id']}.json"
        assert item["assets"]["red"]["href"] == f"{folder}/B04.tif"
    expected = [
        i for i in raw_items if _tile(i) == "33TWL" and i["properties"]["eo:cloud_cover"] <= 10
    ]
    assert _ids(one_tile) == _sorted_ids(expected)


def test_missing_catalog_over_http(data_dir: Path) -> None:
    with serve_directory(str(data_dir / CATALOG)) as url:
        href = f"{url}/nothing.json"
        with pytest.raises(SourceError, match=f"catalog {href}: cannot be read .*404"):
            search_items(SearchSpec(href), BOTH_TILES)


# --- the STAC API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_url(data_dir: Path) -> Iterator[str]:
    with serve_stac_api(str(data_dir / CATALOG)) as url:
        yield url


@pytest.mark.parametrize(
    ("datetime", "max_cloud", "tile"),
    [
        (AUGUST, None, None),
        (AUGUST, 10.0, None),
        ("2023-08-15", None, None),
        ("2023-08-13T10:00:00Z/..", 50.0, None),
        (None, None, "33TWL"),
        (AUGUST, 2.0, "33TWM"),
    ],
)
def test_api_matches_static(
    api_url: str,
    catalog_path: str,
    raw_items: list[dict],
    datetime: str | None,
    max_cloud: float | None,
    tile: str | None,
) -> None:
    box = _exclusive_boxes(raw_items)[tile] if tile else BOTH_TILES
    from_api = search_items(SearchSpec(api_url, datetime=datetime, max_cloud=max_cloud), box)
    static = search_items(SearchSpec(catalog_path, datetime=datetime, max_cloud=max_cloud), box)
    assert _ids(from_api) == _ids(static)
    for api_item, static_item in zip(from_api, static, strict=True):
        for key in LOCAL_ASSETS:
            local_path = Path(static_item["assets"][key]["href"])
            assert api_item["assets"][key]["href"] == local_path.as_uri()
        assert _self_href(api_item) == (
            f"{api_url}/collections/sentinel-2-l2a/items/{api_item['id']}"
        )


def test_api_pages(data_dir: Path, tmp_path: Path, raw_items: list[dict]) -> None:
    log = str(tmp_path / "requests.log")
    with serve_stac_api(str(data_dir / CATALOG), log_path=log) as url:
        found = search_items(SearchSpec(url, collections=("sentinel-2-l2a",)), BOTH_TILES)
    assert len(found) == 10 > PAGE_SIZE
    assert _ids(found) == _sorted_ids(raw_items)
    assert read_log(log).count("POST /search") == math.ceil(10 / PAGE_SIZE)


def test_api_no_items_and_limit(api_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SourceError, match=f"no items in {api_url} for bbox"):
        search_items(SearchSpec(api_url, collections=("sentinel-2-l1c",)), BOTH_TILES)
    with caplog.at_level(logging.WARNING, logger="madrone.sources.catalog"):
        found = search_items(SearchSpec(api_url, limit=3), BOTH_TILES)
    assert len(found) == 3
    assert _clouds(found) == sorted(_clouds(found))
    assert "taking the first 3" in caplog.records[0].getMessage()


def test_api_headers_are_sent(data_dir: Path) -> None:
    with serve_stac_api(str(data_dir / CATALOG), require_key=True) as url:
        with pytest.raises(SourceError, match=f"catalog {url}: cannot be read .*401"):
            search_items(SearchSpec(url), BOTH_TILES)
        with pytest.raises(SourceError, match="401"):
            search_items(SearchSpec(url), BOTH_TILES, headers={API_KEY_HEADER: "wrong"})
        found = search_items(SearchSpec(url), BOTH_TILES, headers={API_KEY_HEADER: API_KEY})
    assert len(found) == 10


# --- errors ------------------------------------------------------------------------------------


def test_no_items_repeats_the_search(catalog_path: str) -> None:
    spec = SearchSpec(
        catalog_path, ("sentinel-2-l2a",), datetime="2023-07-01/2023-07-31", max_cloud=30
    )
    with pytest.raises(SourceError) as raised:
        search_items(spec, (15.1, 45.2, 15.3, 45.4))
    assert str(raised.value) == (
        f"no items in {catalog_path} for bbox 15.1000,45.2000,15.3000,45.4000, "
        "datetime 2023-07-01/2023-07-31, cloud <= 30%, collections sentinel-2-l2a: "
        "widen the dates or the cloud limit"
    )


@pytest.mark.parametrize(
    "text", ["yesterday", "2023-13-01", "2023-08-32", "2023-08-01/2023-08-31/2023-09-30", ".."]
)
def test_malformed_datetime(catalog_path: str, text: str) -> None:
    with pytest.raises(InputError) as raised:
        SearchSpec(catalog_path, datetime=text)
    message = str(raised.value)
    assert repr(text) in message
    assert '"2023-08-01/2023-08-31"' in message and '"../2023-08-31"' in message


def test_end_before_start(catalog_path: str) -> None:
    with pytest.raises(InputError, match="'2023-08-31/2023-08-01' ends before it starts"):
        SearchSpec(catalog_path, datetime="2023-08-31/2023-08-01")


def test_interval_values() -> None:
    start, end = parse_interval("2023-08-15")
    assert (start.isoformat(), end.isoformat()) == (
        "2023-08-15T00:00:00+00:00",
        "2023-08-15T23:59:59.999999+00:00",
    )
    assert parse_interval("../2023-12")[0] is None
    assert parse_interval("../2023-12")[1].isoformat() == "2023-12-31T23:59:59.999999+00:00"
    assert parse_interval("2023-08-15T12:00:00+02:00/..")[0].isoformat() == (
        "2023-08-15T10:00:00+00:00"
    )
    assert parse_interval("../..") is None
    assert parse_interval(None) is None


def test_missing_catalog(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.json")
    with pytest.raises(SourceError, match=f"catalog {path}: no such file"):
        search_items(SearchSpec(path), BOTH_TILES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<html>not json</html>", "not JSON"),
        ("[1, 2]", "not a STAC catalog"),
        ('{"type": "Feature", "id": "x"}', "a Feature document, not a STAC Catalog"),
    ],
)
def test_catalog_not_a_catalog(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(text)
    with pytest.raises(SourceError, match=f"catalog {path}: {expected}"):
        search_items(SearchSpec(str(path)), BOTH_TILES)


def test_broken_child_link(tmp_path: Path) -> None:
    catalog = {"type": "Catalog", "id": "c", "stac_version": "1.0.0", "description": "d"}
    catalog["links"] = [{"rel": "child", "href": "./gone/collection.json"}]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    with pytest.raises(SourceError, match=f"catalog {path}: cannot be walked .*collection.json"):
        search_items(SearchSpec(str(path)), BOTH_TILES)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((1.0, 2.0, 3.0), "four numbers"),
        ((0.0, 50.0, 1.0, 40.0), "S <= N"),
        ((190.0, 0.0, 191.0, 1.0), "within -180..180"),
        ((0.0, float("nan"), 1.0, 1.0), "need W,S,E,N"),
    ],
)
def test_bad_bbox(catalog_path: str, box: tuple[float, ...], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        search_items(SearchSpec(catalog_path), box)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_cloud": 120}, "max cloud 120"),
        ({"limit": 0}, "search limit 0"),
        ({"catalog": " "}, "search catalog"),
    ],
)
def test_bad_search_spec(fields: dict, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        SearchSpec(**{"catalog": "c.json", **fields})


# --- SearchSpec as data -------------------------------------------------------------------------


def test_search_spec_round_trip() -> None:
    spec = SearchSpec("https://example.test/v1", ("a", "b"), "../2023-08-31", 25.5, 40)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data == {
        "catalog": "https://example.test/v1",
        "collections": ["a", "b"],
        "datetime": "../2023-08-31",
        "max_cloud": 25.5,
        "limit": 40,
    }
    again = SearchSpec.from_dict(data)
    assert again == spec and hash(again) == hash(spec)
    assert isinstance(again.collections, tuple)
    assert SearchSpec.from_dict({"catalog": "c.json"}) == SearchSpec("c.json")
    assert SearchSpec("c.json", collections="one").collections == ("one",)


def test_search_spec_from_bad_dict() -> None:
    with pytest.raises(InputError, match="unknown fields bbox"):
        SearchSpec.from_dict({"catalog": "c.json", "bbox": [0, 0, 1, 1]})
    with pytest.raises(InputError, match="catalog field is missing"):
        SearchSpec.from_dict({"limit": 3})


# --- solar days ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "longitude", "day"),
    [
        ("2023-08-15T09:58:11.662000Z", 15.5, "2023-08-15"),
        # Near 170 E, a 10:30 local pass happens around 23:10 UTC the day before.
        ("2023-08-14T23:10:00Z", 170.0, "2023-08-15"),
        # Near 170 W, 00:30 UTC is still the afternoon before.
        ("2023-08-16T00:30:00Z", -170.0, "2023-08-15"),
        ("2023-08-15T12:00:00+02:00", 0.0, "2023-08-15"),
        ("2023-08-15T23:29:59", 7.5, "2023-08-15"),  # no zone: UTC; 30 minutes east
        ("2023-08-15T23:30:00", 7.5, "2023-08-16"),
    ],
)
def test_solar_day(text: str, longitude: float, day: str) -> None:
    assert solar_day(text, longitude) == day


def test_solar_day_groups_a_pass_across_midnight_utc() -> None:
    # Two tiles of one pass at 157.5 E, a minute apart on either side of 00:00 UTC.
    first, second = "2023-08-14T23:59:30Z", "2023-08-15T00:00:30Z"
    assert first[:10] != second[:10]
    assert solar_day(first, 157.3) == solar_day(second, 157.7) == "2023-08-15"


def test_solar_day_bad_text() -> None:
    with pytest.raises(InputError, match="'noon' is not a date or time"):
        solar_day("noon", 10.0)
