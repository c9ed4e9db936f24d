"""The processes bench/catalog.py starts (multiprocessing, spawn): claimers that drain the
queue, and a waiter that stands in for the master's idle loop. Each opens its own Catalog
and JobQueue, as separate masters on separate hosts would.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from madrone.catalog.db import Catalog
from madrone.catalog.queue import JobQueue

WAIT_SECONDS = 1.0


def claim_all(url: str, name: str, barrier: Any, results: Any) -> None:
    """Connect, wait at the barrier, then claim until the queue is empty; put the claimed
    ids, per-claim seconds and the perf_counter times of the start and the last claim (the
    monotonic clock is the machine's, so the parent can compare them across processes)."""
    try:
        catalog = Catalog(url, upgrade=False)
        queue = JobQueue(catalog)
        queue.has_queued()  # connect and check the schema before the start line
        barrier.wait(timeout=120)
        started = last = time.perf_counter()
        ids: list[str] = []
        seconds: list[float] = []
        while True:
            before = time.perf_counter()
            job = queue.claim(name)
            after = time.perf_counter()
            if job is None:
                break
            ids.append(job.id)
            seconds.append(after - before)
            last = after
        catalog.dispose()
        results.put({"name": name, "ids": ids, "seconds": seconds, "start": started, "last": last})
    except BaseException:
        results.put({"name": name, "error": traceback.format_exc()})
        raise


def wait_and_claim(url: str, ready: Any, stop: Any) -> None:
    """The master's idle loop without the work: ``wait`` for a submit, ``claim`` it, close
    it as succeeded at once; until ``stop`` is set."""
    catalog = Catalog(url, upgrade=False)
    queue = JobQueue(catalog)
    queue.wait(0.01)  # LISTEN before the first submit can happen
    ready.set()
    while not stop.is_set():
        if not queue.wait(WAIT_SECONDS):
            continue
        job = queue.claim("bench-waiter")
        if job is not None:
            queue.succeed(job.id, "bench-waiter")
    queue.close()
    catalog.dispose()
