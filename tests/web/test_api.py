"""The REST API: a fresh app per test on its own catalog; jobs go through the engine's
preflight before they are queued; tokens decide who reads and writes; the OpenAPI document
is valid."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import rasterio
from flask.testing import FlaskClient
from rasterio.warp import transform as warp_transform

from madrone.catalog.datasets import add_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.ingest import add_file
from madrone.catalog.models import Dataset
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.sources.mosaic import SAMPLE_CORNERS, sample_mosaic
from madrone.storage import Storage
from madrone.web import create_app
from madrone.web.api import safe_filename
from tests.conftest import sentinel2_dir

DEMO_SCENE = str(resources.files("madrone") / "data/demo/L1C_T18SVG_20160112_demo")


class Api:
    """A test client on a fresh app, with a token per role (viewer, editor, admin, other)."""

    def __init__(self, catalog: Catalog, public_read: int = 0, **settings: Any) -> None:
        self.catalog = catalog
        self.settings = Settings(public_read=public_read, **settings)
        app = create_app(self.settings, catalog=catalog)
        self.client: FlaskClient = app.test_client()
        self.tokens: dict[str, str] = {}
        for name, role in (("vic", "viewer"), ("eve", "editor"), ("ada", "admin"),
                           ("oli", "editor")):  # fmt: skip
            add_user(catalog, name, role)
            self.tokens[name] = create_token(catalog, name).token

    def call(self, method: str, path: str, user: str | None = None, **kwargs: Any):
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return self.client.open(f"/api{path}", method=method, headers=headers, **kwargs)


@pytest.fixture
def api_catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}", upgrade=True)
    yield catalog
    catalog.dispose()


@pytest.fixture
def api(api_catalog: Catalog, tmp_path: Path) -> Api:
    return Api(api_catalog, storage_url=str(tmp_path / "storage"))


def demo_request(**extra: Any) -> dict[str, Any]:
    return {"sources": [DEMO_SCENE], "indices": ["ndvi"], **extra}


def sample_request(**extra: Any) -> dict[str, Any]:
    """An area request from the bundled sample mosaic: what an editor may ask for."""
    return {"corners": list(SAMPLE_CORNERS), "indices": ["ndvi"], **extra}


def queued(api: Api) -> list[dict[str, Any]]:
    response = api.call("GET", "/jobs", "vic")
    assert response.status_code == 200
    return response.get_json()["jobs"]


def test_a_demo_job_is_queued_and_found(api: Api) -> None:
    response = api.call("POST", "/jobs", "ada", json=demo_request(name="demo", priority=3))
    assert response.status_code == 201
    job = response.get_json()
    assert (job["status"], job["kind"], job["name"]) == ("queued", "process", "demo")
    assert (job["requester"], job["priority"]) == ("ada", 3)
    assert job["spec"]["indices"] == ["ndvi"]
    assert job["spec"]["sources"][0]["path"] == DEMO_SCENE

    shown = api.call("GET", f"/jobs/{job['id']}", "vic")
    assert shown.status_code == 200
    assert shown.get_json()["id"] == job["id"]
    assert [j["id"] for j in queued(api)] == [job["id"]]
    assert api.call("GET", "/jobs?status=succeeded", "vic").get_json() == {"jobs": []}


def test_an_idempotency_key_returns_the_same_job(api: Api) -> None:
    first = api.call("POST", "/jobs", "ada", json=demo_request(idempotency_key="k1"))
    again = api.call("POST", "/jobs", "ada", json=demo_request(idempotency_key="k1"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    other = api.call(
        "POST", "/jobs", "ada", json=demo_request(idempotency_key="k1", indices="ndsi")
    )
    assert other.status_code == 409
    assert "k1" in other.get_json()["error"]["message"]
    assert len(queued(api)) == 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (demo_request(indices=["ndvx"]), 404, ["ndvx"]),
        ({"corners": [45.5, 15.0, 45.9, 15.4], "indices": ["ndvi"]}, 400, ["latitude"]),
        ({"sources": ["/no/such/scene.SAFE"], "indices": ["ndvi"]}, 422, ["/no/such/scene"]),
        (demo_request(colour="red", speed=2), 400, ["colour", "speed"]),
        ({"corners": [45.9, 15.0, 45.5, 15.4], "clip": 1}, 400, ["clip", "area request"]),
        (demo_request(resolution="ten"), 400, ["resolution"]),
        (demo_request(priority=True), 400, ["priority"]),
        ({"corners": [45.9, 15.0]}, 400, ["corners"]),
    ],
)
def test_bad_requests_are_refused_and_queue_nothing(
    api: Api, body: dict[str, Any], status: int, words: list[str]
) -> None:
    response = api.call("POST", "/jobs", "ada", json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["status"] == status
    for word in words:
        assert word in error["message"]
    assert queued(api) == []


def test_a_body_that_is_not_a_json_object_is_refused(api: Api) -> None:
    response = api.call("POST", "/jobs", "eve", data="sources=x")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]["message"]
    assert api.call("POST", "/jobs", "eve", json=[1]).status_code == 400


def test_tokens_and_roles(api: Api) -> None:
    for method, path in (("GET", "/jobs"), ("GET", "/datasets"), ("POST", "/jobs")):
        response = api.call(method, path, json={} if method == "POST" else None)
        assert response.status_code == 401
        assert response.get_json()["error"]["type"] == "AuthenticationRequired"
    response = api.call("POST", "/jobs", "vic", json=demo_request())
    assert response.status_code == 403
    assert "editor role needed" in response.get_json()["error"]["message"]
    bad = api.client.get("/api/jobs", headers={"Authorization": "Bearer mdr_nope"})
    assert bad.status_code == 401
    assert "mdr_nope" in bad.get_json()["error"]["message"]
    assert queued(api) == []


def test_public_read_opens_reading_only(api_catalog: Catalog) -> None:
    api = Api(api_catalog, public_read=1)
    assert api.call("GET", "/jobs").get_json() == {"jobs": []}
    assert api.call("GET", "/datasets").get_json() == {"datasets": [], "next_cursor": None}
    response = api.call("POST", "/jobs", json=demo_request())
    assert response.status_code == 401
    assert "editor" in response.get_json()["error"]["message"]
    assert queued(api) == []


def test_cancel_a_job_by_its_requester_or_an_admin(api: Api) -> None:
    job = api.call("POST", "/jobs", "eve", json=sample_request()).get_json()
    refused = api.call("POST", f"/jobs/{job['id']}/cancel", "oli")
    assert refused.status_code == 403
    assert "eve" in refused.get_json()["error"]["message"]
    cancelled = api.call("POST", f"/jobs/{job['id']}/cancel", "eve")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    again = api.call("POST", f"/jobs/{job['id']}/cancel", "ada")
    assert again.status_code == 409
    missing = api.call("GET", "/jobs/nope", "vic")
    assert missing.status_code == 404
    assert "nope" in missing.get_json()["error"]["message"]


def place(
    catalog: Catalog, name: str, bbox: tuple[float, float, float, float], index: str = "NDVI"
) -> str:
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    dataset = Dataset(
        name=name, description=f"{name} test", kind="index", index_name=index, owner="eve",
        scope="local", footprint={"type": "Polygon", "coordinates": [ring]},
        west=west, south=south, east=east, north=north,
    )  # fmt: skip
    return add_dataset(catalog, dataset).id


def names(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return sorted(dataset["name"] for dataset in response.get_json()["datasets"])


def test_dataset_search_by_place_and_words(api: Api) -> None:
    place(api.catalog, "alps", (6.0, 45.0, 8.0, 47.0))
    place(api.catalog, "andes", (-72.0, -34.0, -70.0, -32.0), index="NDSI")
    place(api.catalog, "jura", (5.5, 46.5, 7.0, 47.5))
    assert names(api.call("GET", "/datasets?bbox=6.5,46.0,7.5,46.8", "vic")) == ["alps", "jura"]
    assert names(api.call("GET", "/datasets?bbox=-75,-40,-60,-30", "vic")) == ["andes"]
    assert names(api.call("GET", "/datasets?index=ndsi", "vic")) == ["andes"]
    assert names(api.call("GET", "/datasets?q=jura", "vic")) == ["jura"]
    first = api.call("GET", "/datasets?sort=name&asc=1&limit=2", "vic").get_json()
    assert [d["name"] for d in first["datasets"]] == ["alps", "andes"]
    rest = api.call("GET", f"/datasets?sort=name&asc=1&cursor={first['next_cursor']}", "vic")
    assert names(rest) == ["jura"]
    for query, word in (("bbox=1,2,3", "bbox"), ("from=soon", "from"), ("limit=x", "limit"),
                        ("sort=colour", "colour")):  # fmt: skip
        bad = api.call("GET", f"/datasets?{query}", "vic")
        assert bad.status_code == 400, query
        assert word in bad.get_json()["error"]["message"]


def test_dataset_search_by_dates_and_kind(api: Api) -> None:
    winter = place(api.catalog, "winter", (6.0, 45.0, 8.0, 47.0))
    summer = place(api.catalog, "summer", (6.0, 45.0, 8.0, 47.0))
    with api.catalog.session() as session:
        for dataset_id, day in ((winter, datetime(2016, 1, 12, 10, tzinfo=UTC)),
                                (summer, datetime(2023, 8, 1, 10, tzinfo=UTC))):  # fmt: skip
            row = session.get(Dataset, dataset_id)
            row.date_start = row.date_end = day
    assert names(api.call("GET", "/datasets?from=2016-01-01&to=2016-01-12", "vic")) == ["winter"]
    assert names(api.call("GET", "/datasets?from=2020-01-01", "vic")) == ["summer"]
    assert names(api.call("GET", "/datasets?kind=index&owner=eve", "vic")) == ["summer", "winter"]
    assert names(api.call("GET", "/datasets?owner=ada", "vic")) == []


def test_show_and_delete_a_dataset(api: Api) -> None:
    dataset_id = place(api.catalog, "alps", (6.0, 45.0, 8.0, 47.0))
    shown = api.call("GET", f"/datasets/{dataset_id}", "vic")
    assert shown.status_code == 200
    assert (shown.get_json()["name"], shown.get_json()["bbox"]) == ("alps", [6.0, 45.0, 8.0, 47.0])
    assert api.call("DELETE", f"/datasets/{dataset_id}", "vic").status_code == 403
    assert api.call("DELETE", f"/datasets/{dataset_id}", "oli").status_code == 403
    deleted = api.call("DELETE", f"/datasets/{dataset_id}", "eve")
    assert (deleted.status_code, deleted.get_json()["id"]) == (200, dataset_id)
    gone = api.call("GET", f"/datasets/{dataset_id}", "vic")
    assert gone.status_code == 404
    assert dataset_id in gone.get_json()["error"]["message"]
    other = place(api.catalog, "jura", (5.5, 46.5, 7.0, 47.5))
    assert api.call("DELETE", f"/datasets/{other}", "ada").status_code == 200


def test_on_postgresql(postgres_url: str) -> None:
    catalog = Catalog(postgres_url, upgrade=True)
    try:
        api = Api(catalog)
        place(catalog, "alps", (6.0, 45.0, 8.0, 47.0))
        place(catalog, "andes", (-72.0, -34.0, -70.0, -32.0))
        assert names(api.call("GET", "/datasets?bbox=6.5,46.0,7.5,46.8", "vic")) == ["alps"]
        body = demo_request(idempotency_key="pg")
        first = api.call("POST", "/jobs", "ada", json=body)
        again = api.call("POST", "/jobs", "ada", json=body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert [job["id"] for job in queued(api)] == [first.get_json()["id"]]
        bad = api.call("POST", "/jobs", "ada", json=demo_request(indices=["ndvx"]))
        assert bad.status_code == 404
        assert len(queued(api)) == 1
    finally:
        catalog.dispose()


# -- who am I, sources, indices -------------------------------------------------------------
def test_me_says_who_is_asking(api: Api) -> None:
    anonymous = api.call("GET", "/me")
    assert anonymous.status_code == 200
    assert anonymous.get_json() == {"user": None, "public_read": False, "central": False}
    assert api.call("GET", "/me", "eve").get_json()["user"] == {"name": "eve", "role": "editor"}
    bad = api.client.get("/api/me", headers={"Authorization": "Bearer mdr_nope"})
    assert bad.status_code == 401


def test_sources_start_with_the_sample_mosaic(api_catalog: Catalog) -> None:
    api = Api(api_catalog, sources="Team STAC=https://stac.example.org/v1;Local=/data/m.tif")
    response = api.call("GET", "/sources", "vic")
    assert response.status_code == 200
    listed = response.get_json()["sources"]
    assert listed[0]["url"] is None and "ample" in listed[0]["label"]
    assert listed[1:] == [
        {"label": "Team STAC", "url": "https://stac.example.org/v1"},
        {"label": "Local", "url": "/data/m.tif"},
    ]
    assert api.call("GET", "/sources").status_code == 401


def test_indices_are_those_sentinel2_computes(api: Api) -> None:
    response = api.call("GET", "/indices", "vic")
    assert response.status_code == 200
    found = {index["name"]: index for index in response.get_json()["indices"]}
    assert found["NDVI"]["bands"] == ["B04", "B08"]
    assert found["NDSI"]["bands"] == ["B03", "B11"]
    assert "Normalized Difference Vegetation Index" in found["NDVI"]["long_name"]
    assert len(found) > 50


# -- request rights and preflight -----------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "word"),
    [
        (demo_request(), "sources"),
        (sample_request(bands={"B04": "/etc/passwd"}), "bands"),
        (sample_request(source="/etc/passwd"), "/etc/passwd"),
        (sample_request(source="https://evil.example.com/stac"), "evil.example.com"),
    ],
)
def test_an_editor_reads_only_what_the_site_offers(
    api: Api, body: dict[str, Any], word: str
) -> None:
    for path in ("/jobs", "/jobs/preflight"):
        response = api.call("POST", path, "eve", json=body)
        assert response.status_code == 403, response.get_json()
        error = response.get_json()["error"]
        assert (error["type"], error["status"]) == ("AccessDeniedError", 403)
        assert word in error["message"]
    assert queued(api) == []


def test_offered_sources_for_editors_any_for_admins(api_catalog: Catalog, tmp_path: Path) -> None:
    api = Api(api_catalog, sources=f"Sample copy={sample_mosaic()}")
    offered = api.call("POST", "/jobs", "eve", json=sample_request(source=sample_mosaic()))
    assert offered.status_code == 201, offered.get_json()
    assert offered.get_json()["spec"]["sources"][0]["path"] == sample_mosaic()
    default = api.call("POST", "/jobs", "eve", json=sample_request(source=None))
    assert default.status_code == 201, default.get_json()
    admin = api.call("POST", "/jobs", "ada", json=demo_request())
    assert admin.status_code == 201
    assert len(queued(api)) == 3


def test_preflight_checks_and_queues_nothing(api: Api) -> None:
    response = api.call("POST", "/jobs/preflight", "eve", json=sample_request(name="wadi"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"] is True
    summary = body["summary"]
    assert (summary["name"], summary["indices"], summary["scenes"]) == ("wadi", ["NDVI"], 1)
    assert summary["tiles"] >= 1 and summary["width"] > 0 and summary["height"] > 0
    assert summary["crs"].startswith("EPSG:")
    bad = api.call("POST", "/jobs/preflight", "eve", json=sample_request(indices=["ndvx"]))
    assert bad.status_code == 404
    assert "ndvx" in bad.get_json()["error"]["message"]
    upside = api.call("POST", "/jobs/preflight", "eve", json={"corners": [24.98, -11.42, 25.08,
                                                                          -11.32]})  # fmt: skip
    assert upside.status_code == 400
    assert "latitude" in upside.get_json()["error"]["message"]
    assert api.call("POST", "/jobs/preflight", "vic", json=sample_request()).status_code == 403
    assert api.call("POST", "/jobs/preflight", json=sample_request()).status_code == 401
    assert queued(api) == []


# -- datasets of a job, of the central catalog -----------------------------------------------
def test_datasets_of_a_job(api: Api) -> None:
    first, second = place(api.catalog, "a", (6, 45, 8, 47)), place(api.catalog, "b", (6, 45, 8, 47))
    place(api.catalog, "c", (6, 45, 8, 47))
    with api.catalog.session() as session:
        for dataset_id in (first, second):
            session.get(Dataset, dataset_id).job_id = "job-1"
    assert names(api.call("GET", "/datasets?job=job-1", "vic")) == ["a", "b"]
    assert names(api.call("GET", "/datasets?job=job-2", "vic")) == []


@pytest.fixture
def central_catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'central.sqlite'}", upgrade=True)
    yield catalog
    catalog.dispose()


def test_the_shared_catalog_is_searched_and_shown(
    api: Api, api_catalog: Catalog, central_catalog: Catalog
) -> None:
    refused = api.call("GET", "/datasets?catalog=shared", "vic")
    assert refused.status_code == 409
    assert "no central catalog" in refused.get_json()["error"]["message"]
    assert api.call("GET", "/datasets?catalog=elsewhere", "vic").status_code == 400
    team_api = TeamApi(api_catalog, central_catalog, api.settings)
    shared = place(central_catalog, "team alps", (6.0, 45.0, 8.0, 47.0))
    place(api_catalog, "my jura", (5.5, 46.5, 7.0, 47.5))
    assert names(team_api.call("GET", "/datasets?catalog=shared", "vic")) == ["team alps"]
    assert names(team_api.call("GET", "/datasets?catalog=local", "vic")) == ["my jura"]
    shown = team_api.call("GET", f"/datasets/{shared}", "vic")
    assert (shown.status_code, shown.get_json()["name"]) == (200, "team alps")
    assert team_api.call("GET", "/me").get_json()["central"] is True


class TeamApi(Api):
    """An Api whose app also has a central catalog (users and tokens stay in the local one)."""

    def __init__(self, catalog: Catalog, central: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        app = create_app(settings, catalog=catalog, central_catalog=central)
        self.client = app.test_client()
        self.tokens = {}
        for name in ("vic", "eve", "ada", "oli"):
            self.tokens[name] = create_token(catalog, name).token


# -- files: download, delete, share, values --------------------------------------------------
B04 = sentinel2_dir() / "L1C_T19UDP_20170729_900m" / "B04.tif"


@pytest.fixture
def site(tmp_path: Path, api_catalog: Catalog, central_catalog: Catalog) -> TeamApi:
    """An app with a central catalog and separate local and central storage folders."""
    settings = Settings(storage_url=str(tmp_path / "storage"),
                        central_storage_url=str(tmp_path / "central-storage"))  # fmt: skip
    Api(api_catalog)  # the users and their first tokens
    return TeamApi(api_catalog, central_catalog, settings)


def add_b04(site: Api, owner: str = "eve", name: str = "Band 4 / red: 'Gaspé'") -> str:
    with Storage.from_settings(site.settings) as storage:
        return add_file(site.catalog, storage, B04, name=name, owner=owner).id


def stored(site: Api, central: bool = False) -> list[str]:
    with Storage.from_settings(site.settings, central=central) as storage:
        return storage.list()


def test_an_asset_is_downloaded_as_an_attachment(site: TeamApi) -> None:
    dataset_id = add_b04(site)
    response = site.call("GET", f"/datasets/{dataset_id}/assets/data", "vic")
    assert response.status_code == 200
    assert response.mimetype == "image/tiff"
    assert response.headers["Content-Disposition"] == "attachment; filename=band-4-red-gaspe.tif"
    with Storage.from_settings(site.settings) as storage:
        href = site.call("GET", f"/datasets/{dataset_id}", "vic").get_json()["assets"]["data"]
        with storage.open(href["href"]) as handle:
            assert response.data == handle.read()
    assert int(response.headers["Content-Length"]) == len(response.data) == href["size"]
    missing = site.call("GET", f"/datasets/{dataset_id}/assets/cog", "vic")
    assert missing.status_code == 404
    assert "'cog'" in missing.get_json()["error"]["message"]
    assert "data" in missing.get_json()["error"]["message"]
    assert site.call("GET", f"/datasets/{dataset_id}/assets/data").status_code == 401


def test_deleting_a_dataset_removes_its_files(site: TeamApi) -> None:
    dataset_id = add_b04(site)
    assert [url.rsplit("/", 2)[1:] for url in stored(site)] == [[dataset_id, "data.tif"]]
    assert site.call("DELETE", f"/datasets/{dataset_id}", "oli").status_code == 403
    assert site.call("DELETE", f"/datasets/{dataset_id}", "vic").status_code == 403
    assert len(stored(site)) == 1
    deleted = site.call("DELETE", f"/datasets/{dataset_id}", "eve")
    assert (deleted.status_code, deleted.get_json()["id"]) == (200, dataset_id)
    assert stored(site) == []
    assert site.call("GET", f"/datasets/{dataset_id}", "vic").status_code == 404


def test_sharing_copies_a_dataset_once(site: TeamApi) -> None:
    dataset_id = add_b04(site)
    assert site.call("POST", f"/datasets/{dataset_id}/share", "vic").status_code == 403
    other = site.call("POST", f"/datasets/{dataset_id}/share", "oli")
    assert other.status_code == 403
    assert "eve" in other.get_json()["error"]["message"]
    first = site.call("POST", f"/datasets/{dataset_id}/share", "eve")
    assert first.status_code == 201, first.get_json()
    shared = first.get_json()
    assert (shared["scope"], shared["shared_from"], shared["owner"]) == (
        "shared",
        dataset_id,
        "eve",
    )
    again = site.call("POST", f"/datasets/{dataset_id}/share", "ada")
    assert (again.status_code, again.get_json()["id"]) == (200, shared["id"])
    assert len(stored(site, central=True)) == 1
    listed = site.call("GET", "/datasets?catalog=shared", "vic").get_json()["datasets"]
    assert [d["id"] for d in listed] == [shared["id"]]
    copy = site.call("POST", f"/datasets/{shared['id']}/share", "ada")
    assert copy.status_code == 409
    # the central copy downloads from the central storage
    download = site.call("GET", f"/datasets/{shared['id']}/assets/data", "vic")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].endswith(".tif")


def test_sharing_without_a_central_catalog_is_a_conflict(api: Api) -> None:
    with Storage.from_settings(api.settings) as storage:
        dataset_id = add_file(api.catalog, storage, B04, name="b4", owner="eve").id
    response = api.call("POST", f"/datasets/{dataset_id}/share", "eve")
    assert response.status_code == 409
    assert "no central catalog" in response.get_json()["error"]["message"]


def test_values_at_a_point(site: TeamApi) -> None:
    raster = add_b04(site)
    fields = {"kind": "point", "lat": "48.2", "lon": "-69.5", "name": "p", "description": "x"}
    point = site.call("POST", "/uploads", "eve", data=fields).get_json()["id"]
    lon, lat = -69.5, 48.2
    with rasterio.open(B04) as source:
        x, y = warp_transform("EPSG:4326", source.crs, [lon], [lat])
        expected = float(next(source.sample([(x[0], y[0])]))[0])
    response = site.call("GET", f"/values?lon={lon}&lat={lat}&ids={raster},{point}", "vic")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["lon"], body["lat"]) == (lon, lat)
    assert body["values"] == [{"id": raster, "name": "Band 4 / red: 'Gaspé'", "index": None,
                               "value": expected, "date": None}]  # fmt: skip
    outside = site.call("GET", f"/values?lon=10&lat=10&ids={raster}", "vic").get_json()
    assert outside["values"][0]["value"] is None
    missing = site.call("GET", f"/values?lon=10&lat=10&ids={raster},nope", "vic")
    assert missing.status_code == 404
    assert "nope" in missing.get_json()["error"]["message"]
    bad = site.call("GET", f"/values?lon=200&lat=10&ids={raster}", "vic")
    assert bad.status_code == 400
    assert "lon" in bad.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "extension", "filename"),
    [
        ("../../etc/passwd", ".tif", "etc-passwd.tif"),
        ('<script>alert("x")</script>', ".png", "script-alert-x-script.png"),
        ("日本", ".json", "dataset.json"),
        ("Crème brûlée NDVI", ".TIF", "creme-brulee-ndvi.tif"),
        ("name", "/../x", "name"),
    ],
)
def test_download_names_are_slugs(name: str, extension: str, filename: str) -> None:
    assert safe_filename(name, extension) == filename


def test_a_free_text_job_name_runs_under_a_safe_product_prefix(api: Api, tmp_path: Path) -> None:
    from madrone.service import Master

    name = "ré/../test <b>area</b>"
    response = api.call("POST", "/jobs", "eve", json=sample_request(name=name))
    assert response.status_code == 201
    job = response.get_json()
    assert job["name"] == name and job["spec"]["name"] == "re_.._test_b_area_b"
    storage = Storage.from_settings(api.settings)
    master = Master(api.catalog, storage, api.settings, work_dir=str(tmp_path / "work"))
    assert master.run_next()
    done = api.call("GET", f"/jobs/{job['id']}", "vic").get_json()
    assert done["status"] == "succeeded", done["errors"]
    dataset = api.call("GET", f"/datasets?job={job['id']}", "vic").get_json()["datasets"][0]
    cog = dataset["assets"]["cog"]["href"]
    assert cog.endswith("/re_.._test_b_area_b_ndvi.tif")
    assert Path(cog.removeprefix("file://")).is_relative_to(tmp_path / "storage")
