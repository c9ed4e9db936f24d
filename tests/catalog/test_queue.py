"""The job queue on SQLite and PostgreSQL: claim order, leases, reaping, attempts, cancel,
idempotent submit under concurrency, wake-up on submit."""

from __future__ import annotations

import threading
import time

import pytest

from madrone.catalog.db import Catalog
from madrone.catalog.queue import JobQueue
from madrone.errors import ConflictError, NotFoundError


def submit(queue: JobQueue, name: str, **options):
    return queue.submit({"name": name}, kind="process", name=name, **options)


def test_claim_takes_highest_priority_then_oldest(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    for name, priority in [("old", 0), ("urgent", 5), ("new", 0)]:
        submit(queue, name, priority=priority)
    names = [queue.claim("m").name for _ in range(3)]
    assert names == ["urgent", "old", "new"]
    assert queue.claim("m") is None


def test_claim_records_the_lease(catalog: Catalog) -> None:
    queue = JobQueue(catalog, lease_seconds=30)
    job = submit(queue, "a")
    claimed = queue.claim("master-1")
    assert claimed.id == job.id
    assert (claimed.status, claimed.claimed_by) == ("running", "master-1")
    lease = (claimed.lease_expires_at - claimed.heartbeat_at).total_seconds()
    assert lease == pytest.approx(30, abs=0.5)
    stored = queue.get(job.id)
    assert stored.status == "running" and stored.started_at is not None


def test_heartbeat_extends_lease_and_records_progress(catalog: Catalog) -> None:
    queue = JobQueue(catalog, lease_seconds=5)
    job = submit(queue, "a")
    first = queue.claim("m").lease_expires_at
    time.sleep(0.05)
    beat = queue.heartbeat(job.id, "m", done=3, total=8)
    assert beat.owned and not beat.cancel_requested
    stored = queue.get(job.id)
    assert (stored.tiles_done, stored.tiles_total) == (3, 8)
    assert stored.lease_expires_at > first
    assert not queue.heartbeat(job.id, "other-master").owned


def test_reaper_requeues_then_fails_with_every_error(catalog: Catalog) -> None:
    queue = JobQueue(catalog, lease_seconds=0.2, max_attempts=2)
    job = submit(queue, "a")
    queue.claim("m1")
    assert queue.reap() == []
    time.sleep(0.3)
    assert queue.reap() == [job.id]
    requeued = queue.get(job.id)
    assert (requeued.status, requeued.attempts, requeued.claimed_by) == ("queued", 1, None)
    assert not queue.heartbeat(job.id, "m1").owned
    queue.claim("m2")
    time.sleep(0.3)
    queue.reap()
    failed = queue.get(job.id)
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert [e["master"] for e in failed.errors] == ["m1", "m2"]
    assert all("stopped heart-beating" in e["message"] for e in failed.errors)
    assert failed.finished_at is not None


def test_fail_retries_until_the_limit(catalog: Catalog) -> None:
    queue = JobQueue(catalog, max_attempts=2)
    job = submit(queue, "a")
    queue.claim("m")
    assert queue.fail(job.id, "m", "disk full") == "queued"
    queue.claim("m")
    assert queue.fail(job.id, "m", "disk full again") == "failed"
    assert [e["message"] for e in queue.get(job.id).errors] == ["disk full", "disk full again"]


def test_fail_without_retry_fails_at_once(catalog: Catalog) -> None:
    queue = JobQueue(catalog, max_attempts=3)
    job = submit(queue, "a")
    queue.claim("m")
    assert queue.fail(job.id, "m", "unknown index", retry=False) == "failed"


def test_release_does_not_count_an_attempt(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    job = submit(queue, "a")
    queue.claim("m")
    assert queue.release(job.id, "m")
    stored = queue.get(job.id)
    assert (stored.status, stored.attempts, stored.claimed_by) == ("queued", 0, None)
    assert queue.claim("m2").id == job.id


def test_cancel_queued_at_once_and_running_through_heartbeat(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    waiting = submit(queue, "waiting", priority=-1)
    running = submit(queue, "running")
    queue.claim("m")
    assert queue.cancel(waiting.id).status == "cancelled"
    assert queue.cancel(running.id).status == "running"
    assert queue.heartbeat(running.id, "m").cancel_requested
    assert queue.cancelled(running.id, "m")
    assert queue.get(running.id).status == "cancelled"
    assert queue.claim("m") is None
    with pytest.raises(ConflictError, match="already cancelled"):
        queue.cancel(running.id)
    with pytest.raises(NotFoundError, match="no job 'nope'"):
        queue.cancel("nope")


def test_succeed_only_by_the_owner(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    job = submit(queue, "a")
    queue.claim("m")
    assert not queue.succeed(job.id, "someone-else")
    assert queue.succeed(job.id, "m")
    stored = queue.get(job.id)
    assert stored.status == "succeeded" and stored.finished_at is not None


def test_concurrent_submitters_with_one_key_make_one_job(catalog: Catalog) -> None:
    queues = [JobQueue(Catalog(catalog.url)) for _ in range(8)]
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def submitter(queue: JobQueue) -> None:
        barrier.wait()
        ids.append(submit(queue, "same", idempotency_key="request-42").id)

    threads = [threading.Thread(target=submitter, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for queue in queues:
        queue.catalog.dispose()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(JobQueue(catalog).list()) == 1


def test_same_key_for_another_request_is_refused(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    submit(queue, "a", idempotency_key="k")
    with pytest.raises(ConflictError, match="idempotency key 'k' was used by job"):
        submit(queue, "b", idempotency_key="k")


def test_two_claimers_never_take_the_same_job(catalog: Catalog) -> None:
    queue = JobQueue(catalog)
    for n in range(40):
        submit(queue, f"job-{n}")
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def claimer(name: str) -> None:
        own = JobQueue(Catalog(catalog.url))
        while (job := own.claim(name)) is not None:
            claimed[name].append(job.id)
        own.catalog.dispose()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = claimed["a"] + claimed["b"]
    assert len(every) == 40 and len(set(every)) == 40


def test_wait_wakes_on_a_submit_not_at_its_timeout(catalog: Catalog) -> None:
    """How fast it wakes is measured in bench/catalog.py; here, that a submit wakes it."""
    waiter = JobQueue(catalog)
    assert not waiter.wait(0.2)
    submitter = JobQueue(Catalog(catalog.url))
    timer = threading.Timer(0.3, submit, args=(submitter, "a"))
    started = time.monotonic()
    timer.start()
    assert waiter.wait(60)
    woke = time.monotonic() - started
    timer.join()
    waiter.close()
    submitter.catalog.dispose()
    assert 0.25 < woke < 30, "woken by the submit, long before the 60 s timeout"
