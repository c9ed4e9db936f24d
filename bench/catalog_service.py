"""The cases of bench/catalog.py that need a master: submit-to-start latency with an idle
master, and a queued request's wall time against the same job run by ``madrone process``.

The master is the real service, ``madrone master --db URL`` in a subprocess, products to a
storage folder in the run's temporary folder, stopped by PID (SIGTERM: it hands a job in
hand back and exits). ``--master waiter`` swaps in a stand-in process that only waits and
claims (bench/catalog_workers.py), to see the queue's own latency without the service.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from catalog_measure import Meter, Usage, cpu_split, percentiles_ms
from catalog_report import Row
from catalog_workers import wait_and_claim
from madrone import api, team
from madrone.catalog.db import Catalog
from madrone.catalog.models import FINAL_STATES, Job, utc_now
from madrone.catalog.queue import JobQueue

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
SCENE = (
    Path(os.environ.get("MADRONE_TEST_DATA", ROOT.parent / "shared/data/sentinel2"))
    / "L1C_T18SVG_20160112_crop"
)
MADRONE = [sys.executable, "-m", "madrone.cli"]
START_SECONDS = 120.0
JOB_SECONDS = 600.0
POLL_SECONDS = 0.05  # the times come from the row; polling only notices them
SPACING_SECONDS = (0.3, 0.8)


@contextlib.contextmanager
def service_master(url: str, folder: Path) -> Iterator[str]:
    """``madrone master --db URL`` in a subprocess until the block ends; yields a label."""
    storage = str(folder / "storage")
    env = {**os.environ, "MADRONE_STORAGE_URL": storage, "MADRONE_CENTRAL_STORAGE_URL": storage}
    log = folder / "master.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [*MADRONE, "master", "--db", url],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while b": serving " not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"madrone master did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield "`madrone master --db URL` (the service, local pool)"
    finally:
        process.terminate()  # by PID: SIGTERM, the service's own stop
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(storage, ignore_errors=True)


@contextlib.contextmanager
def waiter_master(url: str) -> Iterator[str]:
    """A stand-in master (wait, then claim, close at once) in a spawned process."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    process = context.Process(target=wait_and_claim, args=(url, ready, stop))
    process.start()
    try:
        if not ready.wait(START_SECONDS):
            raise SystemExit("the waiter process did not start")
        yield "a waiter process: JobQueue.wait(1 s), then claim() (no service)"
    finally:
        stop.set()
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()


def wait_until(queue: JobQueue, job_id: str, done: bool) -> Job:
    """Poll the job row until it started (``done`` False) or ended; fail loudly on a
    failed job or a timeout."""
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        job = queue.get(job_id)
        if job.status in ("failed", "cancelled"):
            raise SystemExit(f"job {job.id} {job.status}: {job.errors}")
        if (job.status in FINAL_STATES) if done else (job.started_at is not None):
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job.id} still {job.status} after {JOB_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


def submit_once(catalog: Catalog, queue: JobQueue, n: int, service: bool) -> tuple[Job, datetime]:
    """Submit one job (the demo scene's NDVI through ``team.submit``, preflight included,
    for the service; a bare row for the waiter); returns it and the clock just before."""
    submitted = utc_now()
    if service:
        spec = api.build_spec([str(DEMO)], ["ndvi"])
        return team.submit(spec, catalog, name=f"latency-{n:02d}", requester="bench"), submitted
    return queue.submit({"bench": n}, kind="process", name=f"latency-{n:02d}"), submitted


def bench_latency(url: str, engine: str, folder: Path, master: str, submits: int, seed: int) -> Row:
    """``submits`` submits to an idle master, each after the last job ended and a random
    pause; latency is the row's ``started_at`` minus the clock just before the submit."""
    catalog = Catalog(url, upgrade=True)
    queue = JobQueue(catalog)
    service = master == "service"
    rng = random.Random(seed)
    to_start, in_queue = [], []
    starting = service_master(url, folder) if service else waiter_master(url)
    with starting as label, Meter() as meter:
        for n in range(submits):
            time.sleep(rng.uniform(*SPACING_SECONDS))
            job, submitted = submit_once(catalog, queue, n, service)
            started = wait_until(queue, job.id, done=False)
            to_start.append((started.started_at - submitted).total_seconds())
            in_queue.append((started.started_at - started.created_at).total_seconds())
            wait_until(queue, job.id, done=True)  # idle again before the next submit
    catalog.dispose()
    latency = percentiles_ms(to_start)
    queued = percentiles_ms(in_queue)
    what = "the demo scene's NDVI via team.submit (preflight included)" if service else "bare rows"
    return Row(
        case="submit to start, idle master",
        engine=engine,
        n=f"{submits} submits",
        usage=meter.usage,
        latency=latency,
        goal="< 1 s (max)",
        met=latency["max_ms"] < 1000,
        notes=[
            f"master: {label}; jobs: {what}, {SPACING_SECONDS[0]}-{SPACING_SECONDS[1]} s "
            "apart once the last ended; wall and CPU are the whole window, the jobs included",
            f"of which in the queue (created_at to started_at): p50 {queued['p50_ms']:.1f} ms, "
            f"p95 {queued['p95_ms']:.1f} ms, max {queued['max_ms']:.1f} ms",
        ],
    )


def run_direct(out: Path) -> Usage:
    """``madrone process SCENE -i ndvi`` once, as a user would type it."""
    argv = [*MADRONE, "process", str(SCENE), "-o", str(out), "-i", "ndvi", "-q"]
    with Meter() as meter:
        done = subprocess.run(argv, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"madrone process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return meter.usage


def run_queued(catalog: Catalog, queue: JobQueue, n: int) -> Usage:
    """The same job submitted to the running master; wall is submit to ``finished_at``
    (products uploaded, datasets registered, job closed)."""
    spec = api.build_spec([str(SCENE)], ["ndvi"])
    with Meter() as meter:
        submitted = utc_now()
        job = team.submit(spec, catalog, name=f"request-{n}", requester="bench")
        job = wait_until(queue, job.id, done=True)
    usage = meter.usage
    wall = (job.finished_at - submitted).total_seconds()
    return Usage(wall, usage.cpu_s, usage.peak_rss_mib, usage.other_cpu_s, usage.server_cpu_s)


def bench_request_vs_direct(url: str, engine: str, folder: Path, reps: int) -> list[Row]:
    """A queued request's wall time against ``madrone process`` on the same job (the real
    41 MB Sentinel-2 crop's NDVI, all products); goal: within 10 % plus 1 s."""
    if not SCENE.is_dir():
        raise SystemExit(f"{SCENE} is missing: set MADRONE_TEST_DATA to the Sentinel-2 data")
    direct = [run_direct(folder / f"direct-{n}") for n in range(reps)]
    catalog = Catalog(url, upgrade=True)
    queue = JobQueue(catalog)
    with service_master(url, folder):
        queued = [run_queued(catalog, queue, n) for n in range(reps)]
    catalog.dispose()
    direct_row, queued_row = _median(direct), _median(queued)
    limit = 1.1 * direct_row.wall_s + 1.0
    job = f"NDVI of {SCENE.name}, all products"
    return [
        Row(
            case="`madrone process`, directly",
            engine=engine,
            n=f"{reps} runs",
            usage=direct_row,
            notes=[f"{job}; walls " + ", ".join(f"{u.wall_s:.2f}" for u in direct) + " s"],
        ),
        Row(
            case="the same job queued, `madrone master --db`",
            engine=engine,
            n=f"{reps} runs",
            usage=queued_row,
            goal=f"≤ 1.1 × direct + 1 s = {limit:.2f} s",
            met=queued_row.wall_s <= limit,
            notes=[
                "submit (preflight) to finished_at (uploaded, registered, closed); walls "
                + ", ".join(f"{u.wall_s:.2f}" for u in queued)
                + " s; the master was idle and running before each submit",
                cpu_split(queued_row, 1, "request"),
            ],
        ),
    ]


def _median(usages: list[Usage]) -> Usage:
    """Median wall and CPU, largest peak, of several runs of one thing."""
    return Usage(
        statistics.median(u.wall_s for u in usages),
        statistics.median(u.cpu_s for u in usages),
        max(u.peak_rss_mib for u in usages),
        max(u.other_cpu_s for u in usages),
        statistics.median(u.server_cpu_s for u in usages),
    )
