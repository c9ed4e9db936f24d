"""Open datasets kept by the threads that run tiles: reused within a job, let go after."""

from __future__ import annotations

from pathlib import Path

import pytest

from madrone.api import build_spec
from madrone.engine import tile as tile_module
from madrone.engine.plan import plan
from madrone.engine.tile import TileTask, close_datasets, run_tile
from madrone.sources.gdal import gdal_env, is_virtual

T29 = "L2A_T29RKH_20200219_100m"
T19 = "L1C_T19UDP_20170729_900m"


def first_tile(data_dir: Path, tmp_path: Path, name: str) -> TileTask:
    job = plan(build_spec([str(data_dir / name)], ["ndvi"], str(tmp_path / name)), writes=False)
    return TileTask(job.context, job.tiles[0])


def test_datasets_are_kept_for_a_job_and_let_go_for_the_next(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_datasets()
    first, second = (first_tile(data_dir, tmp_path, name) for name in (T29, T19))
    run_tile(first)
    held = list(tile_module._OPEN.plain.values())
    assert len(held) == 3 and not any(d.closed for d in held)  # red, NIR, scene classes
    run_tile(first)
    assert list(tile_module._OPEN.plain.values()) == held, "reused within the job"
    run_tile(second)  # at most KEEP_OPEN open: the first job's stay
    both = len(tile_module._OPEN.plain)
    assert not any(d.closed for d in held) and both > len(held)
    monkeypatch.setattr(tile_module, "KEEP_OPEN", both - 1)
    run_tile(first)  # another job and more than KEEP_OPEN open: all closed, its own reopened
    assert all(d.closed for d in held)
    assert len(tile_module._OPEN.plain) == len(held)
    close_datasets()


def test_only_virtual_files_get_a_range_cache() -> None:
    assert is_virtual("/vsicurl/https://example.com/b04.tif")
    assert is_virtual("/vsizip//data/S2A.zip/B04.jp2")
    assert not is_virtual("/data/S2A/B04.jp2") and not is_virtual("/vsimem/b04.tif")
    with gdal_env(virtual=False) as env:
        assert "VSI_CACHE" not in env.options
    with gdal_env() as env:
        assert env.options["VSI_CACHE"] == "TRUE"
