"""Sharing a local dataset with the team: a local SQLite catalog and folder to a central
catalog (SQLite and PostGIS) and folder, and to PostGIS with moto's S3; once, verified,
all or nothing, by the owner or an admin only."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from sqlalchemy import func, select

from madrone.catalog import share
from madrone.catalog.datasets import add_dataset, get_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.ingest import add_point, add_raster
from madrone.catalog.models import Dataset, User
from madrone.catalog.share import share_dataset
from madrone.errors import AccessDeniedError, CatalogError, ConflictError, StorageError
from madrone.storage import Storage
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, create_bucket, list_objects, moto_s3

ANA = User(name="ana", role="editor")
BOB = User(name="bob", role="editor")
ADMIN = User(name="root", role="admin")
SAME = ("name", "description", "kind", "index_name", "expression", "footprint", "west",
        "south", "east", "north", "crs", "resolution", "date_start", "date_end", "stats",
        "properties", "owner", "created_at")  # fmt: skip


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'local.sqlite'}")
    yield catalog
    catalog.dispose()


@pytest.fixture
def local_storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage.from_url(str(tmp_path / "local-storage")) as storage:
        yield storage


@pytest.fixture
def central_storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage.from_url(str(tmp_path / "central-storage")) as storage:
        storage.cleanup_delays = (0.0,)
        yield storage


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(storage: Storage, url: str) -> bytes:
    with storage.open(url) as handle:
        return handle.read()


def listing(storage: Storage) -> list[str]:
    return storage.list() if storage.scheme != "file" or Path(storage.url).exists() else []


def central_rows(catalog: Catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Dataset))


def raster_dataset(local: Catalog, storage: Storage, data_dir: Path) -> Dataset:
    band = data_dir / "L1C_T19UDP_20170729_900m" / "B04.tif"
    return add_raster(local, storage, band, name="red 19UDP", description="900 m", owner="ana")


def index_dataset(local: Catalog, storage: Storage, data_dir: Path, tmp_path: Path) -> Dataset:
    """An index product as the service registers one: two files under ``jobs/<id>/``."""
    legend = tmp_path / "legend.png"
    legend.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    band = data_dir / "L1C_T19UDP_20170729_900m" / "B08.tif"
    stored = storage.put_files({"ndvi.tif": str(band), "ndvi.png": str(legend)}, "jobs/j1")
    assets = {
        kind: {"href": a.url, "size": a.size, "sha256": a.sha256, "type": a.media_type}
        for kind, a in zip(("cog", "png"), stored, strict=True)
    }
    dataset = Dataset(
        name="ndvi",
        description="",
        kind="index",
        index_name="NDVI",
        owner="ana",
        scope="local",
        footprint={"type": "Point", "coordinates": [1.0, 2.0]},
        west=1.0,
        south=2.0,
        east=1.0,
        north=2.0,
        assets=assets,
        stats={"min": -0.5},
        properties={"method": "first"},
        job_id="j1",
    )
    return add_dataset(local, dataset)


def assert_shared_copy(shared: Dataset, original: Dataset, central_storage: Storage) -> None:
    for column in SAME:
        assert getattr(shared, column) == getattr(original, column), column
    assert (shared.scope, shared.shared_from, shared.job_id) == ("shared", original.id, None)
    assert shared.id != original.id and set(shared.assets) == set(original.assets)
    for name, asset in shared.assets.items():
        before = original.assets[name]
        assert asset["href"].startswith(central_storage.url_for(f"datasets/{shared.id}") + "/")
        assert {k: v for k, v in asset.items() if k != "href"} == {
            k: v for k, v in before.items() if k != "href"
        }
        data = read_bytes(central_storage, asset["href"])
        assert (len(data), sha256(data)) == (before["size"], before["sha256"])


# -- local folder to the central catalog (SQLite and PostGIS) -----------------------------


def test_share_copies_the_row_and_the_files(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    shared = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    assert_shared_copy(shared, original, central_storage)
    assert_shared_copy(get_dataset(catalog, shared.id), original, central_storage)
    assert shared.assets["data"]["href"] == central_storage.url_for(
        f"datasets/{shared.id}/data.tif"
    )
    assert get_dataset(local, original.id).scope == "local"
    assert listing(central_storage) == [shared.assets["data"]["href"]]


def test_share_keeps_an_index_products_file_names(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    original = index_dataset(local, local_storage, data_dir, tmp_path)
    shared = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    assert_shared_copy(shared, original, central_storage)
    folder = central_storage.url_for(f"datasets/{shared.id}")
    assert listing(central_storage) == [f"{folder}/ndvi.png", f"{folder}/ndvi.tif"]


def test_sharing_twice_makes_one_entry_and_uploads_nothing(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    first = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    stamp = Path(central_storage.gdal_path(first.assets["data"]["href"])).stat().st_mtime_ns

    def no_upload(*_args: Any) -> None:
        raise AssertionError("copied again")

    monkeypatch.setattr(Storage, "copy_to", no_upload)
    again = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ADMIN)
    assert again.id == first.id and again.assets == first.assets
    assert central_rows(catalog) == 1
    assert Path(central_storage.gdal_path(first.assets["data"]["href"])).stat().st_mtime_ns == stamp
    assert len(listing(central_storage)) == 1


def test_concurrent_shares_make_one_entry(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    attempts = 4
    copied = threading.Barrier(attempts, timeout=60)
    real_copy = share._copy

    def copy_then_wait(*args: Any) -> Any:
        copies = real_copy(*args)
        copied.wait()  # every attempt has passed its check and copied before any registers
        return copies

    monkeypatch.setattr(share, "_copy", copy_then_wait)
    results: list[Any] = [None] * attempts

    def attempt(n: int) -> None:
        try:
            results[n] = share_dataset(
                local, local_storage, catalog, central_storage, original.id, user=ANA
            )
        except Exception as error:
            results[n] = error

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, Dataset) for r in results), results
    assert len({r.id for r in results}) == 1 and central_rows(catalog) == 1
    winner = get_dataset(catalog, results[0].id)
    assert listing(central_storage) == [winner.assets["data"]["href"]]
    assert_shared_copy(winner, original, central_storage)


def test_a_failed_copy_registers_nothing_and_leaves_nothing(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    original = index_dataset(local, local_storage, data_dir, tmp_path)
    second = Path(local_storage.gdal_path(original.assets["png"]["href"]))
    second.write_bytes(second.read_bytes() + b"changed since it was stored")
    with pytest.raises(StorageError, match="changed since it was stored"):
        share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    assert central_rows(catalog) == 0
    assert listing(central_storage) == []


def test_a_failed_registration_removes_the_copies(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    real_session = catalog.session
    calls: list[int] = []

    @contextlib.contextmanager
    def failing_second_session() -> Iterator[Any]:
        calls.append(1)
        if len(calls) == 2:  # the first looks for an earlier share, the second registers
            raise CatalogError("central catalog went away")
        with real_session() as session:
            yield session

    monkeypatch.setattr(catalog, "session", failing_second_session)
    with pytest.raises(CatalogError, match="went away"):
        share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    monkeypatch.undo()
    assert central_rows(catalog) == 0 and listing(central_storage) == []


def test_only_the_owner_or_an_admin_may_share(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    with pytest.raises(AccessDeniedError, match=r"only 'ana' .* or an admin .*; bob is editor"):
        share_dataset(local, local_storage, catalog, central_storage, original.id, user=BOB)
    assert central_rows(catalog) == 0 and listing(central_storage) == []
    shared = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ADMIN)
    assert shared.owner == "ana"


def test_a_shared_dataset_is_not_shared_again(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    original = raster_dataset(local, local_storage, data_dir)
    shared = share_dataset(local, local_storage, catalog, central_storage, original.id, user=ANA)
    elsewhere = Catalog(f"sqlite:///{tmp_path / 'elsewhere.sqlite'}")
    try:
        with pytest.raises(ConflictError, match="is already a shared dataset"):
            share_dataset(
                catalog, central_storage, elsewhere, central_storage, shared.id, user=ADMIN
            )
        assert central_rows(elsewhere) == 0
    finally:
        elsewhere.dispose()


def test_a_point_shares_without_files(
    local: Catalog, local_storage: Storage, catalog: Catalog, central_storage: Storage
) -> None:
    point = add_point(local, lat=45.0, lon=7.5, name="well", description="deep", owner="ana")
    shared = share_dataset(local, local_storage, catalog, central_storage, point.id, user=ANA)
    assert (shared.kind, shared.assets, shared.footprint) == ("point", {}, point.footprint)
    assert listing(central_storage) == []


def test_an_asset_outside_the_local_storage_is_refused(
    local: Catalog,
    local_storage: Storage,
    catalog: Catalog,
    central_storage: Storage,
    data_dir: Path,
) -> None:
    band = data_dir / "L1C_T19UDP_20170729_900m" / "B04.tif"
    outside = Dataset(
        name="x",
        kind="geotiff",
        owner="ana",
        scope="local",
        west=0,
        south=0,
        east=0,
        north=0,
        footprint={"type": "Point", "coordinates": [0, 0]},
        assets={"data": {"href": str(band), "size": 1, "sha256": "0" * 64}},
    )
    dataset = add_dataset(local, outside)
    with pytest.raises(StorageError, match=r"asset 'data' at .*B04\.tif is not in the storage"):
        share_dataset(local, local_storage, catalog, central_storage, dataset.id, user=ANA)
    assert central_rows(catalog) == 0 and listing(central_storage) == []


# -- local SQLite + folder to PostGIS + S3 ------------------------------------------------


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_s3() as endpoint:
        for name, value in {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        create_bucket(endpoint, "team")
        yield endpoint


@pytest.fixture
def central_s3(s3_endpoint: str) -> Iterator[Storage]:
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    with Storage.from_url("s3://team/madrone", options) as storage:
        storage.cleanup_delays = (0.0,)
        yield storage


def test_share_to_postgres_and_s3(
    local: Catalog,
    local_storage: Storage,
    postgres_url: str,
    central_s3: Storage,
    s3_endpoint: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    central = Catalog(postgres_url, upgrade=True)
    try:
        original = raster_dataset(local, local_storage, data_dir)
        shared = share_dataset(local, local_storage, central, central_s3, original.id, user=ANA)
        assert shared.assets["data"]["href"] == (f"s3://team/madrone/datasets/{shared.id}/data.tif")
        assert_shared_copy(get_dataset(central, shared.id), original, central_s3)
        objects = list_objects(s3_endpoint, "team")
        assert list(objects) == [f"madrone/datasets/{shared.id}/data.tif"]
        href = shared.assets["data"]["href"]
        with (
            rasterio.Env(**central_s3.gdal_env()),
            rasterio.open(central_s3.gdal_path(href)) as copy,
            rasterio.open(local_storage.gdal_path(original.assets["data"]["href"])) as src,
        ):
            np.testing.assert_array_equal(copy.read(), src.read())

        again = share_dataset(local, local_storage, central, central_s3, original.id, user=ANA)
        assert again.id == shared.id and list_objects(s3_endpoint, "team") == objects

        broken = index_dataset(local, local_storage, data_dir, tmp_path)
        second = Path(local_storage.gdal_path(broken.assets["png"]["href"]))
        second.write_bytes(b"not what was stored")
        with pytest.raises(StorageError, match="changed since it was stored"):
            share_dataset(local, local_storage, central, central_s3, broken.id, user=ANA)
        assert list_objects(s3_endpoint, "team") == objects
        assert central_rows(central) == 1
    finally:
        central.dispose()
