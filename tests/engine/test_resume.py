"""A run killed mid-way (kill -9, nothing cleaned up) and started again with the same spec
continues from the tiles already written, and gives the same products as an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from madrone import process

T29 = "L2A_T29RKH_20200219_100m"


def test_killed_run_resumes(data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / T29)
    process([source], ["ndvi"], str(tmp_path / "clean"), tile_size=64, workers=1)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "madrone.cli", "process", source, "-i", "ndvi", "-o",
               str(out), "--tile-size", "64", "--workers", "1", "--quiet"]  # fmt: skip
    run = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    logged = 0
    while time.monotonic() < deadline and run.poll() is None:
        logs = list(out.glob(".*.partial/progress.jsonl"))
        logged = len(logs[0].read_text().splitlines()) if logs else 0
        if logged >= 60:
            break
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert 60 <= logged < 324, "killed mid-job"
    assert not list(out.glob("*.tif")), "no product before the run completes"

    seen: list[int] = []
    process([source], ["ndvi"], str(out), tile_size=64, workers=1,
            progress=lambda done, total: seen.append(done))  # fmt: skip
    assert seen[0] > 60 and len(seen) < 324 - 60, "started from the tiles already written"
    clean = {p.name: p.read_bytes() for p in sorted((tmp_path / "clean").iterdir())}
    resumed = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert resumed == clean
