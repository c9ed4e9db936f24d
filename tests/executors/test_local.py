"""The process pool: identical results, shared memory released, worker errors surfaced; a
small job left to madrone's choice of workers runs without one, to the same bytes."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from madrone.api import build_spec, make_executor, run
from madrone.config import Settings
from madrone.engine.plan import plan
from madrone.engine.tile import TileTask, run_tile
from madrone.errors import SourceError
from madrone.executors.local import IN_PROCESS_PIXELS, LocalExecutor
from madrone.grid import Tile
from madrone.sources.base import BandRef

T29 = "L2A_T29RKH_20200219_100m"
T18 = "L1C_T18SVG_20160112_crop"  # 1933 x 1947 px: four tiles of 1024 px


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


def test_a_small_job_runs_in_process_only_when_the_workers_are_left_to_madrone() -> None:
    tiles = [Tile(0, 0, 1024, 1024), Tile(0, 1024, 1024, 909), Tile(1024, 0, 923, 1024),
             Tile(1024, 1024, 923, 909)]  # fmt: skip
    settings = Settings(workers=0)
    chosen = make_executor(settings)
    assert isinstance(chosen, LocalExecutor)
    assert chosen.in_process_pixels == IN_PROCESS_PIXELS == 4_194_304
    assert chosen.runs_in_process(tiles)
    assert not chosen.runs_in_process([*tiles, Tile(2048, 0, 1, 1024)] * 2)
    assert not make_executor(settings, workers=2).runs_in_process(tiles), "--workers 2 is kept"
    assert not make_executor(Settings(workers=2)).runs_in_process(tiles)
    assert LocalExecutor(2).runs_in_process(tiles[:1])
    assert LocalExecutor(1).runs_in_process(tiles)


def test_a_small_job_without_a_pool_writes_the_pooled_bytes(data_dir: Path, tmp_path: Path) -> None:
    children: dict[str, set[str]] = {"default": set(), "pool": set()}
    products = {}
    for key, workers in (("default", None), ("pool", 2)):
        spec = build_spec([str(data_dir / T18)], ["ndvi"], str(tmp_path / key))

        def seen(done: int, total: int, key: str = key) -> None:
            children[key].update(p.name for p in multiprocessing.active_children())

        result = run(spec, workers=workers, settings=Settings(workers=0), progress=seen)
        products[key] = result.products["NDVI"].files
    assert children["default"] == set(), "no pool for a 3.8 Mpx job"
    assert len(children["pool"]) == 2
    assert set(products["default"]) == set(products["pool"]) == {"cog", "png", "legend", "json"}
    for kind in ("cog", "png", "legend"):
        default = Path(products["default"][kind]).read_bytes()
        assert default == Path(products["pool"][kind]).read_bytes(), kind
