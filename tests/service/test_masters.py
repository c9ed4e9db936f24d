"""Masters as separate processes on one PostgreSQL catalog: 20 requests shared by two
masters run once each; a master killed with kill -9 mid-job has its job re-claimed after the
lease and finished by another, with the same pixels as a direct run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import rasterio

from madrone import api, team
from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.queue import JobQueue
from madrone.config import Settings
from madrone.storage import Storage

DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"


def master_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MADRONE_WORKERS": "1", "MADRONE_LEASE_SECONDS": "3",
            "MADRONE_STORAGE_URL": str(tmp_path / "storage"), **extra}  # fmt: skip


def start_master(db: str, env: dict[str, str], name: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "madrone.cli", "master", "--db", db, "--name", name]
    with open(log, "wb") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (a forkserver's pool workers are grandchildren)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def test_two_masters_run_twenty_requests_once_each(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(workers=1)
    catalog = Catalog(postgres_url, upgrade=True)
    spec = api.build_spec([str(DEMO)], ["ndvi"], products=("cog", "json"))
    jobs = [team.submit(spec, catalog, settings=settings, name=f"r{n:02d}") for n in range(20)]
    env = master_env(tmp_path)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    masters = [start_master(postgres_url, env, name, log) for name, log in zip("ab", logs)]  # noqa: B905
    queue = JobQueue(catalog)
    try:
        wait_until(lambda: all(queue.get(j.id).status == "succeeded" for j in jobs), 300, "20 jobs")
    finally:
        for master in masters:
            stop(master)
    finished = [queue.get(job.id) for job in jobs]
    assert all(job.attempts == 0 and job.errors == [] for job in finished)
    claims = Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            if " claimed by " in line:
                claims[line.split("job ", 1)[1].split()[0]] += 1
    assert claims == Counter({job.id: 1 for job in jobs}), "each job claimed exactly once"
    assert {job.claimed_by for job in finished} == {"a", "b"}
    assert len(search_datasets(catalog, DatasetQuery(limit=100)).items) == 20
    catalog.dispose()


def test_killed_master_job_is_finished_by_another(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(workers=1)
    catalog = Catalog(postgres_url, upgrade=True)
    # 2500 tiles of 16 px: about 4 s on this machine's two cores, so the first master is
    # killed mid-job (progress reaches the catalog once a second; 64 px tiles took 1 s in
    # all and the job could end before the kill).
    spec = api.build_spec([str(DEMO)], ["ndvi"], tile_size=16)
    job = team.submit(spec, catalog, settings=settings, name="survivor")
    queue = JobQueue(catalog)
    # A process pool, so the test also sees the killed master's pool processes go.
    env = master_env(tmp_path, MADRONE_WORKERS="2", MADRONE_POOL="processes")
    first = start_master(postgres_url, env, "doomed", tmp_path / "doomed.log")
    try:
        wait_until(lambda: queue.get(job.id).tiles_done > 5, 120, "progress on the first master")
        pool = descendants(first.pid)
        assert pool, "the master runs its tiles in pool processes"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(lambda: not any(_alive(p) for p in pool), 15, "the killed master's pool to go")
    finally:
        stop(first)
    second = start_master(postgres_url, env, "rescuer", tmp_path / "rescuer.log")
    try:
        wait_until(lambda: queue.get(job.id).status in ("succeeded", "failed"), 180, "rescue")
    finally:
        stop(second)
    done = queue.get(job.id)
    assert done.status == "succeeded", done.errors
    assert done.attempts == 1 and "doomed stopped heart-beating" in done.errors[0]["message"]
    dataset = search_datasets(catalog, DatasetQuery()).items[0]
    storage = Storage.from_url(str(tmp_path / "storage"))
    direct = api.process([str(DEMO)], ["ndvi"], str(tmp_path / "direct"), workers=1)
    with rasterio.open(storage.gdal_path(dataset.assets["cog"]["href"])) as queued, \
            rasterio.open(direct.products["NDVI"].files["cog"]) as reference:  # fmt: skip
        np.testing.assert_array_equal(queued.read(1), reference.read(1))
    catalog.dispose()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
