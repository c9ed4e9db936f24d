"""What a catalog benchmark window cost: wall, CPU and peak summed RSS of this process's whole
tree, and latency percentiles.

The tree is this process, its children (claimer and waiter processes, a master) and theirs
(the PostgreSQL postmaster under ``runuser``, its backends). CPU is the difference of two
snapshots, each the sum over the live tree of own CPU plus the CPU of children already
reaped (a backend that ended is in the postmaster's ``children_*`` times, a joined claimer
in ours), so processes that start and end inside the window are counted too. Peak memory is
the largest sum of RSS over samples every 50 ms (shared pages count once per process that
maps them, as in bench/measure.py). ``other_cpu_s`` is what the rest of the machine used
meanwhile: other engineers' test runs make the timings noisy, and the report says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

SAMPLE_S = 0.05
MIB = 1024 * 1024
BUSY_FRACTION = 0.05  # other load above this share of the window's CPU capacity: flagged


@dataclass(frozen=True)
class Usage:
    """One window: seconds of wall and CPU, peak MiB, and CPU the rest of the machine used."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    other_cpu_s: float
    server_cpu_s: float = 0.0

    @property
    def busy(self) -> bool:
        """Whether other processes used enough CPU to distort this window."""
        capacity = self.wall_s * (os.cpu_count() or 1)
        return capacity > 0 and self.other_cpu_s > BUSY_FRACTION * capacity


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def tree_cpu_s(root: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the live tree plus the children its members have reaped: all of it,
    and the part of it that is PostgreSQL's (processes named ``postgres``)."""
    total = server = 0.0
    for proc in _tree(root):
        try:
            times = proc.cpu_times()
            name = proc.name()
        except psutil.Error:
            continue
        seconds = times.user + times.system + times.children_user + times.children_system
        total += seconds
        server += seconds if name == "postgres" else 0.0
    return total, server


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class Meter:
    """Context manager metering this process's tree; ``usage`` holds the result on exit.

    CPU is the larger of the snapshot difference (see the module docstring) and the sum of
    what sampling saw each process use: a process whose parent never waits for it (a
    forkserver's pool) is lost to the snapshots once it ends, but not to the samples.
    """

    def __init__(self) -> None:
        self._root = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._peak = 0
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self.usage: Usage | None = None

    def __enter__(self) -> Meter:
        self._machine0 = _busy_cpu_s()
        self._cpu0 = tree_cpu_s(self._root)
        self._look()
        self._first = dict(self._last)
        self._wall0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._wall0
        cpu, server = (b - a for a, b in zip(self._cpu0, tree_cpu_s(self._root), strict=True))
        self._stop.set()
        self._thread.join()
        self._look()
        sampled = sum(cpu_s - self._first.get(key, 0.0) for key, cpu_s in self._last.items())
        cpu = max(cpu, sampled)
        machine = _busy_cpu_s() - self._machine0
        self.usage = Usage(wall, cpu, self._peak / MIB, max(0.0, machine - cpu), server)

    def _look(self) -> None:
        """One sample: each process's own CPU so far, and the tree's summed RSS."""
        rss = 0
        for proc in _tree(self._root):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue
            self._last[key] = times.user + times.system
        self._peak = max(self._peak, rss)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._look()


def cpu_split(usage: Usage, count: int, what: str) -> str:
    """CPU milliseconds per operation, in Python processes and in PostgreSQL."""
    python = usage.cpu_s - usage.server_cpu_s
    split = f"{python / count * 1000:.2f} ms in Python"
    if usage.server_cpu_s:
        split += f", {usage.server_cpu_s / count * 1000:.2f} ms in PostgreSQL"
    return f"CPU per {what}: {split}"


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95 and max of durations given in seconds, in milliseconds."""
    values = np.asarray(seconds, dtype=float) * 1000.0
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "max_ms": float(values.max()),
    }
