"""A run that dies mid-way (no clean-up, like kill -9) and is started again with the same
spec continues from the tiles already written, and gives the same products as an unbroken
run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from madrone import process
from madrone.products.writer import MAX_PENDING

T29 = "L2A_T29RKH_20200219_100m"
# Runs the job in a child process whose executor dies hard (os._exit, no finally blocks,
# no clean-up) after 60 tiles: a crash at a known point, not a race with a timer.
CRASHING_RUN = """
import os, sys
from madrone.api import build_spec, run
from madrone.executors.local import LocalExecutor

class DiesAfter60(LocalExecutor):
    def map_tiles(self, context, tiles):
        for done, result in enumerate(super().map_tiles(context, tiles), start=1):
            if done > 60:
                os._exit(137)
            yield result

spec = build_spec([sys.argv[1]], ["ndvi"], sys.argv[2], tile_size=64)
run(spec, executor=DiesAfter60(1))
"""


def test_crashed_run_resumes(data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / T29)
    process([source], ["ndvi"], str(tmp_path / "clean"), tile_size=64, workers=1)
    out = tmp_path / "crashed"
    crashed = subprocess.run([sys.executable, "-c", CRASHING_RUN, source, str(out)])
    assert crashed.returncode == 137
    logs = list(out.glob(".*.partial/progress.jsonl"))
    # A tile is logged once the writer's threads have it in the staging files: of the 60
    # tiles handed over, those still waiting for a thread (at most MAX_PENDING) are not.
    assert len(logs) == 1
    logged = len(logs[0].read_text().splitlines())
    assert 60 - MAX_PENDING <= logged <= 60
    assert not list(out.glob("*.tif")), "no product before the run completes"

    seen: list[int] = []
    process([source], ["ndvi"], str(out), tile_size=64, workers=1,
            progress=lambda done, total: seen.append(done))  # fmt: skip
    assert seen == list(range(logged + 1, 325)), "started from the tiles already written"
    clean = {p.name: p.read_bytes() for p in sorted((tmp_path / "clean").iterdir())}
    resumed = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert resumed == clean
