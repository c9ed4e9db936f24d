"""The Python API of the team half: submit requests to a catalog's queue, follow and cancel
them, list and share datasets, manage users and tokens. The CLI and the web app call these.

Which catalog: the local one (``MADRONE_DB_URL``, a SQLite file by default) unless a URL is
given or ``central=True`` (``MADRONE_CENTRAL_DB_URL``).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from madrone.catalog import ingest, users
from madrone.catalog.datasets import DatasetQuery, Page, dataset_to_dict, search_datasets
from madrone.catalog.db import HEAD, Catalog, default_db_url
from madrone.catalog.models import FINAL_STATES, JOB_STATES, Dataset, Job, User
from madrone.catalog.queue import JobQueue
from madrone.catalog.share import share_dataset
from madrone.config import Settings
from madrone.engine.spec import JobSpec
from madrone.errors import CatalogError, InputError, NotFoundError
from madrone.sources.spec import REMOTE_PREFIXES
from madrone.storage import Storage


def catalog_url(
    settings: Settings | None = None, *, db: str | None = None, central: bool = False
) -> str:
    """The URL ``open_catalog`` connects to; asking for both ``db`` and ``central`` is refused."""
    settings = settings or Settings.from_env()
    if db and central:
        raise InputError("give --db URL or --central, not both")
    if db:
        return db
    if central:
        if not settings.central_db_url:
            raise CatalogError(
                "no central catalog configured: set MADRONE_CENTRAL_DB_URL "
                "(postgresql+psycopg://user:password@host/database)"
            )
        return settings.central_db_url
    return default_db_url(settings)


def open_catalog(
    settings: Settings | None = None,
    *,
    db: str | None = None,
    central: bool = False,
    upgrade: bool | None = None,
) -> Catalog:
    """The catalog named by ``db``, else the central one if asked, else the local one.

    ``upgrade`` as for ``Catalog``: None migrates a SQLite file on first use only."""
    return Catalog(catalog_url(settings, db=db, central=central), upgrade=upgrade)


def upgrade_catalog(catalog: Catalog) -> str | None:
    """Migrate a catalog's schema to the newest revision; returns the revision reached."""
    return catalog.upgrade()


def catalog_revision(catalog: Catalog) -> tuple[str | None, bool]:
    """The schema revision a catalog is at (None: empty) and whether it is the newest."""
    revision = catalog.current()
    return revision, revision == HEAD


def queue_for(catalog: Catalog, settings: Settings | None = None) -> JobQueue:
    settings = settings or Settings.from_env()
    return JobQueue(catalog, settings.lease_seconds, settings.max_attempts)


def current_user(settings: Settings | None = None) -> str:
    """Who the CLI acts as on its own catalog: ``MADRONE_USER``, else the login name."""
    settings = settings or Settings.from_env()
    return settings.user or getpass.getuser()


def submit(
    spec: JobSpec,
    catalog: Catalog,
    *,
    settings: Settings | None = None,
    name: str | None = None,
    priority: int = 0,
    idempotency_key: str | None = None,
    requester: str | None = None,
) -> Job:
    """Check a request with the engine's preflight, then queue it.

    Everything that can be refused without reading pixels is refused here (an unknown
    index, inverted corners, a missing source ...), and nothing is queued then.
    """
    from madrone.engine.plan import plan

    settings = settings or Settings.from_env()
    prefix = spec.name or (product_name(name) if name else None)
    spec = replace(absolute_paths(spec), output_dir=".", name=prefix)
    checked = plan(spec, settings=settings)
    kind = "mosaic" if spec.area is not None else "process"
    return queue_for(catalog, settings).submit(
        _as_stored(spec.to_dict()),
        kind=kind,
        name=name or spec.name or checked.name,
        requester=requester or current_user(settings),
        priority=priority,
        idempotency_key=idempotency_key,
    )


def product_name(name: str) -> str:
    """The products' file prefix for a request's free-text name: ASCII letters, digits,
    ``.``, ``_`` and ``-`` (accents dropped, anything else ``_``), never a path; the job
    keeps the name as typed."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:80].strip("._-")
    return prefix or "request"


def absolute_paths(spec: JobSpec) -> JobSpec:
    """The spec with every local path made absolute: a queued request is run by a master
    in another folder (URLs and GDAL virtual paths are kept as given)."""

    def absolute(path: str) -> str:
        return path if not path or path.startswith(REMOTE_PREFIXES) else os.path.abspath(path)

    sources = tuple(
        replace(
            source,
            path=absolute(source.path),
            bands={band: absolute(path) for band, path in source.bands.items()},
        )
        for source in spec.sources
    )
    search = spec.search
    if search is not None and "://" not in search.catalog:
        search = replace(search, catalog=absolute(search.catalog))
    return replace(spec, sources=sources, search=search)


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """The spec as the catalog gives it back (tuples become lists), so submitting the same
    request again under one idempotency key compares equal to the stored one."""
    return json.loads(json.dumps(data))


def wait_for(
    catalog: Catalog,
    job_id: str,
    progress: Callable[[Job], None] | None = None,
    poll_seconds: float = 0.5,
    timeout: float | None = None,
) -> Job:
    """Follow a job until it ends (succeeded, failed or cancelled); returns its last state."""
    queue = queue_for(catalog)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = queue.get(job_id)
        if progress:
            progress(job)
        if job.status in FINAL_STATES:
            return job
        if deadline is not None and time.monotonic() > deadline:
            return job
        time.sleep(poll_seconds)


def find_datasets(catalog: Catalog, query: DatasetQuery | None = None) -> Page:
    return search_datasets(catalog, query or DatasetQuery())


def list_jobs(
    catalog: Catalog,
    *,
    status: str | None = None,
    requester: str | None = None,
    limit: int = 100,
) -> list[Job]:
    """Jobs newest first, optionally of one status or one requester."""
    if status is not None and status not in JOB_STATES:
        raise InputError(f"status {status!r} is not one of {', '.join(JOB_STATES)}")
    if limit < 1:
        raise InputError(f"limit must be 1 or more, got {limit}")
    return queue_for(catalog).list(status=status, requester=requester, limit=limit)


def get_job(catalog: Catalog, job_id: str) -> Job:
    """One job with every field, errors of every attempt included (NotFoundError if none)."""
    return queue_for(catalog).get(job_id)


def cancel_job(catalog: Catalog, job_id: str) -> Job:
    """Cancel a queued job at once, or ask its master to stop a running one; a job that
    already ended raises ConflictError naming its status."""
    return queue_for(catalog).cancel(job_id)


def parse_date(text: str | None, *, name: str, end_of_day: bool = False) -> datetime | None:
    """``2016-01-12`` or an ISO date-time (UTC unless it says otherwise) as an aware
    datetime; with ``end_of_day`` a bare date stands for the last moment of that day.
    ``name`` is the field the user filled in, for the message."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{name} {text!r} is not a date (YYYY-MM-DD or ISO date-time)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end_of_day and len(text.strip()) == 10:
        moment += timedelta(days=1, microseconds=-1)
    return moment


def dataset_query(
    *,
    bbox: Sequence[float] | None = None,
    index: str | None = None,
    owner: str | None = None,
    text: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    sort: str = "created",
    ascending: bool = False,
    limit: int = 50,
    cursor: str | None = None,
    kind: str | None = None,
) -> DatasetQuery:
    """A dataset search from what a user types (dates as text, ``date_to`` inclusive)."""
    return DatasetQuery(
        bbox=tuple(bbox) if bbox is not None else None,
        index=index,
        owner=owner,
        text=text,
        start=parse_date(date_from, name="from"),
        end=parse_date(date_to, name="to", end_of_day=True),
        sort=sort,
        ascending=ascending,
        limit=limit,
        cursor=cursor,
        kind=kind,
    )


def page_to_dict(page: Page) -> dict[str, Any]:
    """A page of datasets as JSON-ready data: ``datasets`` and ``next_cursor``."""
    return {
        "datasets": [dataset_to_dict(dataset) for dataset in page.items],
        "next_cursor": page.next_cursor,
    }


def add_user(
    catalog: Catalog, name: str, role: str = "viewer", *, created_by: str | None = None
) -> User:
    """Create a user (viewer, editor or admin), recorded as made by ``current_user()``."""
    return users.add_user(catalog, name, role, created_by=created_by or current_user())


def list_users(catalog: Catalog) -> list[User]:
    """Every user, by name."""
    return users.list_users(catalog)


def create_token(
    catalog: Catalog, user: str, *, name: str = "", created_by: str | None = None
) -> users.NewToken:
    """An API token for ``user``: the plain token is in the result only, the catalog keeps
    its hash."""
    return users.create_token(catalog, user, name, created_by=created_by or current_user())


def add_file(
    catalog: Catalog,
    path: str,
    *,
    name: str | None = None,
    description: str = "",
    corners: Sequence[float] | str | None = None,
    owner: str | None = None,
    storage: Storage | None = None,
    settings: Settings | None = None,
) -> Dataset:
    """Add a user's file as a dataset, by what it holds: a raster with a CRS, a PNG/JPEG
    placed by ``corners`` (upper-left lat, lon, lower-right lat, lon) or GeoJSON. Its files
    go to ``storage`` (default: the settings' local storage); ``name`` defaults to the
    file's name without its extension."""
    settings = settings or Settings.from_env()
    name = name or os.path.splitext(os.path.basename(os.fspath(path).rstrip("/")))[0]
    with _storage_or(storage, settings, central=False) as target:
        return ingest.add_file(catalog, target, path, name=name, description=description,
                               owner=owner or current_user(settings), corners=corners)  # fmt: skip


def add_point(
    catalog: Catalog,
    lat: float,
    lon: float,
    *,
    name: str,
    description: str,
    owner: str | None = None,
) -> Dataset:
    """Add a point with a description as a dataset (no files)."""
    return ingest.add_point(catalog, lat=lat, lon=lon, name=name, description=description,
                            owner=owner or current_user())  # fmt: skip


def share(
    local: Catalog,
    central: Catalog,
    dataset_id: str,
    *,
    user: User | None = None,
    local_storage: Storage | None = None,
    central_storage: Storage | None = None,
    settings: Settings | None = None,
) -> Dataset:
    """Share a local dataset with the team: its row to the ``central`` catalog, its files
    to the central storage (default: the settings'); sharing again returns the same entry.

    ``user`` defaults to the central catalog's user named ``current_user()``; a name not
    registered there may share only the datasets it owns."""
    settings = settings or Settings.from_env()
    if user is None:
        name = current_user(settings)
        try:
            user = users.get_user(central, name)
        except NotFoundError:
            user = User(name=name, role="viewer")
    with (
        _storage_or(local_storage, settings, central=False) as source,
        _storage_or(central_storage, settings, central=True) as target,
    ):
        return share_dataset(local, source, central, target, dataset_id, user=user)


@contextlib.contextmanager
def _storage_or(storage: Storage | None, settings: Settings, *, central: bool) -> Iterator[Storage]:
    """The storage given, or the settings' one, closed afterwards."""
    if storage is not None:
        yield storage
        return
    with Storage.from_settings(settings, central=central) as made:
        yield made
