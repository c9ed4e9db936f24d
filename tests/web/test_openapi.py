"""The OpenAPI document: valid by openapi-spec-validator, describing every route of /api and
/tiles that the app serves; and the browsable page of it at /api/docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from openapi_spec_validator import validate

from madrone.catalog.db import Catalog
from madrone.config import Settings
from madrone.web import create_app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}", upgrade=True)
    yield create_app(Settings(storage_url=str(tmp_path / "storage")), catalog=catalog)
    catalog.dispose()


def served(app: Flask) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route under /api and /tiles."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/tiles/")):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def documented(document: dict) -> set[tuple[str, str]]:
    """(method, full path) of every operation, each path under its own or the top server."""
    top = document["servers"][0]["url"]
    operations = set()
    for path, item in document["paths"].items():
        server = item.get("servers", [{"url": top}])[0]["url"]
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                operations.add((method, server + path))
    return operations


def test_the_document_is_valid_and_describes_every_route(app: Flask) -> None:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert documented(document) == served(app)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    upload = document["paths"]["/uploads"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data"}
    assert {"201", "413", "422"} <= set(upload["responses"])
    share = document["paths"]["/datasets/{dataset_id}/share"]["post"]["responses"]
    assert {"200", "201", "409"} <= set(share)
    assert document["paths"]["/{dataset_id}/point"]["servers"] == [
        {"url": "/tiles", "description": "map tiles, beside /api"}
    ]
    search = document["paths"]["/datasets"]["get"]["parameters"]
    assert {"catalog", "job", "bbox", "q"} <= {p["name"] for p in search}


def test_the_docs_page_loads_its_own_script(app: Flask) -> None:
    response = app.test_client().get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<script src="/static/js/apidocs.js"></script>' in page
    assert re.findall(r"<script>", page) == []  # no inline script (the CSP allows none)
    assert 'id="apidocs"' in page and 'href="/api/openapi.json"' in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    script = app.test_client().get("/static/js/apidocs.js")
    assert script.status_code == 200
    assert "innerHTML" not in script.get_data(as_text=True)
    script.close()
