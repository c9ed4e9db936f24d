"""Datasets in a catalog: register, read, delete, and search by place, index, date, owner
and text, sorted and paginated with a stable cursor.

The bbox search goes through the spatial index of each engine: PostGIS's GiST index on the
footprint geometry (then an exact ``ST_Intersects``), SQLite's R*Tree on the bbox.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, literal_column, or_, select, text

from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset
from madrone.catalog.vocabulary import DATASET_KINDS, SCOPES, SORT_KEYS
from madrone.errors import InputError, NotFoundError

MAX_LIMIT = 1000
_NO_DATE = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DatasetQuery:
    """A dataset search; every field is optional.

    Attributes:
        bbox: (west, south, east, north) in degrees; west > east crosses the antimeridian.
        index: index name (case-insensitive), e.g. ``ndvi``.
        start, end: keep datasets whose acquisition dates overlap this range (datasets with
            an unknown date are left out when a range is given).
        owner: the owner's user name.
        text: words found in the name or the description (case-insensitive).
        kind: one of ``DATASET_KINDS``; scope: ``local`` or ``shared``.
        job_id: only the datasets a job made.
        sort: ``created``, ``updated``, ``name`` or ``date``; descending unless ``ascending``.
        limit: page size; cursor: the ``next_cursor`` of the previous page.
    """

    bbox: tuple[float, float, float, float] | None = None
    index: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    owner: str | None = None
    text: str | None = None
    kind: str | None = None
    scope: str | None = None
    job_id: str | None = None
    sort: str = "created"
    ascending: bool = False
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[Dataset]
    next_cursor: str | None


def add_dataset(catalog: Catalog, dataset: Dataset) -> Dataset:
    """Register a dataset; its bbox must be sane (the footprint is what the map shows)."""
    check_dataset(dataset)
    with catalog.session() as session:
        session.add(dataset)
    return dataset


def check_dataset(dataset: Dataset) -> None:
    """Refuse a dataset whose kind, scope or bbox cannot be right, naming the field."""
    if dataset.kind not in DATASET_KINDS:
        raise InputError(f"dataset kind {dataset.kind!r} is not one of {', '.join(DATASET_KINDS)}")
    if dataset.scope not in SCOPES:
        raise InputError(f"dataset scope {dataset.scope!r} is not local or shared")
    west, south, east, north = dataset.bbox
    if not (-90 <= south <= north <= 90) or not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InputError(f"dataset {dataset.name!r}: bbox {dataset.bbox} is not W,S,E,N degrees")


def get_dataset(catalog: Catalog, dataset_id: str) -> Dataset:
    with catalog.session() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFoundError(f"no dataset {dataset_id!r} in catalog {catalog.safe_url}")
        return dataset


def delete_dataset(catalog: Catalog, dataset_id: str) -> Dataset:
    """Remove a dataset's row (its files are the caller's to remove from storage)."""
    with catalog.session() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFoundError(f"no dataset {dataset_id!r} in catalog {catalog.safe_url}")
        session.delete(dataset)
        return dataset


def search_datasets(catalog: Catalog, query: DatasetQuery) -> Page:
    """One page of datasets matching ``query``, in a stable order (ties broken by id)."""
    if query.sort not in SORT_KEYS:
        raise InputError(f"sort {query.sort!r} is not one of {', '.join(SORT_KEYS)}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InputError(f"limit must be 1 to {MAX_LIMIT}, got {query.limit}")
    key = _sort_column(query.sort)
    statement = select(Dataset).where(*_filters(catalog, query))
    if query.cursor:
        statement = statement.where(_after(key, query))
    order = (key.asc(), Dataset.id.asc()) if query.ascending else (key.desc(), Dataset.id.desc())
    statement = statement.order_by(*order).limit(query.limit + 1)
    with catalog.session() as session:
        rows = list(session.scalars(statement))
    items = rows[: query.limit]
    more = len(rows) > query.limit
    return Page(items, _encode_cursor(query.sort, items[-1]) if more else None)


def _filters(catalog: Catalog, query: DatasetQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.bbox is not None:
        where.append(_bbox_filter(catalog, query.bbox))
    if query.index:
        where.append(func.lower(Dataset.index_name) == query.index.lower())
    if query.start or query.end:
        where.append(Dataset.date_start.is_not(None))
        if query.end:
            where.append(Dataset.date_start <= query.end)
        if query.start:
            where.append(func.coalesce(Dataset.date_end, Dataset.date_start) >= query.start)
    if query.owner:
        where.append(Dataset.owner == query.owner)
    if query.kind:
        where.append(Dataset.kind == query.kind)
    if query.scope:
        where.append(Dataset.scope == query.scope)
    if query.job_id:
        where.append(Dataset.job_id == query.job_id)
    if query.text:
        for word in query.text.split():
            pattern = "%" + _escape_like(word.lower()) + "%"
            where.append(
                or_(
                    func.lower(Dataset.name).like(pattern, escape="\\"),
                    func.lower(Dataset.description).like(pattern, escape="\\"),
                )
            )
    return where


def _bbox_filter(catalog: Catalog, bbox: Sequence[float]) -> ColumnElement[bool]:
    west, south, east, north = (float(v) for v in bbox)
    if not -90 <= south <= north <= 90:
        raise InputError(f"bbox south {south} / north {north} must be -90..90 with south <= north")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InputError(f"bbox west {west} / east {east} must be within -180..180")
    boxes = [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]
    return or_(*(_box(catalog, w, south, e, north, n) for n, (w, e) in enumerate(boxes)))


def _box(catalog: Catalog, west, south, east, north, n: int) -> ColumnElement[bool]:
    values = {f"w{n}": west, f"s{n}": south, f"e{n}": east, f"n{n}": north}
    params = [bindparam(name, value) for name, value in values.items()]
    if catalog.is_postgres:
        envelope = f"ST_MakeEnvelope(:w{n}, :s{n}, :e{n}, :n{n}, 4326)"
        clause = text(f"datasets.geom && {envelope} AND ST_Intersects(datasets.geom, {envelope})")
        return clause.bindparams(*params)
    inner = text(
        f"SELECT rid FROM datasets_rtree WHERE east >= :w{n} AND west <= :e{n} "
        f"AND north >= :s{n} AND south <= :n{n}"
    ).bindparams(*params)
    # The R*Tree stores 32-bit floats rounded outwards; the exact test follows on the row.
    exact = and_(
        Dataset.east >= west, Dataset.west <= east, Dataset.north >= south, Dataset.south <= north
    )
    return and_(literal_column("datasets.rowid").in_(inner), exact)


def _sort_column(sort: str) -> ColumnElement[Any]:
    if sort == "date":
        return func.coalesce(Dataset.date_start, _NO_DATE)
    return {"created": Dataset.created_at, "updated": Dataset.updated_at, "name": Dataset.name}[
        sort
    ]


def _after(key: ColumnElement[Any], query: DatasetQuery) -> ColumnElement[bool]:
    value, last_id = _decode_cursor(query.cursor, query.sort)
    if query.ascending:
        return or_(key > value, and_(key == value, Dataset.id > last_id))
    return or_(key < value, and_(key == value, Dataset.id < last_id))


def _encode_cursor(sort: str, last: Dataset) -> str:
    value: Any = {
        "created": last.created_at,
        "updated": last.updated_at,
        "name": last.name,
        "date": last.date_start or _NO_DATE,
    }[sort]
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, value, last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, value, last_id = json.loads(base64.urlsafe_b64decode(padded))
        if kind != sort:
            raise ValueError("cursor of another sort")
        if not (isinstance(value, str) and isinstance(last_id, str)):
            raise ValueError("forged cursor")  # a hand-made cursor must not reach the SQL
        if sort != "name":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("a time without its zone")
        return value, last_id
    except (ValueError, TypeError) as error:
        raise InputError(f"cursor {cursor[:40]!r} is not one this search gave ({error})") from None


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def dataset_to_dict(dataset: Dataset) -> dict[str, Any]:
    """A dataset as plain JSON-ready data (for ``--json`` and the REST API)."""

    def stamp(value) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": dataset.id,
        "name": dataset.name,
        "description": dataset.description,
        "kind": dataset.kind,
        "index": dataset.index_name,
        "expression": dataset.expression,
        "bbox": list(dataset.bbox),
        "footprint": dataset.footprint,
        "crs": dataset.crs,
        "resolution": dataset.resolution,
        "date_start": stamp(dataset.date_start),
        "date_end": stamp(dataset.date_end),
        "assets": dataset.assets,
        "stats": dataset.stats,
        "properties": dataset.properties,
        "owner": dataset.owner,
        "scope": dataset.scope,
        "job_id": dataset.job_id,
        "shared_from": dataset.shared_from,
        "created_at": stamp(dataset.created_at),
        "updated_at": stamp(dataset.updated_at),
    }
