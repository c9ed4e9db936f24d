"""Catalog benchmark: job claims per second with concurrent claimers, submit-to-start latency
with an idle master, bbox search over 100,000 datasets, and a queued request against the same
job run directly; on PostgreSQL + PostGIS and on SQLite.

    python bench/catalog.py [--quick] [--engines postgres,sqlite]
                            [--cases claims,latency,search,request] [--jobs 10000]
                            [--datasets 100000] [--queries 200] [--submits 20] [--reps 3]

PostgreSQL is a throwaway cluster (tests/support/postgres.py) with production durability
(fsync and synchronous_commit on: the test defaults turn them off); SQLite is a file in a
temporary folder, in the WAL mode the Catalog sets. Every case gets a fresh database. Rows
give wall seconds, CPU seconds and peak summed RSS of this process's whole tree (claimers,
the master, the PostgreSQL server and its backends; see bench/catalog_measure.py). The
cases with a master are in bench/catalog_service.py.
Results: bench/results/catalog.md (``--quick`` only prints: a smoke test).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # tests.support.postgres, the throwaway cluster
sys.path.insert(0, str(BENCH))

from tests.support.postgres import postgres_cluster  # noqa: E402

from catalog_data import Footprints, load_datasets, load_jobs, make_footprints, query_boxes  # noqa: E402
from catalog_measure import Meter, Usage, cpu_split, percentiles_ms  # noqa: E402
from catalog_report import Row, format_markdown, markdown_table, notes  # noqa: E402
from catalog_service import bench_latency, bench_request_vs_direct  # noqa: E402
from catalog_workers import claim_all  # noqa: E402
from madrone.catalog.datasets import DatasetQuery, search_datasets  # noqa: E402
from madrone.catalog.db import Catalog  # noqa: E402
from madrone.catalog.models import Dataset, Job  # noqa: E402
from madrone.catalog.queue import JobQueue  # noqa: E402

CASES = ("claims", "latency", "search", "request")
ENGINES = ("postgres", "sqlite")
# A queue's throughput depends on what a commit costs: measure with the durable defaults.
DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
}
SEARCH_LIMIT = 50
WARMUP_QUERIES = 5
Fresh = Callable[[], contextlib.AbstractContextManager[str]]


# -- databases -----------------------------------------------------------------------------
@contextlib.contextmanager
def engine_databases(engine: str, folder: Path, facts: dict[str, str]) -> Iterator[Fresh]:
    """Yield a factory of fresh empty databases (URLs) of one engine; clean up after."""
    if engine == "postgres":
        with postgres_cluster(DURABLE) as server:
            facts["postgres"] = _postgres_version(server.url)
            yield server.fresh_database
        return
    facts["sqlite"] = sqlite3.sqlite_version
    counter = itertools.count()

    @contextlib.contextmanager
    def fresh() -> Iterator[str]:
        path = folder / f"catalog-{next(counter)}.sqlite"
        yield f"sqlite:///{path}"
        for leftover in folder.glob(path.name + "*"):  # the file, its -wal and -shm
            leftover.unlink()

    yield fresh


def _postgres_version(url: str) -> str:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        server = connection.scalar(text("SHOW server_version"))
        postgis = connection.scalar(text("SELECT postgis_lib_version()"))
    engine.dispose()
    return f"{server} + PostGIS {postgis}"


def explain(catalog: Catalog, call: Callable[[], Any], table: str) -> str:
    """Run ``call`` once, catch its statement on ``table`` and return the plan, condensed."""
    seen: list[tuple[str, Any]] = []

    def catch(_conn, _cursor, statement, parameters, _context, _many) -> None:
        seen.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", catch)
    try:
        call()
    finally:
        event.remove(catalog.engine, "before_cursor_execute", catch)
    statement, parameters = next(
        (s, p)
        for s, p in seen
        if s.lstrip().upper().startswith(("SELECT", "UPDATE")) and table in s
    )
    prefix = "EXPLAIN " if catalog.is_postgres else "EXPLAIN QUERY PLAN "
    with catalog.engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    if not catalog.is_postgres:
        return "; ".join(row[-1] for row in rows)
    nodes = [row[0].split("  (cost=")[0].replace("->", "").strip() for row in rows]
    return " > ".join(node for node in nodes if node and ":" not in node)


# -- 1. claims -----------------------------------------------------------------------------
def bench_claims(url: str, engine: str, args: argparse.Namespace, async_commit: bool) -> Row:
    """``args.claimers`` processes drain ``args.jobs`` queued jobs; exactly once or fail."""
    catalog = Catalog(url, upgrade=True)
    if async_commit:
        database = make_url(url).database
        with catalog.engine.begin() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" SET synchronous_commit = off'))
    load_jobs(catalog, args.jobs)
    queue = JobQueue(catalog)
    plan = explain(
        catalog, lambda: queue.release(queue.claim("bench-explain").id, "bench-explain"), "jobs"
    )
    reports, usage = run_claimers(url, args.claimers)
    check = check_exactly_once(catalog, reports, args.jobs)
    catalog.dispose()
    wall = max(r["last"] for r in reports) - min(r["start"] for r in reports)
    seconds = [s for r in reports for s in r["seconds"]]
    durability = "synchronous_commit off" if async_commit else "durable commits"
    goal = "≥ 1,000/s" if engine == "postgres" else ""
    rate = args.jobs / wall
    return Row(
        case=f"claims, {args.claimers} processes"
        + (f" ({durability})" if engine == "postgres" else ""),
        engine=engine,
        n=f"{args.jobs:,} jobs",
        usage=replace(usage, wall_s=wall),
        rate=rate,
        latency=percentiles_ms(seconds),
        goal=goal,
        met=rate >= 1000 if goal else None,
        notes=[check, cpu_split(usage, args.jobs, "claim"), f"claim plan: {plan}"],
    )


def run_claimers(url: str, claimers: int) -> tuple[list[dict[str, Any]], Usage]:
    """Start the claimer processes, release them together, collect their reports."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(claimers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=claim_all, args=(url, f"claimer-{k}", barrier, results))
        for k in range(claimers)
    ]
    for process in processes:
        process.start()
    try:
        deadline = time.monotonic() + 180
        # Start metering once every claimer has imported and connected: spawn costs seconds.
        while barrier.n_waiting < claimers and time.monotonic() < deadline:
            time.sleep(0.05)
        with Meter() as meter:
            barrier.wait(timeout=180)
            reports = [results.get(timeout=1800) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    failed = [report["error"] for report in reports if "error" in report]
    if failed:
        raise SystemExit("a claimer failed:\n" + failed[0])
    return reports, meter.usage


def check_exactly_once(catalog: Catalog, reports: list[dict[str, Any]], jobs: int) -> str:
    """Every job claimed once and only once, by the claimers' ids and by the table."""
    ids = [job_id for report in reports for job_id in report["ids"]]
    distinct = len(set(ids))
    with catalog.session() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    problems = []
    if distinct != len(ids):
        problems.append(f"{len(ids) - distinct} claims of jobs claimed before")
    if distinct != jobs:
        problems.append(f"{distinct} distinct jobs claimed of {jobs}")
    if counts.get("running", 0) != jobs or counts.get("queued", 0):
        problems.append(f"job table by status: {counts}")
    if problems:
        raise SystemExit("claims are NOT exactly once: " + "; ".join(problems))
    shares = ", ".join(f"{len(report['ids']):,}" for report in reports)
    return (
        f"exactly once: {len(ids):,} claims, {distinct:,} distinct ids, "
        f"{counts['running']:,} rows running, none left queued (per claimer: {shares})"
    )


# -- 3. bbox search ------------------------------------------------------------------------
def indexed_search(catalog: Catalog, box: tuple[float, ...]) -> int:
    """The catalog's own search (spatial index), newest first; returns the page's length."""
    return len(search_datasets(catalog, DatasetQuery(bbox=box, limit=SEARCH_LIMIT)).items)


def plain_search(catalog: Catalog, box: tuple[float, ...]) -> int:
    """The same page from a plain comparison of the bbox columns (no spatial index)."""
    west, south, east, north = box
    statement = (
        select(Dataset)
        .where(Dataset.east >= west, Dataset.west <= east)
        .where(Dataset.north >= south, Dataset.south <= north)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
        .limit(SEARCH_LIMIT + 1)
    )
    with catalog.session() as session:
        return min(SEARCH_LIMIT, len(list(session.scalars(statement))))


def time_queries(
    catalog: Catalog,
    search: Callable[[Catalog, tuple[float, ...]], int],
    boxes: list[tuple[float, ...]],
    expected: list[int],
) -> tuple[list[float], Usage]:
    """Seconds per query after a warm-up; every page must hold what the box meets."""
    for box in boxes[:WARMUP_QUERIES]:
        search(catalog, box)
    seconds, got = [], []
    with Meter() as meter:
        for box in boxes:
            started = time.perf_counter()
            got.append(search(catalog, box))
            seconds.append(time.perf_counter() - started)
    wrong = [
        n for n, (g, e) in enumerate(zip(got, expected, strict=True)) if g != min(e, SEARCH_LIMIT)
    ]
    if wrong:
        n = wrong[0]
        raise SystemExit(
            f"{search.__name__}: {len(wrong)} pages of the wrong length; box {boxes[n]} gave "
            f"{got[n]} datasets, {expected[n]} footprints meet it (limit {SEARCH_LIMIT})"
        )
    return seconds, meter.usage


def bench_search(
    url: str, engine: str, footprints: Footprints, boxes: list[tuple[float, ...]], seed: int
) -> list[Row]:
    """Load the datasets, then time the query boxes with and without the spatial index."""
    catalog = Catalog(url, upgrade=True)
    with Meter() as loading:
        load_datasets(catalog, footprints, seed)
    load = loading.usage
    expected = [footprints.count_meeting(box) for box in boxes]
    middle = boxes[int(sorted(range(len(boxes)), key=lambda n: expected[n])[len(boxes) // 2])]
    rows = []
    for label, search in (("spatial index", indexed_search), ("no spatial index", plain_search)):
        seconds, usage = time_queries(catalog, search, boxes, expected)
        plan = explain(catalog, lambda s=search: s(catalog, middle), "datasets")
        met = percentiles_ms(seconds)["p95_ms"] < 20 if engine == "postgres" else None
        rows.append(
            Row(
                case=f"bbox search, limit {SEARCH_LIMIT}, {label}",
                engine=engine,
                n=f"{len(boxes)} queries",
                usage=usage,
                rate=len(boxes) / sum(seconds),
                latency=percentiles_ms(seconds),
                goal="p95 < 20 ms" if label == "spatial index" and engine == "postgres" else "",
                met=met if label == "spatial index" else None,
                notes=[cpu_split(usage, len(boxes), "query"), f"plan of the median query: {plan}"],
            )
        )
    catalog.dispose()
    matches = sorted(expected)
    rows[0].notes[:0] = [
        f"loaded {len(footprints):,} datasets in {load.wall_s:.1f} s "
        f"({len(footprints) / load.wall_s:,.0f} rows/s, {load.cpu_s:.1f} CPU s, "
        f"peak {load.peak_rss_mib:.0f} MiB; triggers and ANALYZE included)",
        f"footprints meeting a query box: median {matches[len(matches) // 2]:,}, "
        f"p95 {matches[int(len(matches) * 0.95)]:,}, max {matches[-1]:,}",
    ]
    return rows


# -- driver --------------------------------------------------------------------------------
def run_engine(
    engine: str,
    args: argparse.Namespace,
    folder: Path,
    facts: dict[str, str],
    rows: dict[tuple, list[Row]],
) -> None:
    """Every chosen case on one engine, each in a fresh database."""
    with engine_databases(engine, folder, facts) as fresh:
        if "claims" in args.cases:
            claims = []
            for async_commit in (False, True) if engine == "postgres" else (False,):
                with fresh() as url:
                    claims.append(bench_claims(url, engine, args, async_commit))
            _add(rows, "claims", engine, claims)
        if "latency" in args.cases:
            with fresh() as url:
                row = bench_latency(url, engine, folder, args.master, args.submits, args.seed)
            _add(rows, "latency", engine, [row])
        if "search" in args.cases:
            footprints = make_footprints(args.datasets, args.seed)
            boxes = query_boxes(footprints, args.queries, args.seed + 2)
            with fresh() as url:
                found = bench_search(url, engine, footprints, boxes, args.seed)
            _add(rows, "search", engine, found)
        if "request" in args.cases:
            with fresh() as url:
                found = bench_request_vs_direct(url, engine, folder, args.reps)
            _add(rows, "request", engine, found)


def _add(rows: dict[tuple, list[Row]], case: str, engine: str, new: list[Row]) -> None:
    rows[(case, engine)] = new
    for row in new:
        print(markdown_table([row]).splitlines()[-1], flush=True)


def machine_header(command: str, started: str, load: float, facts: dict[str, str]) -> str:
    """The command, the time, the commit and the machine, for the top of the page."""
    cpu = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as handle:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
        )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    engines = []
    if "postgres" in facts:
        engines.append(f"PostgreSQL {facts['postgres']} (fsync and synchronous_commit on)")
    if "sqlite" in facts:
        engines.append(f"SQLite {facts['sqlite']} (WAL, synchronous FULL, BEGIN IMMEDIATE)")
    import psycopg

    return (
        f"`{command}`, {started}, commit {git.stdout.strip()[:10] or 'unknown'}: "
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.1f} GiB, "
        f"load average {load:.2f} at the start; {'; '.join(engines)}; "
        f"SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}."
    )


EXPLANATION = """\
How each row is measured (bench/catalog.py; the numbers above come from one run):

- **claims**: the jobs are bulk inserted (Core executemany) and ANALYZEd; the claimers are
  separate processes (multiprocessing, spawn), each with its own Catalog and JobQueue, released
  together by a barrier; wall runs from the barrier to the last successful claim, so per s is
  claims per second. Latency is per `JobQueue.claim()` call, as a claimer sees it. The run fails
  unless every job was claimed exactly once (distinct ids = jobs = rows running, none queued).
  The extra PostgreSQL row sets `synchronous_commit = off` on the database: a crash can lose
  the last claims' commits, which only queues those jobs again (tiles are idempotent).
- **submit to start**: `madrone master --db URL` (the service, in a subprocess) idles; each
  submit is the bundled demo scene's NDVI through `team.submit` (preflight included), made once
  the previous job ended and after a random pause; latency is the job row's `started_at` minus
  the clock just before the submit (one machine, one clock). CPU and memory are those of the
  whole window: idle time and the 20 small jobs included.
- **bbox search**: synthetic footprints clustered like Sentinel-2 tiles over land (see
  bench/catalog_data.py), loaded in batches of 5,000 through the migrations' triggers (PostGIS
  geometry from the GeoJSON footprint; the SQLite R*Tree), then ANALYZE; query boxes 0.1 to
  2 degrees across centred on random datasets, `search_datasets(bbox=..., limit=50)` (newest
  first), after a warm-up of 5 queries; per s is queries per second of query time; every page is
  checked against a count of the footprints meeting the box. The "no spatial index" rows run the
  same page as a plain comparison of the bbox columns, to show what the index is worth.
- **request**: the NDVI (all products) of the real 41 MB Sentinel-2 crop
  `L1C_T18SVG_20160112_crop`, run by `madrone process` in a subprocess (Python start-up
  included, as a user types it), then submitted to an idle, already running
  `madrone master --db` with `team.submit`; its wall runs from the submit to the row's
  `finished_at` (products uploaded to the storage folder and checked, datasets registered,
  job closed). Median of the runs; goal: queued <= 1.1 x direct + 1 s. The direct run pays
  the interpreter's start, the imports and the process pool's forkserver every time; the
  master has paid them once (its first job pays the forkserver: the first of the walls).
- wall, CPU and peak MiB cover this process's whole tree (claimers, the master and its
  pool, the PostgreSQL postmaster and its backends), see bench/catalog_measure.py;
  "busy machine" marks a row during which other processes used more than 5 % of the
  machine's CPU (other engineers' test runs share these 2 cores).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3, help="runs of the request case")
    parser.add_argument(
        "--master",
        choices=("service", "waiter"),
        default="service",
        help="the idle master of the latency case (waiter: a stand-in)",
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="small sizes; prints, writes nothing")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    args.engines = [e for e in args.engines.split(",") if e]
    args.cases = [c for c in args.cases.split(",") if c]
    for chosen, known in ((args.engines, ENGINES), (args.cases, CASES)):
        if set(chosen) - set(known):
            parser.error(
                f"unknown: {', '.join(set(chosen) - set(known))}; known: {', '.join(known)}"
            )
    if args.quick:
        args.jobs, args.submits, args.datasets, args.queries, args.reps = 1000, 5, 10_000, 50, 1
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "bench/catalog.py", *argv])
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    facts: dict[str, str] = {}
    rows: dict[tuple, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="madrone-bench-catalog-") as folder:
        for engine in args.engines:
            run_engine(engine, args, Path(folder), facts, rows)
    ordered = [
        row
        for case in CASES
        for engine in (*ENGINES, "both")
        for row in rows.get((case, engine), [])
    ]
    header = machine_header(command, started, load, facts)
    page = format_markdown(header, ordered, EXPLANATION)
    print("\n" + markdown_table(ordered) + "\n\n" + notes(ordered))
    if not args.quick:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "catalog.md").write_text(page)
        print(f"\nwrote {args.results / 'catalog.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
