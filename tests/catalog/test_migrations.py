"""Migrations: an empty database reaches the newest revision; a catalog made by the previous
revision upgrades in place, its rows kept and found by the spatial index added since."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import HEAD, Catalog
from madrone.errors import CatalogError

SQUARE = {"type": "Polygon", "coordinates": [[[10, 40], [11, 40], [11, 41], [10, 41], [10, 40]]]}


def test_empty_database_upgrades_to_head(catalog_url: str) -> None:
    catalog = Catalog(catalog_url, upgrade=False)
    assert catalog.current() is None
    with pytest.raises(CatalogError, match=r"revision none .*madrone db upgrade"):
        catalog.require_schema()
    assert catalog.upgrade() == HEAD
    assert {"datasets", "jobs", "users", "api_tokens"} <= catalog.tables()
    catalog.require_schema()
    catalog.dispose()


def test_previous_revision_upgrades_in_place(catalog_url: str) -> None:
    catalog = Catalog(catalog_url, upgrade=False)
    assert catalog.upgrade("0001") == "0001"
    with catalog.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO datasets (id, name, description, kind, footprint, west, south, "
                "east, north, assets, stats, properties, owner, scope, created_at, updated_at) "
                "VALUES ('old', 'made under 0001', '', 'index', :footprint, 10, 40, 11, 41, "
                "'{}', '{}', '{}', 'ana', 'local', :now, :now)"
            ),
            {"footprint": json.dumps(SQUARE), "now": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, kind, name, spec, status, tiles_done, tiles_total, "
                "attempts, max_attempts, errors, cancel_requested, priority, created_at) "
                "VALUES ('j1', 'process', 'queued under 0001', '{}', 'queued', 0, 0, 0, 3, "
                "'[]', false, 0, :now)"
            ),
            {"now": "2026-01-01 00:00:00"},
        )
    assert catalog.upgrade() == HEAD
    hits = search_datasets(catalog, DatasetQuery(bbox=(10.5, 40.5, 12, 42))).items
    assert [d.name for d in hits] == ["made under 0001"]
    assert search_datasets(catalog, DatasetQuery(bbox=(12, 40, 13, 41))).items == []
    with catalog.engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM jobs")).scalar() == "queued under 0001"
    catalog.dispose()


def test_unreachable_catalog_names_it_without_the_password() -> None:
    catalog = Catalog("postgresql://ana:s3cret@127.0.0.1:1/none", upgrade=False)
    with pytest.raises(CatalogError, match=r"cannot reach catalog .*127\.0\.0\.1:1/none") as info:
        catalog.current()
    assert "s3cret" not in str(info.value)
    catalog.dispose()


def test_unknown_database_kind_is_refused() -> None:
    with pytest.raises(CatalogError, match="only sqlite:/// and postgresql://"):
        Catalog("mysql://x@localhost/db")
