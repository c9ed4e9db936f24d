"""The STAC API at /stac, through Flask's test client on a fresh app and SQLite catalog per
test, and once through a real HTTP server searched with pystac-client."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pystac
import pytest
from flask import Flask
from flask.testing import FlaskClient

from madrone.catalog.datasets import add_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.web.app import create_app
from madrone.web.stac import parse_datetime

HEX = "ab" * 32


def _box(west: float, south: float, east: float, north: float) -> dict:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _day(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# id -> (kind, bbox, date_start, date_end)
DATASETS = {
    "ndvi-2016": ("index", (10.0, 45.0, 11.0, 46.0), _day(2016, 6, 1), _day(2016, 6, 30)),
    "ndwi-2017": ("index", (12.0, 40.0, 13.0, 41.0), _day(2017, 3, 5), None),
    "evi-2018": ("index", (-5.0, 50.0, -4.0, 51.0), _day(2018, 1, 1), _day(2018, 12, 31)),
    "undated": ("geotiff", (20.0, 10.0, 21.0, 11.0), None, None),
    "roads": ("vector", (10.5, 45.5, 10.8, 45.8), _day(2019, 7, 7), _day(2019, 7, 7)),
}
DATASET_KINDS_SEEN = ["geotiff", "index", "vector"]


def _dataset(dataset_id: str, number: int) -> Dataset:
    kind, bbox, start, end = DATASETS[dataset_id]
    created = datetime(2024, 1, 1, 0, number, tzinfo=UTC)
    assets = {}
    if kind == "index":
        assets = {
            "cog": {"href": f"/data/{dataset_id}.tif", "size": 1234, "sha256": HEX, "type": None},
            "png": {"href": f"/data/{dataset_id}.png", "size": 99, "sha256": HEX},
            "json": {"href": f"/data/{dataset_id}.json", "size": 10, "sha256": HEX},
        }
    return Dataset(
        id=dataset_id,
        name=f"{dataset_id} product",
        kind=kind,
        index_name=dataset_id.split("-")[0] if kind == "index" else None,
        footprint=_box(*bbox),
        west=bbox[0],
        south=bbox[1],
        east=bbox[2],
        north=bbox[3],
        date_start=start,
        date_end=end,
        assets=assets,
        owner="ana",
        scope="local",
        created_at=created,
        updated_at=created,
    )


@contextlib.contextmanager
def _filled_catalog(url: str) -> Iterator[Catalog]:
    catalog = Catalog(url, upgrade=True)
    try:
        for number, dataset_id in enumerate(DATASETS):
            add_dataset(catalog, _dataset(dataset_id, number))
        yield catalog
    finally:
        catalog.dispose()


@pytest.fixture
def catalog(tmp_path) -> Iterator[Catalog]:
    with _filled_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        yield catalog


def _app(catalog: Catalog, public_read: int) -> Flask:
    app = create_app(Settings(public_read=public_read), catalog=catalog)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(catalog: Catalog) -> FlaskClient:
    return _app(catalog, public_read=1).test_client()


def _ids(body: dict) -> list[str]:
    return [feature["id"] for feature in body["features"]]


def _get(client: FlaskClient, url: str, **params) -> dict:
    response = client.get(url, query_string=params or None)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _all_pages(client: FlaskClient, url: str, **params) -> list[str]:
    """The ids of every page of a GET search, following its next links."""
    body = _get(client, url, **params)
    seen = _ids(body)
    while (link := _next(body)) is not None:
        body = _get(client, link["href"].removeprefix("http://localhost"))
        seen += _ids(body)
    return seen


def _next(body: dict) -> dict | None:
    return next((link for link in body["links"] if link["rel"] == "next"), None)


def test_landing_page_links_everything(client: FlaskClient) -> None:
    body = _get(client, "/stac")
    assert body["type"] == "Catalog"
    assert body["stac_version"] == "1.0.0"
    assert "https://api.stacspec.org/v1.0.0/item-search" in body["conformsTo"]
    rels = {(link["rel"], link.get("method")): link["href"] for link in body["links"]}
    assert rels[("self", None)] == "http://localhost/stac"
    assert rels[("conformance", None)] == "http://localhost/stac/conformance"
    assert rels[("data", None)] == "http://localhost/stac/collections"
    assert rels[("search", "GET")] == rels[("search", "POST")] == "http://localhost/stac/search"
    children = sorted(link["href"] for link in body["links"] if link["rel"] == "child")
    assert children == [f"http://localhost/stac/collections/{k}" for k in DATASET_KINDS_SEEN]
    assert _get(client, "/stac/conformance")["conformsTo"] == body["conformsTo"]


def test_collections_have_extents_of_their_datasets(client: FlaskClient) -> None:
    found = {c["id"]: c for c in _get(client, "/stac/collections")["collections"]}
    assert sorted(found) == DATASET_KINDS_SEEN
    index = found["index"]
    assert index["license"] == "various"
    assert index["extent"]["spatial"]["bbox"] == [[-5.0, 40.0, 13.0, 51.0]]
    assert index["extent"]["temporal"]["interval"] == [
        ["2016-06-01T00:00:00Z", "2018-12-31T00:00:00Z"]
    ]
    # Undated: from Sentinel-2A's launch, open end, as its item claims.
    assert found["geotiff"]["extent"]["temporal"]["interval"] == [["2015-06-23T00:00:00Z", None]]
    assert _get(client, "/stac/collections/vector")["extent"]["spatial"]["bbox"] == [
        [10.5, 45.5, 10.8, 45.8]
    ]
    assert client.get("/stac/collections/image").status_code == 404
    assert client.get("/stac/collections/image/items").status_code == 404
    assert _get(client, "/stac/")["id"] == "madrone"
    collection = pystac.Collection.from_dict(index)
    assert collection.extent.temporal.intervals[0][0] == _day(2016, 6, 1)


def test_items_page_through_every_item_once(client: FlaskClient) -> None:
    seen: list[str] = []
    body = _get(client, "/stac/search", limit=2)
    pages = 1
    while (link := _next(body)) is not None:
        assert len(body["features"]) == 2
        seen += _ids(body)
        body = _get(client, link["href"].removeprefix("http://localhost"))
        pages += 1
    seen += _ids(body)
    assert pages == 3
    assert sorted(seen) == sorted(DATASETS)
    index_items = _get(client, "/stac/collections/index/items", limit=1)
    assert "/stac/collections/index/items?" in _next(index_items)["href"]
    seen = _all_pages(client, "/stac/collections/index/items", limit=1, bbox="-180,-90,180,90")
    assert sorted(seen) == ["evi-2018", "ndvi-2016", "ndwi-2017"]


def test_one_item_and_its_fields(client: FlaskClient) -> None:
    item = _get(client, "/stac/collections/index/items/ndvi-2016")
    assert item["geometry"] == _box(10.0, 45.0, 11.0, 46.0)
    assert item["bbox"] == [10.0, 45.0, 11.0, 46.0]
    props = item["properties"]
    assert props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == (
        "2016-06-01T00:00:00Z",
        "2016-06-30T00:00:00Z",
    )
    assert props["madrone:index"] == "ndvi"
    assert props["madrone:owner"] == "ana"
    assert props["created"] == "2024-01-01T00:00:00Z"
    cog, png, meta = item["assets"]["cog"], item["assets"]["png"], item["assets"]["json"]
    assert (cog["href"], cog["roles"], cog["file:size"]) == ("/data/ndvi-2016.tif", ["data"], 1234)
    assert cog["type"].startswith("image/tiff")
    assert cog["file:checksum"] == "1220" + HEX
    assert (png["roles"], png["type"]) == (["visual"], "image/png")
    assert (meta["roles"], meta["type"]) == (["metadata"], "application/json")
    parsed = pystac.Item.from_dict(item)
    assert parsed.id == "ndvi-2016"
    assert parsed.common_metadata.start_datetime == _day(2016, 6, 1)
    assert parsed.to_dict(transform_hrefs=False)["assets"]["cog"]["href"] == cog["href"]
    single = _get(client, "/stac/collections/vector/items/roads")["properties"]
    assert single["datetime"] == "2019-07-07T00:00:00Z"
    assert client.get("/stac/collections/vector/items/ndvi-2016").status_code == 404
    assert client.get("/stac/collections/index/items/nothing").status_code == 404


def test_undated_item_claims_the_widest_range(client: FlaskClient) -> None:
    props = _get(client, "/stac/collections/geotiff/items/undated")["properties"]
    assert props["datetime"] is None
    assert props["madrone:datetime"] == "unknown"
    assert (props["start_datetime"], props["end_datetime"]) == (
        "2015-06-23T00:00:00Z",
        "9999-12-31T23:59:59Z",
    )
    item = _get(client, "/stac/collections/geotiff/items/undated")
    assert pystac.Item.from_dict(item).datetime is None


def test_bbox_filters(client: FlaskClient) -> None:
    body = _get(client, "/stac/search", bbox="10.6,45.6,10.7,45.7")
    assert sorted(_ids(body)) == ["ndvi-2016", "roads"]
    assert _ids(_get(client, "/stac/search", bbox="-10,49,-4.5,52")) == ["evi-2018"]
    assert _ids(_get(client, "/stac/search", bbox="100,0,110,5")) == []
    # Across the antimeridian: 170E to 10W holds only the dataset at 5W..4W.
    assert _ids(_get(client, "/stac/search", bbox="170,40,-4.5,60")) == ["evi-2018"]
    bad = client.get("/stac/search", query_string={"bbox": "1,2,3"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2016-06-15T00:00:00Z", ["ndvi-2016"]),
        ("2017-01-01T00:00:00Z/2018-06-01T00:00:00Z", ["evi-2018", "ndwi-2017"]),
        ("2018-02-01T00:00:00Z/..", ["evi-2018", "roads"]),
        ("../2017-01-01T00:00:00Z", ["ndvi-2016"]),
        ("/2017-01-01", ["ndvi-2016"]),
        ("2017-03-05", ["ndwi-2017"]),
        ("2020-01-01T00:00:00Z/..", []),
    ],
)
def test_datetime_filters_leave_the_undated_out(
    client: FlaskClient, when: str, expected: list[str]
) -> None:
    assert sorted(_ids(_get(client, "/stac/search", datetime=when))) == expected
    assert "undated" in _ids(_get(client, "/stac/search"))


def test_datetime_parsing_and_refusals(client: FlaskClient) -> None:
    assert parse_datetime("2016-01-01/..") == (_day(2016, 1, 1), None)
    assert parse_datetime("../2017-01-01T00:00:00Z") == (None, _day(2017, 1, 1))
    start, end = parse_datetime("2016-01-01")
    assert (start, end.date(), end.hour) == (_day(2016, 1, 1), _day(2016, 1, 1).date(), 23)
    for bad in ("yesterday", "2017-01-01/2016-01-01"):
        assert client.get("/stac/search", query_string={"datetime": bad}).status_code == 400


def test_limits_and_tokens(client: FlaskClient) -> None:
    assert len(_ids(_get(client, "/stac/search", limit=5000))) == len(DATASETS)
    for params in ({"limit": "0"}, {"limit": "many"}, {"token": "forged"}):
        assert client.get("/stac/search", query_string=params).status_code == 400, params
    assert client.get("/stac/search", query_string={"ids": "a", "token": "x"}).status_code == 400
    assert client.post("/stac/search", json={"intersects": _box(0, 0, 1, 1)}).status_code == 400


def test_ids_and_collections(client: FlaskClient) -> None:
    body = _get(client, "/stac/search", ids="roads,undated,missing")
    assert sorted(_ids(body)) == ["roads", "undated"]
    body = _get(client, "/stac/search", ids="roads,ndvi-2016,evi-2018", limit=2)
    seen = _ids(body)
    assert len(seen) == 2
    body = _get(client, _next(body)["href"].removeprefix("http://localhost"))
    assert sorted(seen + _ids(body)) == ["evi-2018", "ndvi-2016", "roads"]
    body = _get(client, "/stac/search", ids="ndvi-2016,evi-2018", bbox="9,44,12,47")
    assert _ids(body) == ["ndvi-2016"]
    seen = _all_pages(client, "/stac/search", collections="vector,geotiff", limit=1)
    assert sorted(seen) == ["roads", "undated"]
    too_many = ",".join(str(n) for n in range(1001))
    assert client.get("/stac/search", query_string={"ids": too_many}).status_code == 400
    assert _ids(_get(client, "/stac/search", collections="nothing")) == []


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "10.6,45.6,10.7,45.7"},
        {"datetime": "2017-01-01T00:00:00Z/.."},
        {"collections": "index", "limit": "2"},
        {"ids": "roads,undated"},
        {"limit": "2"},
    ],
)
def test_post_search_equals_get_search(client: FlaskClient, params: dict) -> None:
    body = {}
    for key, value in params.items():
        if key == "bbox":
            body[key] = [float(v) for v in value.split(",")]
        elif key in ("collections", "ids"):
            body[key] = value.split(",")
        elif key == "limit":
            body[key] = int(value)
        else:
            body[key] = value
    got = client.post("/stac/search", json=body).get_json()
    post_ids = _ids(got)
    while (link := _next(got)) is not None:
        assert link["method"] == "POST"
        url = link["href"].removeprefix("http://localhost")
        got = client.post(url, json=link["body"]).get_json()
        post_ids += _ids(got)
    assert post_ids == _all_pages(client, "/stac/search", **params)
    assert client.post("/stac/search", json=[1]).status_code == 400


def test_reading_needs_a_token_unless_public(catalog: Catalog) -> None:
    client = _app(catalog, public_read=0).test_client()
    for url in ("/stac", "/stac/collections", "/stac/search", "/stac/collections/index/items"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.get_json()["error"]["status"] == 401
    assert client.post("/stac/search", json={}).status_code == 401
    add_user(catalog, "vera", "viewer")
    token = create_token(catalog, "vera").token
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/stac", headers=headers).status_code == 200
    body = client.get("/stac/search", headers=headers).get_json()
    assert sorted(_ids(body)) == sorted(DATASETS)
    bad = client.get("/stac", headers={"Authorization": "Bearer mdr_wrong"})
    assert bad.status_code in (401, 403)  # refused, whichever the app calls it


@pytest.fixture
def server_url(catalog: Catalog) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _app(catalog, public_read=1), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/stac"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_pystac_client_searches_a_real_server(server_url: str) -> None:
    from pystac_client import Client

    client = Client.open(server_url)
    assert {c.id for c in client.get_collections()} == set(DATASET_KINDS_SEEN)
    search = client.search(bbox=[9, 44, 12, 47], limit=1, method="POST")
    assert sorted(item.id for item in search.items()) == ["ndvi-2016", "roads"]
    search = client.search(datetime="2017-01-01/..", max_items=10, method="GET", limit=1)
    assert sorted(item.id for item in search.items()) == ["evi-2018", "ndwi-2017", "roads"]
    item = next(client.search(ids=["undated"]).items())
    assert item.properties["madrone:datetime"] == "unknown"


def test_postgres_catalog_serves_the_same(postgres_url: str) -> None:
    """PostGIS searches and aggregates differently; the API must not show it."""
    with _filled_catalog(postgres_url) as catalog:
        client = _app(catalog, public_read=1).test_client()
        found = {c["id"]: c for c in _get(client, "/stac/collections")["collections"]}
        assert found["index"]["extent"]["spatial"]["bbox"] == [[-5.0, 40.0, 13.0, 51.0]]
        assert found["index"]["extent"]["temporal"]["interval"] == [
            ["2016-06-01T00:00:00Z", "2018-12-31T00:00:00Z"]
        ]
        assert found["geotiff"]["extent"]["temporal"]["interval"] == [
            ["2015-06-23T00:00:00Z", None]
        ]
        seen = _all_pages(client, "/stac/search", bbox="10.6,45.6,10.7,45.7", limit=1)
        assert sorted(seen) == ["ndvi-2016", "roads"]
        seen = _all_pages(client, "/stac/search", datetime="../2017-12-31", limit=1)
        assert sorted(seen) == ["ndvi-2016", "ndwi-2017"]
