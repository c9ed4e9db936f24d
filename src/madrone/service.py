"""The master as a service: claim a job from the catalog, run it, store its products,
register its datasets, close the job; again, until stopped.

The catalog owns job state. A master holds a job only through its lease, which a heartbeat
thread extends every second while writing progress (so the row changes at most once a
second). The heartbeat also carries the two ways a job can be taken away: a cancel asked by
someone (the run stops, nothing is registered, nothing stays in storage) and a lease lost
(another master took the job over after this one stalled; this one stops without
registering anything). A stop (SIGTERM) hands the job back without counting an attempt.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import DBAPIError

from madrone.catalog.db import Catalog
from madrone.catalog.models import Job
from madrone.catalog.queue import JobQueue
from madrone.catalog.register import datasets_from_run
from madrone.config import Settings
from madrone.engine.run import RunResult
from madrone.engine.spec import JobSpec
from madrone.errors import CatalogError, MadroneError
from madrone.storage import Storage

log = logging.getLogger("madrone.service")
DB_ERRORS = (CatalogError, DBAPIError)
HEARTBEAT_SECONDS = 1.0
REAP_SECONDS = 2.0


class JobStopped(Exception):
    """Raised inside a run to stop it: cancelled, lease lost, or the master stopping."""


@dataclass
class _Watch:
    """What the heartbeat thread and the run share about the job in hand."""

    done: int = 0
    total: int = 0
    reason: str = ""
    event: threading.Event = field(default_factory=threading.Event)

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.event.set()


# A runner executes a spec into its output folder: (spec, progress, cancel) -> RunResult.
Runner = Callable[[JobSpec, Callable[[int, int], None], threading.Event], RunResult]


class Master:
    """One master: claims jobs from ``catalog`` and stores products in ``storage``.

    Args:
        catalog: the catalog whose queue it serves (local SQLite or the central database).
        storage: where products go.
        settings: engine settings (workers, lease, attempts ...).
        runner: how a job's spec is executed; default ``local_runner`` (the local pool,
            or Dask when ``dask`` is given).
        name: this master's name in the job rows (default host:pid:random).
        work_dir: where jobs are computed before upload (default a temporary folder).
    """

    def __init__(
        self,
        catalog: Catalog,
        storage: Storage,
        settings: Settings,
        *,
        runner: Runner | None = None,
        name: str | None = None,
        work_dir: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.catalog, self.storage, self.settings = catalog, storage, settings
        self.queue = JobQueue(catalog, settings.lease_seconds, settings.max_attempts)
        self.runner = runner or local_runner(settings)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="madrone-master-")
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = threading.Event()
        self._watch: _Watch | None = None

    def serve(self, idle_seconds: float = 1.0) -> None:
        """Claim and run jobs until ``stop()``; wakes within a second of a submit."""
        log.info("master %s serving %s", self.name, self.catalog.safe_url)
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                self.queue.reap()
                if not self.run_next() and not self.stopping.is_set():
                    self.queue.wait(min(idle_seconds, REAP_SECONDS))
                backoff = 0.5
            except DB_ERRORS as error:
                # The catalog went away (a restart, the network): keep trying, don't die.
                log.warning("catalog %s unavailable: %s", self.catalog.safe_url, error)
                self.queue.close()
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.queue.close()

    def stop(self) -> None:
        """Stop serving; a job in hand is handed back to the queue (no attempt counted)."""
        self.stopping.set()
        if self._watch is not None:
            self._watch.stop("stopping")

    def run_next(self) -> bool:
        """Claim one job and see it through; False when nothing was queued."""
        if self.stopping.is_set():
            return False
        job = self.queue.claim(self.name)
        if job is None:
            return False
        log.info("job %s (%s) claimed by %s", job.id, job.name, self.name)
        self._watch = watch = _Watch()
        if self.stopping.is_set():  # stop() came between the claim and the watch
            watch.stop("stopping")
        beat = threading.Thread(target=self._heartbeat, args=(job, watch), daemon=True)
        beat.start()
        try:
            self._run(job, watch)
        finally:
            watch.event.set()
            beat.join()
            self._watch = None
            shutil.rmtree(os.path.join(self.work_dir, job.id), ignore_errors=True)
        return True

    def _run(self, job: Job, watch: _Watch) -> None:
        output_dir = os.path.join(self.work_dir, job.id)
        spec = JobSpec.from_dict(job.spec)
        # The STAC item is what describes the datasets to the catalog: always written.
        products = tuple(dict.fromkeys((*spec.products, "json")))
        spec = replace(spec, output_dir=output_dir, products=products)

        def progress(done: int, total: int) -> None:
            watch.done, watch.total = done, total
            if watch.reason:
                raise JobStopped(watch.reason)

        try:
            result = self.runner(spec, progress, watch.event)
            if watch.reason:
                raise JobStopped(watch.reason)
            self._publish(job, result, watch)
        except Exception as error:
            self._close_failed(job, watch, error)

    def _publish(self, job: Job, result: RunResult, watch: _Watch) -> None:
        """Upload every file, then register the datasets and close the job in one
        transaction. Each attempt uploads under a prefix of its own, so an attempt that
        lost its job (or failed) removes only its own files, never those of the master
        that took the job over."""
        files = _product_files(result.output_dir)
        prefix = f"jobs/{job.id}/{uuid.uuid4().hex[:12]}"
        stored = self.storage.put_files(files, prefix)
        try:
            if watch.reason:
                raise JobStopped(watch.reason)
            datasets = datasets_from_run(result, stored, job=job, scope=self._scope())
            if not self.queue.succeed(job.id, self.name, datasets, tiles=result.tiles or None):
                watch.stop("lost")
                raise JobStopped("lost")
        except BaseException:
            self.storage.remove([asset.url for asset in stored])
            raise
        log.info("job %s succeeded: %d datasets", job.id, len(datasets))
        self._sweep(job, prefix)

    def _sweep(self, job: Job, kept: str | None = None) -> None:
        """Remove what earlier attempts of a job left in storage (a master killed between
        upload and registration), all but the ``kept`` prefix; the job is closed, so
        nothing else will use them."""
        keep = self.storage.url_for(kept) + "/" if kept else None
        try:
            stale = [url for url in self.storage.list(f"jobs/{job.id}")
                     if keep is None or not url.startswith(keep)]  # fmt: skip
            if stale:
                self.storage.remove(stale)
                log.info("job %s: removed %d files of earlier attempts", job.id, len(stale))
        except MadroneError as error:
            log.warning("job %s: earlier attempts' files not removed: %s", job.id, error)

    def _close_failed(self, job: Job, watch: _Watch, error: Exception) -> None:
        if watch.reason == "cancel":
            self.queue.cancelled(job.id, self.name)
            log.info("job %s cancelled", job.id)
        elif watch.reason == "stopping":
            self.queue.release(job.id, self.name)
            log.info("job %s handed back: %s is stopping", job.id, self.name)
        elif watch.reason == "lost":
            log.warning("job %s: lease lost; another master has it", job.id)
        else:
            # A user's mistake fails at once; anything else may be the machine's and is
            # tried again while attempts remain.
            retry = not (isinstance(error, MadroneError) and error.exit_code == 2)
            message = str(error) if isinstance(error, MadroneError) else _describe(error)
            status = self.queue.fail(job.id, self.name, message, retry=retry)
            log.warning("job %s attempt failed (%s): %s", job.id, status, message)
            if status == "failed":
                self._sweep(job)

    def _heartbeat(self, job: Job, watch: _Watch) -> None:
        """Every second: extend the lease, write progress, learn of a cancel or a loss."""
        while not watch.event.wait(self.heartbeat_seconds):
            try:
                beat = self.queue.heartbeat(job.id, self.name, watch.done, watch.total)
            except DB_ERRORS as error:
                # Missed beats are harmless until the lease runs out; the reaper decides.
                log.warning("heartbeat of job %s failed: %s", job.id, error)
                continue
            if not beat.owned:
                watch.stop("lost")
            elif beat.cancel_requested:
                watch.stop("cancel")

    def _scope(self) -> str:
        return "shared" if self.catalog.is_postgres else "local"


def local_runner(settings: Settings, dask: str | None = None) -> Runner:
    """Run specs on the local process pool, or on a Dask scheduler given by address."""
    from madrone.api import run

    def runner(spec: JobSpec, progress, cancel: threading.Event) -> RunResult:
        return run(spec, settings=settings, dask=dask, progress=progress, cancel=cancel)

    return runner


def master_runner(settings: Settings, *, dask: str | None = None, grpc=None) -> Runner:
    """The runner of ``madrone master --db``: on the gRPC workers registered with ``grpc``
    (an in-process ``MasterService``) when there are any at the start of a job, else on
    Dask when ``dask`` names a scheduler, else on the local pool. The master's own paths
    are used, so ``MADRONE_MASTER_ROOTS`` (a guard against network clients) does not apply.
    """
    fallback = local_runner(settings, dask)
    if grpc is None:
        return fallback

    def runner(spec: JobSpec, progress, cancel: threading.Event) -> RunResult:
        if grpc.worker_count() == 0:
            log.info("no gRPC workers registered; running %s on the local pool", spec.name)
            return fallback(spec, progress, cancel)
        return grpc.run_job(spec, progress=progress, cancel=cancel)

    return runner


def _product_files(output_dir: str) -> dict[str, str]:
    """Every product file of a run (COG, PNG and its world files, legend, item) by name."""
    return {
        name: os.path.join(output_dir, name)
        for name in sorted(os.listdir(output_dir))
        if not name.startswith(".") and os.path.isfile(os.path.join(output_dir, name))
    }


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error) or 'no message'}"
