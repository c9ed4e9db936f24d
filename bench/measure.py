"""Run one command and measure its whole process tree: wall, CPU and peak summed RSS.

CPU time comes from two places, and the larger wins:
- ``os.wait4`` on the child: its own time plus that of every descendant it waited for
  (process-pool workers, forked helpers), exact, counted by the kernel;
- psutil sampling: the last CPU time seen for every process of the tree, which also counts
  descendants that were never waited for (daemons, orphans), at most one interval late.
Peak memory is the maximum over samples of the SUM of RSS of all processes in the tree (shared
pages count once per process that maps them, as RSS does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_S = 0.05
MIB = 1024 * 1024


@dataclass
class Measurement:
    """What one run cost, and what it said."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    max_processes: int
    stdout: str
    stderr: str
    cpu_wait4_s: float = 0.0
    cpu_sampled_s: float = 0.0
    samples: int = 0
    timed_out: bool = False


@dataclass
class _TreeSampler:
    """Background thread summing RSS and recording CPU time over a process tree."""

    root_pid: int
    peak_rss: int = 0
    max_processes: int = 0
    samples: int = 0
    cpu_by_pid: dict[tuple[int, float], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = self._procs.setdefault(self.root_pid, psutil.Process(self.root_pid))
            children = root.children(recursive=True)
        except psutil.Error:
            return []
        tree = [root]
        for child in children:
            # Keep one Process object per pid, so cpu_times keys stay stable.
            tree.append(self._procs.setdefault(child.pid, child))
        return tree

    def sample(self) -> None:
        total_rss, alive = 0, 0
        for proc in self._tree():
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            total_rss += rss
            alive += 1
            self.cpu_by_pid[key] = times.user + times.system
        self.peak_rss = max(self.peak_rss, total_rss)
        self.max_processes = max(self.max_processes, alive)
        self.samples += 1

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3600.0,
) -> Measurement:
    """Run ``argv`` to completion, sampling its process tree every ``SAMPLE_S`` seconds."""
    started = time.perf_counter()
    # Its own session, so a timeout or Ctrl-C can end the tool's whole process group.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    sampler = _TreeSampler(proc.pid)
    sampling = threading.Thread(target=sampler.run, daemon=True)
    sampling.start()
    # Drain the pipes in threads so a chatty tool never blocks on a full pipe.
    streams: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda n=name, s=stream: streams.__setitem__(n, s.read()))
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    timed_out = threading.Event()
    timer = threading.Timer(timeout_s, lambda: (timed_out.set(), _kill_group(proc.pid)))
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    except BaseException:
        _kill_group(proc.pid)
        raise
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    sampler.stop()
    sampling.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    cpu_wait4 = rusage.ru_utime + rusage.ru_stime
    cpu_sampled = sum(sampler.cpu_by_pid.values())
    return Measurement(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=max(cpu_wait4, cpu_sampled),
        peak_rss_mib=sampler.peak_rss / MIB,
        max_processes=sampler.max_processes,
        stdout=streams.get("stdout", b"").decode(errors="replace"),
        stderr=streams.get("stderr", b"").decode(errors="replace"),
        cpu_wait4_s=cpu_wait4,
        cpu_sampled_s=cpu_sampled,
        samples=sampler.samples,
        timed_out=timed_out.is_set(),
    )


def _kill_group(pid: int) -> None:
    """Kill the process group the tool runs in (it was started as a session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
