"""Dataset search on SQLite and PostgreSQL: place (through each engine's spatial index),
index, dates, owner, text, kind and scope; stable sorted pages through ``next_cursor``; and
hostile strings stored verbatim and searched harmlessly."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from madrone.catalog.datasets import (
    DatasetQuery,
    add_dataset,
    get_dataset,
    search_datasets,
)
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset, Job, User
from madrone.errors import InputError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = [
    "x'); DROP TABLE datasets; --",
    "' OR 1=1 --",
    '"; DELETE FROM jobs;',
    "<script>alert(1)</script>",
    "100%_\\ %",
]


def box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def make(catalog: Catalog, name: str, bbox=(10.0, 40.0, 11.0, 41.0), **fields: Any) -> Dataset:
    """Register a dataset with sane defaults; any column can be given."""
    values: dict[str, Any] = {
        "kind": "index",
        "owner": "ana",
        "description": "",
        "scope": "local",
        "created_at": T0,
        "updated_at": T0,
        "footprint": box(*bbox),
    }
    values.update(fields)
    west, south, east, north = bbox
    dataset = Dataset(name=name, west=west, south=south, east=east, north=north, **values)
    return add_dataset(catalog, dataset)


def names(catalog: Catalog, **query: Any) -> set[str]:
    page = search_datasets(catalog, DatasetQuery(limit=1000, **query))
    assert page.next_cursor is None
    return {dataset.name for dataset in page.items}


def every_page(catalog: Catalog, **query: Any) -> Iterator[list[Dataset]]:
    cursor = None
    while True:
        page = search_datasets(catalog, DatasetQuery(cursor=cursor, **query))
        yield page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- filters ------------------------------------------------------------------------------


def test_bbox_intersection_edges_and_antimeridian(catalog: Catalog) -> None:
    make(catalog, "inside", (10.0, 40.0, 11.0, 41.0))
    make(catalog, "touching", (12.0, 41.0, 13.0, 42.0))  # shares the query's east edge
    make(catalog, "outside", (20.0, 20.0, 21.0, 21.0))
    make(catalog, "east-of-line", (170.0, -10.0, 179.5, -5.0))
    make(catalog, "west-of-line", (-179.5, -10.0, -170.0, -5.0))
    make(catalog, "far-pacific", (150.0, -10.0, 160.0, -5.0))
    assert names(catalog, bbox=(10.5, 40.5, 12.0, 42.0)) == {"inside", "touching"}
    assert names(catalog, bbox=(11.001, 40.0, 11.999, 42.0)) == set()
    assert names(catalog, bbox=(175.0, -20.0, -175.0, 0.0)) == {"east-of-line", "west-of-line"}
    assert names(catalog, bbox=(179.9, -20.0, -179.9, 0.0)) == set()
    assert names(catalog, bbox=(-180.0, -90.0, 180.0, 90.0)) == {
        "inside", "touching", "outside", "east-of-line", "west-of-line", "far-pacific",
    }  # fmt: skip


@pytest.mark.parametrize(
    "bbox, message",
    [((0, 10, 1, 5), "south 10.0 / north 5.0"), ((0, 0, 200, 1), "east 200.0")],
)
def test_bad_bbox_is_refused(catalog: Catalog, bbox, message: str) -> None:
    with pytest.raises(InputError, match=message):
        search_datasets(catalog, DatasetQuery(bbox=bbox))


def test_index_is_case_insensitive(catalog: Catalog) -> None:
    make(catalog, "upper", index_name="NDVI")
    make(catalog, "lower", index_name="ndvi")
    make(catalog, "snow", index_name="NDSI")
    make(catalog, "none", kind="geotiff")
    assert names(catalog, index="ndvi") == {"upper", "lower"}
    assert names(catalog, index="NdVi") == {"upper", "lower"}
    assert names(catalog, index="ndsi") == {"snow"}
    assert names(catalog, index="ndv") == set()


def test_date_range_overlap(catalog: Catalog) -> None:
    jan1, jan10, feb1 = (datetime(2024, m, d, tzinfo=UTC) for m, d in [(1, 1), (1, 10), (2, 1)])
    make(catalog, "january", date_start=jan1, date_end=jan10)
    make(catalog, "february", date_start=feb1)  # one day: no end
    make(catalog, "undated")
    assert names(catalog) == {"january", "february", "undated"}
    assert names(catalog, start=jan1 + timedelta(days=4), end=jan10 + timedelta(days=10)) == {
        "january"
    }
    assert names(catalog, start=jan10, end=jan10) == {"january"}  # inclusive ends
    assert names(catalog, start=jan10 + timedelta(seconds=1), end=feb1) == {"february"}
    assert names(catalog, start=feb1) == {"february"}
    assert names(catalog, end=jan1) == {"january"}
    assert names(catalog, end=jan1 - timedelta(seconds=1)) == set()
    assert names(catalog, start=feb1 + timedelta(seconds=1)) == set()


def test_owner_kind_and_scope(catalog: Catalog) -> None:
    make(catalog, "a", owner="ana", kind="index", scope="local")
    make(catalog, "b", owner="bob", kind="geotiff", scope="shared")
    make(catalog, "c", owner="ana", kind="point", scope="shared")
    assert names(catalog, owner="ana") == {"a", "c"}
    assert names(catalog, owner="an") == set()
    assert names(catalog, kind="geotiff") == {"b"}
    assert names(catalog, scope="shared") == {"b", "c"}
    assert names(catalog, owner="ana", scope="shared", kind="point") == {"c"}


def test_text_needs_every_word_in_name_or_description(catalog: Catalog) -> None:
    make(catalog, "Red maple", description="forest edge near the river")
    make(catalog, "Forest NDVI", description="summer")
    make(catalog, "Snow", description="winter in the Alps")
    assert names(catalog, text="forest") == {"Red maple", "Forest NDVI"}
    assert names(catalog, text="red FOREST") == {"Red maple"}
    assert names(catalog, text="  alps   winter ") == {"Snow"}
    assert names(catalog, text="forest winter") == set()


def test_like_wildcards_are_literal(catalog: Catalog) -> None:
    make(catalog, "100% cover")
    make(catalog, "1000 trees")
    make(catalog, "a_b")
    make(catalog, "axb")
    make(catalog, "back\\slash")
    assert names(catalog, text="100%") == {"100% cover"}
    assert names(catalog, text="%") == {"100% cover"}
    assert names(catalog, text="a_b") == {"a_b"}
    assert names(catalog, text="_") == {"a_b"}
    assert names(catalog, text="k\\s") == {"back\\slash"}


# -- sort and pages -----------------------------------------------------------------------


def sort_value(dataset: Dataset, sort: str) -> Any:
    if sort == "date":
        return dataset.date_start or datetime(1, 1, 1, tzinfo=UTC)
    return {"created": dataset.created_at, "updated": dataset.updated_at, "name": dataset.name}[
        sort
    ]


@pytest.fixture
def many(catalog: Catalog) -> list[Dataset]:
    """31 datasets whose sort keys repeat a lot: 3 names, 4 creation times, some undated."""
    rows = []
    for n in range(31):
        rows.append(
            make(
                catalog,
                ["alder", "birch", "cedar"][n % 3],
                created_at=T0 + timedelta(minutes=n % 4),
                updated_at=T0 - timedelta(hours=n % 5),
                date_start=None if n % 6 == 0 else T0 + timedelta(days=n % 7),
            )
        )
    return rows


@pytest.mark.parametrize("sort", ["created", "updated", "name", "date"])
@pytest.mark.parametrize("ascending", [True, False])
def test_pages_give_every_row_once_in_a_stable_order(
    catalog: Catalog, many: list[Dataset], sort: str, ascending: bool
) -> None:
    expected = sorted(many, key=lambda d: (sort_value(d, sort), d.id), reverse=not ascending)
    pages = list(every_page(catalog, sort=sort, ascending=ascending, limit=4))
    assert [len(page) for page in pages] == [4] * 7 + [3]
    got = [d.id for page in pages for d in page]
    assert got == [d.id for d in expected]
    again = [d.id for page in every_page(catalog, sort=sort, ascending=ascending, limit=4)
             for d in page]  # fmt: skip
    assert again == got


def test_pages_follow_filters(catalog: Catalog, many: list[Dataset]) -> None:
    pages = list(every_page(catalog, text="birch", sort="name", limit=3))
    got = [d.id for page in pages for d in page]
    assert sorted(got) == sorted(d.id for d in many if d.name == "birch")
    assert len(got) == len(set(got)) == 10


def test_a_page_sized_exactly_has_no_next_cursor(catalog: Catalog) -> None:
    for name in "abc":
        make(catalog, name)
    page = search_datasets(catalog, DatasetQuery(limit=3))
    assert len(page.items) == 3 and page.next_cursor is None


def test_foreign_or_garbage_cursor_is_refused(catalog: Catalog, many: list[Dataset]) -> None:
    cursor = search_datasets(catalog, DatasetQuery(sort="created", limit=2)).next_cursor
    assert cursor
    with pytest.raises(InputError, match=r"^cursor .* is not one this search gave"):
        search_datasets(catalog, DatasetQuery(sort="name", cursor=cursor))
    for garbage in ["zzz", "!!!", "W10", "eyJhIjogMX0", cursor[:-3]]:
        with pytest.raises(InputError, match=r"^cursor"):
            search_datasets(catalog, DatasetQuery(sort="created", cursor=garbage))


def forge(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


@pytest.mark.parametrize(
    "sort, cursor",
    [
        ("name", forge("name", 5, "x")),
        ("name", forge("name", None, "x")),
        ("name", forge("name", [1], "x")),
        ("name", forge("name", "a", {"b": 1})),
        ("name", forge("name", "a")),
        ("created", forge("created", 5, "x")),
        ("created", forge("created", "2024-05-01T12:00:00", "x")),  # no zone
        ("date", forge("date", "not a date", "x")),
        ("name", forge({"sort": "name"})),
    ],
)
def test_forged_cursor_is_refused(catalog: Catalog, sort: str, cursor: str) -> None:
    make(catalog, "a")
    with pytest.raises(InputError, match=r"^cursor .* is not one this search gave"):
        search_datasets(catalog, DatasetQuery(sort=sort, cursor=cursor))


@pytest.mark.parametrize("query, message", [
    ({"sort": "size"}, "sort 'size'"), ({"limit": 0}, "limit must be"),
    ({"limit": 1001}, "limit must be"),
])  # fmt: skip
def test_bad_sort_or_limit_is_refused(catalog: Catalog, query, message: str) -> None:
    with pytest.raises(InputError, match=message):
        search_datasets(catalog, DatasetQuery(**query))


# -- hostile strings ----------------------------------------------------------------------


def test_hostile_strings_are_stored_verbatim_and_searched_harmlessly(catalog: Catalog) -> None:
    make(catalog, "plain", description="nothing to see", owner="ana", index_name="ndvi")
    with catalog.session() as session:
        session.add(Job(kind="process", name="a job", spec={}))
    stored = {}
    for text in HOSTILE:
        dataset = make(
            catalog, text, description=text, owner=text, index_name=text, expression=text,
            properties={"note": text, text: [text]},
        )  # fmt: skip
        stored[text] = dataset.id
    for text, dataset_id in stored.items():
        back = get_dataset(catalog, dataset_id)
        assert (back.name, back.description, back.owner) == (text, text, text)
        assert (back.index_name, back.expression) == (text, text)
        assert back.properties == {"note": text, text: [text]}
    everything = ["plain", *HOSTILE]
    for text in HOSTILE:
        words = text.lower().split()
        expected = {n for n in everything if all(w in n.lower() for w in words)}
        assert names(catalog, text=text) == expected
        assert names(catalog, owner=text) == {text}
        assert names(catalog, index=text) == {text}
        assert names(catalog, index=text.upper()) == {text}
    assert names(catalog) == set(everything)
    assert {"datasets", "jobs", "users"} <= catalog.tables()
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_hostile_cursor_text_is_refused(catalog: Catalog) -> None:
    make(catalog, "a")
    for text in HOSTILE:
        with pytest.raises(InputError, match="cursor"):
            search_datasets(catalog, DatasetQuery(cursor=text))
    assert names(catalog) == {"a"}


# -- spatial index ------------------------------------------------------------------------


def captured_search(catalog: Catalog, query: DatasetQuery) -> tuple[str, Any]:
    """The SQL and parameters ``search_datasets`` really sends for ``query``."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "FROM datasets" in statement:
            seen.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", listen)
    try:
        search_datasets(catalog, query)
    finally:
        event.remove(catalog.engine, "before_cursor_execute", listen)
    assert len(seen) == 1
    return seen[0]


def test_bbox_search_uses_the_spatial_index(catalog: Catalog) -> None:
    for x, y in itertools.product(range(-170, 170, 20), range(-80, 80, 20)):
        make(catalog, f"cell {x},{y}", (x, y, x + 5.0, y + 5.0))
    query = DatasetQuery(bbox=(9.0, 39.0, 12.0, 42.0), sort="name")
    assert names(catalog, bbox=query.bbox) == {"cell 10,40"}
    statement, parameters = captured_search(catalog, query)
    with catalog.engine.connect() as connection:
        if catalog.is_postgres:
            connection.exec_driver_sql("ANALYZE datasets")
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        else:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            rows = rows.all()
        connection.rollback()
    plan = "\n".join(str(row[-1]) for row in rows)
    assert ("ix_datasets_geom" if catalog.is_postgres else "datasets_rtree") in plan, plan
