"""Run one command and measure all its processes: wall, CPU and peak summed RSS.

The command runs as the leader of a new session; its processes are every process with that
session id (children, grandchildren, and orphans re-parented to init).
CPU time comes from two places, and the larger wins:
- ``os.wait4`` on the child: its own time plus that of every descendant it waited for
  (process-pool workers, forked helpers), exact, counted by the kernel;
- psutil sampling: the last CPU time seen for every process of the session, which also counts
  descendants that were never waited for (a forkserver and its workers, daemons), at most one
  interval late.
Peak memory is the maximum over samples of the SUM of RSS of those processes (shared pages
count once per process that maps them, as RSS does). ``other_cpu_s`` is the CPU time the rest
of the machine used meanwhile, less this process's own (the sampler's): a busy machine
makes the wall times meaningless.
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
    other_cpu_s: float = 0.0
    processes: list[dict] = field(default_factory=list)
    samples: int = 0
    timed_out: bool = False


@dataclass
class _ProcessRecord:
    command: str
    cpu_s: float = 0.0
    peak_rss: int = 0


@dataclass
class _SessionSampler:
    """Background thread summing RSS and recording CPU time over a session's processes.

    The tool is started as a session leader, so every process it starts (workers, helpers,
    and orphans re-parented to init) keeps its session id, unless it calls setsid itself.
    """

    session_id: int
    peak_rss: int = 0
    max_processes: int = 0
    samples: int = 0
    records: dict[tuple[int, float], _ProcessRecord] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def _members(self) -> list[psutil.Process]:
        members = []
        for pid in psutil.pids():
            try:
                if os.getsid(pid) != self.session_id:
                    continue
                proc = self._procs.get(pid)
                if proc is None or not proc.is_running():
                    proc = self._procs[pid] = psutil.Process(pid)
            except (OSError, psutil.Error):
                continue
            members.append(proc)
        return members

    def sample(self) -> None:
        total_rss, alive = 0, 0
        for proc in self._members():
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    # read every time: a child seen between its fork and its exec still
                    # shows its parent's command line; an exiting one shows none, and
                    # keeps the last it showed
                    command = " ".join(proc.cmdline())[:160]
                    record = self.records.setdefault(key, _ProcessRecord(command or proc.name()))
                    if command:
                        record.command = command
            except psutil.Error:
                continue
            total_rss += rss
            alive += 1
            record.cpu_s = times.user + times.system
            record.peak_rss = max(record.peak_rss, rss)
        self.peak_rss = max(self.peak_rss, total_rss)
        self.max_processes = max(self.max_processes, alive)
        self.samples += 1

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()

    def process_table(self) -> list[dict]:
        """One entry per process seen, the busiest first."""
        rows = [
            {
                "pid": pid,
                "command": r.command,
                "cpu_s": round(r.cpu_s, 2),
                "peak_rss_mib": round(r.peak_rss / MIB, 1),
            }
            for (pid, _), r in self.records.items()
        ]
        return sorted(rows, key=lambda row: -row["cpu_s"])


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    times = psutil.cpu_times()
    # guest time is counted in user time already
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - guest


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3600.0,
) -> Measurement:
    """Run ``argv`` to completion, sampling its process tree every ``SAMPLE_S`` seconds."""
    busy_before, own_before = _busy_cpu_s(), time.process_time()
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
    sampler = _SessionSampler(proc.pid)
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
    busy = _busy_cpu_s() - busy_before - (time.process_time() - own_before)
    sampler.stop()
    sampling.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    cpu_wait4 = rusage.ru_utime + rusage.ru_stime
    cpu_sampled = sum(record.cpu_s for record in sampler.records.values())
    cpu = max(cpu_wait4, cpu_sampled)
    return Measurement(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mib=sampler.peak_rss / MIB,
        max_processes=sampler.max_processes,
        stdout=streams.get("stdout", b"").decode(errors="replace"),
        stderr=streams.get("stderr", b"").decode(errors="replace"),
        cpu_wait4_s=cpu_wait4,
        cpu_sampled_s=cpu_sampled,
        other_cpu_s=max(0.0, busy - cpu),
        processes=sampler.process_table(),
        samples=sampler.samples,
        timed_out=timed_out.is_set(),
    )


def _kill_group(pid: int) -> None:
    """Kill the process group the tool runs in (it was started as a session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
