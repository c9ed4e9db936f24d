"""The job queue in the catalog: submit, claim, heartbeat, finish, cancel, reap.

The catalog owns job state; masters only hold leases. A claim takes the oldest queued job of
the highest priority with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so masters never wait
on each other's rows) and inside a ``BEGIN IMMEDIATE`` transaction on SQLite (one writer at
a time). Every time here is the database's clock on PostgreSQL, so masters on hosts whose
clocks drift still agree on when a lease has run out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from madrone.catalog.db import Catalog
from madrone.catalog.models import FINAL_STATES, Dataset, Job, UTCDateTime, utc_now
from madrone.errors import CatalogError, ConflictError, InputError, NotFoundError

CHANNEL = "madrone_jobs"
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learns: whether the job is still this master's, and whether someone
    asked to cancel it."""

    owned: bool
    cancel_requested: bool = False


class JobQueue:
    """The queue of one catalog.

    Args:
        catalog: the database holding the jobs.
        lease_seconds: how long a claim lasts without a heartbeat.
        max_attempts: default attempt limit of new jobs.
    """

    def __init__(self, catalog: Catalog, lease_seconds: float = 30.0, max_attempts: int = 3):
        if lease_seconds <= 0:
            raise InputError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_attempts < 1:
            raise InputError(f"max_attempts must be 1 or more, got {max_attempts}")
        self.catalog, self.lease, self.max_attempts = catalog, lease_seconds, max_attempts
        self._listener = None
        self._claim = self._beat = None

    # -- clock ----------------------------------------------------------------------------
    # On PostgreSQL times are the database's (statement_timestamp()); on SQLite, one machine
    # by nature, they are this process's, bound as parameters. Statements are built once.
    def _now(self) -> Any:
        if self.catalog.is_postgres:
            return func.statement_timestamp().cast(UTCDateTime)
        return bindparam("now", type_=UTCDateTime)

    def _later(self) -> Any:
        if self.catalog.is_postgres:
            lease = timedelta(seconds=self.lease)
            return (func.statement_timestamp() + lease).cast(UTCDateTime)
        return bindparam("lease_until", type_=UTCDateTime)

    def _reap_time(self) -> Any:
        if self.catalog.is_postgres:
            return func.statement_timestamp().cast(UTCDateTime)
        return utc_now()

    def _times(self) -> dict[str, Any]:
        if self.catalog.is_postgres:
            return {}
        now = utc_now()
        return {"now": now, "lease_until": now + timedelta(seconds=self.lease)}

    # -- submit and read ------------------------------------------------------------------
    def submit(
        self,
        spec: dict[str, Any],
        *,
        kind: str,
        name: str,
        requester: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        """Queue a job; with ``idempotency_key``, submitting the same request again (even
        concurrently) returns the one job already made for it."""
        if idempotency_key is not None and not idempotency_key.strip():
            raise InputError("idempotency key must not be empty")
        job = Job(
            kind=kind,
            name=name,
            spec=spec,
            requester=requester,
            priority=priority,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts or self.max_attempts,
            status="queued",
            tiles_done=0,
            tiles_total=0,
            attempts=0,
            errors=[],
            cancel_requested=False,
            created_at=utc_now(),
        )
        try:
            with self.catalog.session() as session:
                session.add(job)
                session.flush()
                self._notify(session, job.id)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.get_by_key(idempotency_key)
            if existing.spec != spec:
                raise ConflictError(
                    f"idempotency key {idempotency_key!r} was used by job {existing.id} for "
                    "a different request"
                ) from None
            return existing
        return job

    def get(self, job_id: str) -> Job:
        with self.catalog.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id!r} in catalog {self.catalog.safe_url}")
            return job

    def get_by_key(self, key: str) -> Job:
        with self.catalog.session() as session:
            job = session.scalars(select(Job).where(Job.idempotency_key == key)).one_or_none()
            if job is None:
                raise NotFoundError(f"no job with idempotency key {key!r}")
            return job

    def list(
        self, status: str | None = None, requester: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs, newest first."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if status:
            query = query.where(Job.status == status)
        if requester:
            query = query.where(Job.requester == requester)
        with self.catalog.session() as session:
            return list(session.scalars(query))

    # -- a master's side ------------------------------------------------------------------
    def claim(self, master: str) -> Job | None:
        """Take the next queued job (highest priority, then oldest) for ``master``."""
        if self._claim is None:
            self._claim = self._claim_statement()
        with self.catalog.statement_connection() as connection:
            row = connection.execute(self._claim, {"master": master, **self._times()}).first()
        return Job(**row._asdict()) if row is not None else None

    def _claim_statement(self):
        jobs = Job.__table__
        next_id = (
            select(jobs.c.id)
            .where(jobs.c.status == "queued")
            .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        now = self._now()
        return (
            update(jobs)
            .where(jobs.c.id == next_id, jobs.c.status == "queued")
            .values(
                status="running",
                claimed_by=bindparam("master"),
                heartbeat_at=now,
                lease_expires_at=self._later(),
                started_at=func.coalesce(jobs.c.started_at, now),
                tiles_done=0,
            )
            .returning(*jobs.c)
        )

    def heartbeat(
        self, job_id: str, master: str, done: int | None = None, total: int | None = None
    ) -> Beat:
        """Extend the lease and record progress; tells whether the job is still ours."""
        if self._beat is None:
            jobs = Job.__table__
            self._beat = (
                update(jobs)
                .where(
                    jobs.c.id == bindparam("job"),
                    jobs.c.claimed_by == bindparam("master"),
                    jobs.c.status == "running",
                )
                .values(
                    heartbeat_at=self._now(),
                    lease_expires_at=self._later(),
                    tiles_done=func.coalesce(bindparam("done", type_=Integer), jobs.c.tiles_done),
                    tiles_total=func.coalesce(
                        bindparam("total", type_=Integer), jobs.c.tiles_total
                    ),
                )
                .returning(jobs.c.cancel_requested)
            )
        params = {"job": job_id, "master": master, "done": done, "total": total}
        with self.catalog.statement_connection() as connection:
            row = connection.execute(self._beat, {**params, **self._times()}).first()
        return Beat(owned=row is not None, cancel_requested=bool(row and row[0]))

    def release(self, job_id: str, master: str) -> bool:
        """Hand a job back to the queue without counting an attempt (a master stopping)."""
        statement = (
            update(Job)
            .where(*self._owned(job_id, master))
            .values(status="queued", claimed_by=None, lease_expires_at=None, tiles_done=0)
        )
        with self.catalog.statement_connection() as connection:
            return connection.execute(statement).rowcount == 1

    def succeed(
        self,
        job_id: str,
        master: str,
        datasets: Sequence[Dataset] = (),
        tiles: int | None = None,
    ) -> bool:
        """Close a job as succeeded and register its datasets (one per index) in the same
        transaction; if the job is no longer this master's, nothing is registered and False
        is returned. ``dataset_id`` points at the first."""
        with self.catalog.session() as session:
            job = self._lock_owned(session, job_id, master)
            if job is None:
                return False
            for dataset in datasets:
                dataset.job_id = job.id
                session.add(dataset)
            session.flush()
            job.dataset_id = datasets[0].id if datasets else None
            job.status, job.finished_at, job.lease_expires_at = "succeeded", utc_now(), None
            if tiles is not None:
                job.tiles_total = tiles
            job.tiles_done = job.tiles_total
            return True

    def fail(self, job_id: str, master: str, message: str, *, retry: bool = True) -> str | None:
        """Record a failed attempt; the job is queued again while attempts remain and the
        error is one a retry could fix, else it fails. Returns the new status."""
        with self.catalog.session() as session:
            job = self._lock_owned(session, job_id, master)
            if job is None:
                return None
            _record_attempt(job, master, message)
            if retry and job.attempts < job.max_attempts:
                job.status, job.claimed_by, job.lease_expires_at = "queued", None, None
            else:
                job.status, job.finished_at, job.lease_expires_at = "failed", utc_now(), None
            return job.status

    def cancelled(self, job_id: str, master: str) -> bool:
        """A master confirms it stopped a job whose cancel was requested."""
        with self.catalog.session() as session:
            job = self._lock_owned(session, job_id, master)
            if job is None:
                return False
            job.status, job.finished_at, job.lease_expires_at = "cancelled", utc_now(), None
            return True

    def reap(self) -> list[str]:
        """Take back jobs whose master stopped heart-beating: queued again with the attempt
        counted, or failed past the limit (cancelled if a cancel was asked). Returns ids."""
        query = (
            select(Job)
            .where(Job.status == "running", Job.lease_expires_at < self._reap_time())
            .with_for_update(skip_locked=True)
        )
        with self.catalog.session() as session:
            jobs = list(session.scalars(query))
            for job in jobs:
                last = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
                if job.cancel_requested:
                    job.status, job.finished_at = "cancelled", utc_now()
                else:
                    message = f"master {job.claimed_by} stopped heart-beating (last {last})"
                    _record_attempt(job, job.claimed_by, message)
                    exhausted = job.attempts >= job.max_attempts
                    job.status = "failed" if exhausted else "queued"
                    job.finished_at = utc_now() if exhausted else None
                job.claimed_by, job.lease_expires_at = None, None
            return [job.id for job in jobs]

    # -- anyone ---------------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask the master running one to stop (it does within
        a heartbeat, about a second)."""
        with self.catalog.session() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise NotFoundError(f"no job {job_id!r} in catalog {self.catalog.safe_url}")
            if job.status in FINAL_STATES:
                raise ConflictError(f"job {job_id} already {job.status}; nothing to cancel")
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", utc_now()
            else:
                job.cancel_requested = True
            return job

    def has_queued(self) -> bool:
        with self.catalog.session() as session:
            return bool(session.scalar(select(exists().where(Job.status == "queued"))))

    def wait(self, timeout: float) -> bool:
        """Block until a job may be waiting (a submit's NOTIFY on PostgreSQL, short polling
        on SQLite) or ``timeout`` seconds pass. Returns whether something was queued."""
        deadline = time.monotonic() + timeout
        if self.has_queued():
            return True
        if self.catalog.is_postgres:
            return self._wait_notified(deadline)
        while time.monotonic() < deadline:
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            if self.has_queued():
                return True
        return False

    def _wait_notified(self, deadline: float) -> bool:
        import psycopg

        try:
            listener = self._listen()
            left = max(0.0, deadline - time.monotonic())
            for _ in listener.notifies(timeout=left, stop_after=1):
                return True
        except psycopg.Error as error:
            self.close()
            raise CatalogError(f"listening on {self.catalog.safe_url} failed: {error}") from error
        return self.has_queued()

    def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()

    # -- internals ------------------------------------------------------------------------
    def _owned(self, job_id: str, master: str) -> tuple[ColumnElement[bool], ...]:
        return (Job.id == job_id, Job.claimed_by == master, Job.status == "running")

    def _lock_owned(self, session: Session, job_id: str, master: str) -> Job | None:
        query = select(Job).where(*self._owned(job_id, master)).with_for_update()
        return session.scalars(query).one_or_none()

    def _notify(self, session: Session, job_id: str) -> None:
        if self.catalog.is_postgres:
            session.execute(select(func.pg_notify(CHANNEL, job_id)))

    def _listen(self):
        if self._listener is None:
            import psycopg
            from sqlalchemy.engine import make_url

            url = make_url(self.catalog.url).set(drivername="postgresql")
            self._listener = psycopg.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
            self._listener.execute(f"LISTEN {CHANNEL}")
        return self._listener


def _record_attempt(job: Job, master: str | None, message: str) -> None:
    job.attempts += 1
    entry = {"attempt": job.attempts, "master": master, "at": utc_now().isoformat()}
    job.errors = [*job.errors, {**entry, "message": message}]


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as plain JSON-ready data (for ``--json`` and the REST API)."""

    def stamp(value) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": job.id,
        "name": job.name,
        "kind": job.kind,
        "status": job.status,
        "progress": {"done": job.tiles_done, "total": job.tiles_total},
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "errors": job.errors,
        "claimed_by": job.claimed_by,
        "priority": job.priority,
        "requester": job.requester,
        "idempotency_key": job.idempotency_key,
        "cancel_requested": job.cancel_requested,
        "created_at": stamp(job.created_at),
        "started_at": stamp(job.started_at),
        "finished_at": stamp(job.finished_at),
        "heartbeat_at": stamp(job.heartbeat_at),
        "lease_expires_at": stamp(job.lease_expires_at),
        "dataset_id": job.dataset_id,
        "spec": job.spec,
    }
