"""The local pools: identical results, shared memory released, worker errors surfaced; a
small job left to madrone's choice of workers runs without a process pool; threads and
processes write the same bytes."""

from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from madrone.api import build_spec, make_executor, run
from madrone.config import Settings
from madrone.engine.plan import plan
from madrone.engine.tile import TileTask, run_tile
from madrone.errors import InputError, SourceError
from madrone.executors.local import IN_PROCESS_PIXELS, LocalExecutor
from madrone.grid import Tile
from madrone.sources.base import BandRef

T29 = "L2A_T29RKH_20200219_100m"
T18 = "L1C_T18SVG_20160112_crop"  # 1933 x 1947 px: four tiles of 1024 px


def shared_segments() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_pool_results_equal_in_process_results(data_dir: Path, pool: str) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi", "ndsi"], tile_size=256))
    before = shared_segments()
    pooled = {}
    for result in LocalExecutor(2, pool=pool).map_tiles(checked.context, checked.tiles):
        pooled[result.tile] = {k: np.array(v) for k, v in result.arrays.items()}
        assert set(result.stats) == {"NDVI", "NDSI"}
    assert shared_segments() == before, "every shared-memory segment is unlinked"
    assert set(pooled) == set(checked.tiles)
    for tile in checked.tiles[:6]:
        expected = run_tile(TileTask(checked.context, tile))
        for key, array in expected.arrays.items():
            np.testing.assert_array_equal(pooled[tile][key], array)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_worker_error_reaches_the_caller_and_leaks_nothing(
    data_dir: Path, tmp_path: Path, pool: str
) -> None:
    checked = plan(build_spec([str(data_dir / T29)], ["ndvi"], tile_size=256))
    scene = checked.context.scenes[0]
    broken = tmp_path / "B04.tif"
    broken.write_bytes(b"gone")
    bands = dict(scene.bands)
    bands["B04"] = replace(bands["B04"], ref=BandRef(str(broken)))
    context = replace(checked.context, scenes=(replace(scene, bands=bands),))
    before = shared_segments()
    with pytest.raises(SourceError, match=r"B04\.tif"):
        list(LocalExecutor(2, pool=pool).map_tiles(context, checked.tiles))
    assert shared_segments() == before
    assert not [t for t in threading.enumerate() if "madrone-tiles" in t.name]


def test_a_small_job_runs_in_process_only_when_the_workers_are_left_to_madrone() -> None:
    tiles = [Tile(0, 0, 1024, 1024), Tile(0, 1024, 1024, 909), Tile(1024, 0, 923, 1024),
             Tile(1024, 1024, 923, 909)]  # fmt: skip
    settings = Settings(workers=0, pool="processes")
    chosen = make_executor(settings)
    assert isinstance(chosen, LocalExecutor)
    assert chosen.in_process_pixels == IN_PROCESS_PIXELS == 4_194_304
    assert chosen.runs_in_process(tiles)
    assert not chosen.runs_in_process([*tiles, Tile(2048, 0, 1, 1024)] * 2)
    assert not make_executor(settings, workers=2).runs_in_process(tiles), "--workers 2 is kept"
    assert not make_executor(Settings(workers=2, pool="processes")).runs_in_process(tiles)
    assert LocalExecutor(2).runs_in_process(tiles[:1])
    assert LocalExecutor(1).runs_in_process(tiles)
    assert not make_executor(Settings(workers=0)).runs_in_process(tiles), "threads start free"


def test_the_pool_is_threads_unless_processes_are_asked_for() -> None:
    assert make_executor(Settings(workers=2)).pool == "threads"
    assert make_executor(Settings.from_env({"MADRONE_POOL": "processes"})).pool == "processes"
    with pytest.raises(InputError, match="MADRONE_POOL='forks' is not a pool"):
        make_executor(Settings(pool="forks"))


def test_every_pool_writes_the_same_bytes(data_dir: Path, tmp_path: Path) -> None:
    """In this thread (a process pool left out by size), two processes, two threads."""
    children: dict[str, set[str]] = {}
    threads: dict[str, set[str]] = {}
    products = {}
    ways = (("alone", None, "processes"), ("processes", 2, "processes"), ("threads", 2, "threads"))
    for key, workers, pool in ways:
        spec = build_spec([str(data_dir / T18)], ["ndvi"], str(tmp_path / key))
        children[key], threads[key] = set(), set()

        def seen(done: int, total: int, key: str = key) -> None:
            children[key].update(p.name for p in multiprocessing.active_children())
            threads[key].update(t.name for t in threading.enumerate() if "tiles" in t.name)

        settings = Settings(workers=0, pool=pool)
        result = run(spec, workers=workers, settings=settings, progress=seen)
        products[key] = result.products["NDVI"].files
    assert children["alone"] == set() and threads["alone"] == set(), "no pool for 3.8 Mpx"
    assert len(children["processes"]) == 2 and threads["processes"] == set()
    assert children["threads"] == set()
    assert threads["threads"] == {"madrone-tiles-0", "madrone-tiles-1"}
    assert not [t for t in threading.enumerate() if "madrone-tiles" in t.name], "all ended"
    assert set(products["alone"]) == {"cog", "png", "legend", "json"}
    for key in ("processes", "threads"):
        assert set(products[key]) == set(products["alone"])
        for kind in ("cog", "png", "legend"):
            expected = Path(products["alone"][kind]).read_bytes()
            assert Path(products[key][kind]).read_bytes() == expected, (key, kind)
