"""The master as the database-driven service uses it, in this process: ``run_job`` takes
any output folder (Submit from the network keeps the roots check), reports progress,
cancels cleanly, and ``worker_count`` follows real worker processes on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madrone import process
from madrone.api import build_spec
from madrone.config import Settings
from madrone.engine.run import RunCancelled
from madrone.errors import InputError, SourceError
from madrone.executors.grpc.client import submit
from madrone.executors.grpc.leases import LeaseConfig
from madrone.executors.grpc.master import MasterService, serve
from tests.executors.test_grpc import COMMAND, T29, products

HEARTBEAT_TIMEOUT = 2.0


class Master:
    """A master served in this process, and its worker processes."""

    def __init__(self, service: MasterService, address: str, roots: Path) -> None:
        self.service, self.address, self.roots = service, address, roots
        self.workers: list[subprocess.Popen] = []

    def start_worker(self) -> subprocess.Popen:
        worker = subprocess.Popen([*COMMAND, "worker", "--master", self.address],
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        self.workers.append(worker)
        return worker

    def wait_for(self, check: Callable[[], bool], seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, f"still {self.service.worker_count()} workers"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    roots = tmp_path_factory.mktemp("client-roots")
    settings = Settings(master_roots=str(roots))
    config = LeaseConfig(heartbeat_timeout=HEARTBEAT_TIMEOUT)
    server, service, port = serve("127.0.0.1:0", settings, config=config)
    running = Master(service, f"127.0.0.1:{port}", roots)
    try:
        for _ in range(2):
            running.start_worker()
        running.wait_for(lambda: service.worker_count() == 2)
        yield running
    finally:
        for worker in running.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in running.workers:
            worker.wait(timeout=30)
        service.stop()
        server.stop(grace=2).wait()


def test_run_job_writes_where_the_caller_says_and_equals_local(
    master: Master, data_dir: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "service-staging"  # outside the roots network clients may use
    spec = build_spec([str(data_dir / T29)], ["ndvi", "ndsi"], str(staging), tile_size=256)
    with pytest.raises(InputError, match=r"output folder .*service-staging is outside"):
        submit(spec, master.address)
    seen: list[tuple[int, int]] = []
    result = master.service.run_job(spec, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (25, 25) and [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert result.tiles == 25 and result.output_dir == str(staging)
    assert result.datetime == dt.datetime(2020, 2, 19, tzinfo=dt.UTC)  # from the folder name
    assert result.products["NDVI"].stats["valid_pixels"] > 800_000
    process([str(data_dir / T29)], ["ndvi", "ndsi"], str(tmp_path / "local"), tile_size=256,
            workers=1)  # fmt: skip
    assert products(staging) == products(tmp_path / "local")


def test_cancel_event_ends_the_job_and_removes_its_staging(
    master: Master, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(out), tile_size=32, products=["cog"])
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 40:
            cancel.set()

    with pytest.raises(RunCancelled, match="cancelled by the caller"):
        master.service.run_job(spec, progress=progress, cancel=cancel)
    assert 40 <= max(seen) < 1296
    assert list(out.iterdir()) == [], "the staging folder is gone"
    # The master goes on serving: the next job runs on the same workers.
    again = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path / "next"), products=["cog"])
    assert master.service.run_job(again).tiles == 4


def test_an_exception_from_progress_cancels_and_reaches_the_caller(
    master: Master, data_dir: Path, tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done >= 20:
            raise Stop(f"stop at {done}")

    out = tmp_path / "out"
    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(out), tile_size=32, products=["cog"])
    with pytest.raises(Stop):
        master.service.run_job(spec, progress=progress)
    assert list(out.iterdir()) == []
    states = [job.state for job in master.service.jobs.values()]
    assert states[-1] == "cancelled" and "running" not in states


def test_preflight_errors_come_from_run_job_itself(master: Master, tmp_path: Path) -> None:
    spec = build_spec([str(tmp_path / "nothing_20200101")], ["ndvi"], str(tmp_path / "out"))
    with pytest.raises(SourceError, match="nothing_20200101: no such file"):
        master.service.run_job(spec)
    assert not (tmp_path / "out").exists()


def test_worker_count_follows_workers(master: Master) -> None:
    assert master.service.worker_count() == 2
    extra = master.start_worker()
    master.wait_for(lambda: master.service.worker_count() == 3)
    os.kill(extra.pid, signal.SIGKILL)  # no goodbye: counted until its silence is too long
    extra.wait()
    started = time.monotonic()
    master.wait_for(lambda: master.service.worker_count() == 2, seconds=10)
    assert time.monotonic() - started < HEARTBEAT_TIMEOUT + 2
    for worker in master.workers:
        if worker.poll() is None:
            worker.terminate()  # a stopped worker says goodbye: uncounted at once
            worker.wait(timeout=30)
    assert master.service.worker_count() == 0
