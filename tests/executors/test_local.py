"""The process pool: identical results, shared memory released, worker errors surfaced."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from madrone.api import build_spec
from madrone.engine.plan import plan
from madrone.engine.tile import TileTask, run_tile
from madrone.errors import SourceError
from madrone.executors.local import LocalExecutor
from madrone.sources.base import BandRef

T29 = "L2A_T29RKH_20200219_100m"


def shared_segments() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def test_pool_results_equal_in_process_results(data_dir: Path) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi", "ndsi"], tile_size=256))
    before = shared_segments()
    pooled = {}
    for result in LocalExecutor(2).map_tiles(checked.context, checked.tiles):
        pooled[result.tile] = {k: np.array(v) for k, v in result.arrays.items()}
        assert set(result.stats) == {"NDVI", "NDSI"}
    assert shared_segments() == before, "every shared-memory segment is unlinked"
    assert set(pooled) == set(checked.tiles)
    for tile in checked.tiles[:6]:
        expected = run_tile(TileTask(checked.context, tile))
        for key, array in expected.arrays.items():
            np.testing.assert_array_equal(pooled[tile][key], array)


def test_worker_error_reaches_the_caller_and_leaks_nothing(data_dir: Path, tmp_path: Path) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi"], tile_size=256))
    scene = checked.context.scenes[0]
    broken = tmp_path / "B04.tif"
    broken.write_bytes(b"gone")
    bands = dict(scene.bands)
    bands["B04"] = replace(bands["B04"], ref=BandRef(str(broken)))
    context = replace(checked.context, scenes=(replace(scene, bands=bands),))
    before = shared_segments()
    with pytest.raises(SourceError, match=r"B04\.tif"):
        list(LocalExecutor(2).map_tiles(context, checked.tiles))
    assert shared_segments() == before
