"""A fresh catalog per test on both engines: a SQLite file and a throwaway PostgreSQL
database with PostGIS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from madrone.catalog.db import Catalog


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    catalog = Catalog(catalog_url, upgrade=True)
    yield catalog
    catalog.dispose()
