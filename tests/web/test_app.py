"""The app factory: one app per test on its own catalog; MadroneError classes map to HTTP
statuses in one table; tokens decide who may read and write."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from madrone.catalog.db import Catalog
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.errors import ConflictError, NotFoundError, SourceError
from madrone.web import create_app
from madrone.web.app import require


@pytest.fixture
def catalog(tmp_path: Path):
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield catalog
    catalog.dispose()


def make_app(catalog: Catalog, public_read: int = 0) -> Flask:
    app = create_app(Settings(public_read=public_read), catalog=catalog)
    errors = {"missing": NotFoundError, "source": SourceError, "conflict": ConflictError}

    @app.get("/api/_probe/<kind>")
    def probe(kind: str):
        raise errors[kind](f"probe {kind} <b>x</b>")

    @app.get("/api/_read")
    def read():
        user = require("viewer")
        return {"user": user.name if user else None}

    @app.post("/api/_write")
    def write():
        return {"user": require("editor").name}

    return app


@pytest.mark.parametrize(("kind", "status"), [("missing", 404), ("source", 422), ("conflict", 409)])
def test_errors_are_json_with_their_status(catalog, kind: str, status: int) -> None:
    response = make_app(catalog).test_client().get(f"/api/_probe/{kind}")
    assert response.status_code == status
    assert response.get_json()["error"]["message"] == f"probe {kind} <b>x</b>"
    assert response.mimetype == "application/json"


def test_unknown_api_path_is_a_json_404(catalog) -> None:
    response = make_app(catalog).test_client().get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.get_json()["error"]["status"] == 404


def test_tokens_decide_reading_and_writing(catalog) -> None:
    add_user(catalog, "vi", "viewer")
    add_user(catalog, "ed", "editor")
    viewer = {"Authorization": f"Bearer {create_token(catalog, 'vi').token}"}
    editor = {"Authorization": f"Bearer {create_token(catalog, 'ed').token}"}
    client = make_app(catalog).test_client()
    assert client.get("/api/_read").status_code == 401
    assert client.get("/api/_read", headers=viewer).get_json() == {"user": "vi"}
    refused = client.post("/api/_write", headers=viewer)
    assert refused.status_code == 403
    assert "editor role needed" in refused.get_json()["error"]["message"]
    assert client.post("/api/_write", headers=editor).get_json() == {"user": "ed"}
    forged = {"Authorization": "Bearer mdr_not-a-token"}
    assert client.get("/api/_read", headers=forged).status_code == 401
    assert client.get("/api/_read", headers={"Authorization": "Basic x"}).status_code == 401


def test_public_read_opens_reads_only(catalog) -> None:
    client = make_app(catalog, public_read=1).test_client()
    assert client.get("/api/_read").get_json() == {"user": None}
    assert client.post("/api/_write").status_code == 401


def test_a_central_catalog_equal_to_the_apps_own_is_not_a_second_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'team.sqlite'}"
    same = create_app(Settings(db_url=url, central_db_url=url, public_read=1))
    other = create_app(Settings(db_url=url, central_db_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                                public_read=1))  # fmt: skip
    try:
        assert same.config["MADRONE_CENTRAL_CATALOG"] is None
        assert other.config["MADRONE_CENTRAL_CATALOG"] is not None
        assert same.test_client().get("/api/me").get_json()["central"] is False
        assert other.test_client().get("/api/me").get_json()["central"] is True
    finally:
        for app in (same, other):
            app.config["MADRONE_CATALOG"].dispose()
            if app.config["MADRONE_CENTRAL_CATALOG"] is not None:
                app.config["MADRONE_CENTRAL_CATALOG"].dispose()
