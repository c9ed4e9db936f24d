"""The Python API of the team half: submit requests to a catalog's queue, follow and cancel
them, list and share datasets, manage users and tokens. The CLI and the web app call these.

Which catalog: the local one (``MADRONE_DB_URL``, a SQLite file by default) unless a URL is
given or ``central=True`` (``MADRONE_CENTRAL_DB_URL``).
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from dataclasses import replace

from madrone.catalog.datasets import DatasetQuery, Page, search_datasets
from madrone.catalog.db import Catalog, default_db_url
from madrone.catalog.models import FINAL_STATES, Job
from madrone.catalog.queue import JobQueue
from madrone.config import Settings
from madrone.engine.spec import JobSpec
from madrone.sources.spec import REMOTE_PREFIXES


def open_catalog(
    settings: Settings | None = None, *, db: str | None = None, central: bool = False
) -> Catalog:
    """The catalog named by ``db``, else the central one if asked, else the local one."""
    settings = settings or Settings.from_env()
    if db:
        return Catalog(db)
    if central:
        return Catalog.central(settings)
    return Catalog(default_db_url(settings))


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
    spec = replace(absolute_paths(spec), output_dir=".", name=name or spec.name)
    checked = plan(spec, settings=settings)
    kind = "mosaic" if spec.area is not None else "process"
    return queue_for(catalog, settings).submit(
        spec.to_dict(),
        kind=kind,
        name=spec.name or checked.name,
        requester=requester or current_user(settings),
        priority=priority,
        idempotency_key=idempotency_key,
    )


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
