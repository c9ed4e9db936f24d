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
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from madrone.catalog.datasets import add_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.web import create_app

DEMO_SCENE = str(resources.files("madrone") / "data/demo/L1C_T18SVG_20160112_demo")


class Api:
    """A test client on a fresh app, with a token per role (viewer, editor, admin, other)."""

    def __init__(self, catalog: Catalog, public_read: int = 0) -> None:
        self.catalog = catalog
        app = create_app(Settings(public_read=public_read), catalog=catalog)
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
def api(api_catalog: Catalog) -> Api:
    return Api(api_catalog)


def demo_request(**extra: Any) -> dict[str, Any]:
    return {"sources": [DEMO_SCENE], "indices": ["ndvi"], **extra}


def queued(api: Api) -> list[dict[str, Any]]:
    response = api.call("GET", "/jobs", "vic")
    assert response.status_code == 200
    return response.get_json()["jobs"]


def test_a_demo_job_is_queued_and_found(api: Api) -> None:
    response = api.call("POST", "/jobs", "eve", json=demo_request(name="demo", priority=3))
    assert response.status_code == 201
    job = response.get_json()
    assert (job["status"], job["kind"], job["name"]) == ("queued", "process", "demo")
    assert (job["requester"], job["priority"]) == ("eve", 3)
    assert job["spec"]["indices"] == ["ndvi"]
    assert job["spec"]["sources"][0]["path"] == DEMO_SCENE

    shown = api.call("GET", f"/jobs/{job['id']}", "vic")
    assert shown.status_code == 200
    assert shown.get_json()["id"] == job["id"]
    assert [j["id"] for j in queued(api)] == [job["id"]]
    assert api.call("GET", "/jobs?status=succeeded", "vic").get_json() == {"jobs": []}


def test_an_idempotency_key_returns_the_same_job(api: Api) -> None:
    first = api.call("POST", "/jobs", "eve", json=demo_request(idempotency_key="k1"))
    again = api.call("POST", "/jobs", "eve", json=demo_request(idempotency_key="k1"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    other = api.call(
        "POST", "/jobs", "eve", json=demo_request(idempotency_key="k1", indices="ndsi")
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
    response = api.call("POST", "/jobs", "eve", json=body)
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
    job = api.call("POST", "/jobs", "eve", json=demo_request()).get_json()
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


def test_openapi_document_is_valid_and_complete(api: Api) -> None:
    response = api.call("GET", "/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert set(document["paths"]) == {
        "/openapi.json", "/datasets", "/datasets/{dataset_id}", "/jobs", "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
    }  # fmt: skip
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "requestBody" in document["paths"]["/jobs"]["post"]


def test_on_postgresql(postgres_url: str) -> None:
    catalog = Catalog(postgres_url, upgrade=True)
    try:
        api = Api(catalog)
        place(catalog, "alps", (6.0, 45.0, 8.0, 47.0))
        place(catalog, "andes", (-72.0, -34.0, -70.0, -32.0))
        assert names(api.call("GET", "/datasets?bbox=6.5,46.0,7.5,46.8", "vic")) == ["alps"]
        body = demo_request(idempotency_key="pg")
        first = api.call("POST", "/jobs", "eve", json=body)
        again = api.call("POST", "/jobs", "eve", json=body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert [job["id"] for job in queued(api)] == [first.get_json()["id"]]
        bad = api.call("POST", "/jobs", "eve", json=demo_request(indices=["ndvx"]))
        assert bad.status_code == 404
        assert len(queued(api)) == 1
    finally:
        catalog.dispose()
