"""A stopped run takes every process and thread it started with it: SIGTERM to ``madrone
process``, ``kill -9`` of it, an exception from the progress callback, a cancel event, and a
``map_tiles`` generator closed early. Processes are read from /proc (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from madrone.api import build_spec, run
from madrone.config import Settings
from madrone.engine.plan import plan
from madrone.engine.run import RunCancelled
from madrone.executors.local import LocalExecutor
from tests.executors.test_local import shared_segments

T18 = "L1C_T18SVG_20160112_crop"  # 1933 x 1947 px: about 3,700 tiles of 32 px
MADRONE = [sys.executable, "-m", "madrone.cli"]


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier}
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids still running (a zombie has ended; only its parent has not reaped it)."""
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def wait_until(check, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, what
        time.sleep(0.05)
    return time.monotonic() - started


def start_process_command(data_dir: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    """``madrone process`` on a real scene in small tiles; returns once its pool runs (its
    fork server, resource tracker and two workers) and it has written some tiles."""
    command = [*MADRONE, "process", str(data_dir / T18), "-o", str(out), "-i", "ndvi,ndsi",
               "--tile-size", "32", "--workers", "2", "--quiet"]  # fmt: skip
    environ = {**os.environ, "MADRONE_POOL": "processes"}
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environ)
    wait_until(lambda: len(descendants(child.pid)) >= 4, 60, "the pool never started")
    staging = None

    def writing() -> bool:
        nonlocal staging
        staging = next((p for p in out.iterdir() if p.name.endswith(".partial")), None)
        log = staging / "progress.jsonl" if staging else None
        return bool(log and log.exists() and log.stat().st_size > 0)

    wait_until(writing, 60, "no tile was written")
    assert child.poll() is None, "the run ended before it could be stopped"
    return child, descendants(child.pid)


def test_sigterm_stops_the_run_and_every_process_it_started(data_dir: Path, outdir: Path) -> None:
    child, started = start_process_command(data_dir, outdir)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 143
    assert "madrone: stopped by SIGTERM" in child.stderr.read()
    child.stderr.close()
    wait_until(lambda: not alive(started), 5, f"left running: {alive(started)}")
    assert sorted(p.name for p in outdir.iterdir()) == ["keep.txt"], "staging files removed"


def test_kill_9_of_the_run_ends_its_workers(data_dir: Path, outdir: Path) -> None:
    child, started = start_process_command(data_dir, outdir)
    child.kill()
    child.wait(timeout=30)
    child.stderr.close()
    # Workers watch the process that owns the pool; with them gone, the fork server and
    # the resource tracker lose their last clients and exit too.
    wait_until(lambda: not alive(started), 5, f"left running: {alive(started)}")


def pool_workers(before: set[int]) -> set[int]:
    """This process's new grandchildren: pool workers (their parent is the fork server)."""
    table = process_table()
    return {p for p in descendants(os.getpid()) - before if table.get(p, (0,))[0] != os.getpid()}


class Stop(Exception):
    pass


def test_an_exception_from_progress_stops_the_pool_and_removes_staging(
    data_dir: Path, tmp_path: Path
) -> None:
    spec = build_spec([str(data_dir / T18)], ["ndvi"], str(tmp_path / "out"), tile_size=64)
    before, segments = descendants(os.getpid()), shared_segments()
    workers: set[int] = set()

    def progress(done: int, total: int) -> None:
        workers.update(pool_workers(before))
        if done >= 30:
            raise Stop(f"stopped at {done} of {total}")

    started = time.monotonic()
    with pytest.raises(Stop, match="stopped at 30 of 961"):
        run(spec, workers=2, progress=progress, settings=Settings(pool="processes"))
    assert time.monotonic() - started < 30
    assert len(workers) == 2
    assert not alive(workers), "the pool's workers ended before run() returned"
    assert list((tmp_path / "out").iterdir()) == []
    assert shared_segments() == segments


def test_a_cancel_event_stops_the_run(data_dir: Path, tmp_path: Path) -> None:
    spec = build_spec([str(data_dir / T18)], ["ndvi"], str(tmp_path / "out"), tile_size=64)
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 10:
            cancel.set()  # as another thread would

    with pytest.raises(RunCancelled, match="cancelled; nothing was written"):
        run(spec, workers=2, progress=progress, cancel=cancel)
    assert seen[-1] == 10
    assert list((tmp_path / "out").iterdir()) == []


def test_closing_map_tiles_early_ends_the_workers(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T18)], ["ndvi"], tile_size=64))
    before, segments = descendants(os.getpid()), shared_segments()
    tiles = LocalExecutor(2, pool="processes").map_tiles(checked.context, checked.tiles)
    received = [next(tiles).tile for _ in range(5)]
    workers = pool_workers(before)
    assert len(set(received)) == 5 and len(workers) == 2
    started = time.monotonic()
    tiles.close()
    assert time.monotonic() - started < 5
    assert not alive(workers)
    assert shared_segments() == segments


def tile_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("madrone-tiles")]


def test_sigterm_stops_a_threaded_run_and_removes_its_staging(data_dir: Path, outdir: Path) -> None:
    command = [*MADRONE, "process", str(data_dir / T18), "-o", str(outdir), "-i", "ndvi",
               "--tile-size", "32", "--workers", "2", "--quiet"]  # fmt: skip
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)

    def writing() -> bool:
        staging = next((p for p in outdir.iterdir() if p.name.endswith(".partial")), None)
        log = staging / "progress.jsonl" if staging else None
        return bool(log and log.exists() and log.stat().st_size > 0)

    wait_until(writing, 60, "no tile was written")
    assert descendants(child.pid) == set(), "threads, no process"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 143
    assert "madrone: stopped by SIGTERM" in child.stderr.read()
    child.stderr.close()
    assert sorted(p.name for p in outdir.iterdir()) == ["keep.txt"], "staging files removed"


def test_an_exception_from_progress_stops_the_threads(data_dir: Path, tmp_path: Path) -> None:
    spec = build_spec([str(data_dir / T18)], ["ndvi"], str(tmp_path / "out"), tile_size=64)
    seen: set[str] = set()

    def progress(done: int, total: int) -> None:
        seen.update(t.name for t in tile_threads())
        if done >= 30:
            raise Stop(f"stopped at {done} of {total}")

    with pytest.raises(Stop, match="stopped at 30 of 961"):
        run(spec, workers=2, progress=progress, settings=Settings(pool="threads"))
    assert seen == {"madrone-tiles-0", "madrone-tiles-1"}
    assert tile_threads() == [], "the threads ended before run() returned"
    assert list((tmp_path / "out").iterdir()) == []


def test_closing_threaded_map_tiles_early_ends_the_threads(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T18)], ["ndvi"], tile_size=64))
    tiles = LocalExecutor(2).map_tiles(checked.context, checked.tiles)
    received = [next(tiles).tile for _ in range(5)]
    assert len(set(received)) == 5 and len(tile_threads()) == 2
    started = time.monotonic()
    tiles.close()
    assert time.monotonic() - started < 5
    assert tile_threads() == []


def test_a_cancel_while_the_cogs_are_encoded_stops_before_the_next(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiles are done; the event is set (as SIGTERM sets it for ``madrone process``)
    while the first index's COG is encoded: the second is not, and nothing is published."""
    from madrone.products.writer import CogWriter

    spec = build_spec([str(data_dir / T18)], ["ndvi", "ndsi"], str(tmp_path / "out"))
    cancel, encoded = threading.Event(), []
    encode = CogWriter.encode

    def encode_then_cancel(writer: CogWriter, key: str) -> str:
        encoded.append(key)
        path = encode(writer, key)
        cancel.set()
        return path

    monkeypatch.setattr(CogWriter, "encode", encode_then_cancel)
    with pytest.raises(RunCancelled, match="cancelled; nothing was written"):
        run(spec, workers=2, cancel=cancel)
    assert encoded == ["NDVI"]
    assert list((tmp_path / "out").iterdir()) == []
