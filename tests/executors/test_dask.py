"""Dask distributed: a real LocalCluster of 2 worker processes on 127.0.0.1 gives products
byte-identical to the local executor's, through the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from click.testing import CliRunner
from rasterio.env import get_gdal_config

from madrone import mosaic, process
from madrone.cli.main import cli
from madrone.executors.dask import DaskExecutor, batches, workers_reachable
from madrone.grid import Grid, iter_tiles

T29 = "L2A_T29RKH_20200219_100m"
CRS = "EPSG:32633"


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


def products(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "direct", [None, True, False], ids=["probed", "from-workers", "through-scheduler"]
)
def test_dask_products_equal_local_ones(
    data_dir: Path, tmp_path: Path, cluster, direct: bool
) -> None:
    source = str(data_dir / T29)
    process([source], ["ndvi", "ndsi"], str(tmp_path / "local"), tile_size=256, workers=2)
    executor = DaskExecutor(cluster.scheduler_address, tiles_in_flight=3, direct=direct)
    result = process([source], ["ndvi", "ndsi"], str(tmp_path / "dask"), tile_size=256,
                     executor=executor)  # fmt: skip
    assert result.tiles == 25
    local, dask = products(tmp_path / "local"), products(tmp_path / "dask")
    assert len(local) == 12 and local == dask


def test_workers_block_cache_is_capped_per_thread(data_dir: Path, tmp_path: Path) -> None:
    """Left alone, GDAL gives every worker process 5 % of the machine's memory."""
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local, distributed.Client(local) as client:  # fmt: skip
        before = client.run(get_gdal_config, "GDAL_CACHEMAX")
        executor = DaskExecutor(client, gdal_cache_mb=24)
        process([str(data_dir / T29)], ["ndvi"], str(tmp_path), tile_size=256,
                products=["cog"], executor=executor)  # fmt: skip
        after = client.run(get_gdal_config, "GDAL_CACHEMAX")
    (default,) = before.values()
    assert default != 2 * 24 * 2**20  # GDAL's own: 5 % of the usable memory
    assert list(after.values()) == [2 * 24 * 2**20]


def test_workers_are_reached_directly_only_when_they_answer(cluster) -> None:
    with distributed.Client(cluster) as client:
        assert workers_reachable(client)
    # A worker that tells the scheduler an address where nothing listens, as one behind a
    # gateway or a NAT would look from here.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", contact_address="tcp://127.0.0.1:9",
    ) as hidden, distributed.Client(hidden) as client:  # fmt: skip
        assert list(client.scheduler_info()["workers"]) == ["tcp://127.0.0.1:9"]
        assert not workers_reachable(client)


def test_small_tiles_go_in_batches_of_neighbours() -> None:
    small = list(iter_tiles(Grid(CRS, (10, 0, 0, 0, -10, 0), 2048, 2048), 32))
    assert [len(batch) for batch in batches(small, threads=2)] == [512] * 8
    assert [tile for batch in batches(small, threads=2) for tile in batch] == small
    tiny_job = small[:10]  # still at least four tasks per thread
    assert [len(batch) for batch in batches(tiny_job, threads=2)] == [2] * 5
    scene = list(iter_tiles(Grid(CRS, (10, 0, 0, 0, -10, 0), 10980, 10980), 1024))
    assert [len(batch) for batch in batches(scene, threads=2)] == [1] * 121
    assert batches([], threads=2) == []


def test_cli_dask_option(data_dir: Path, tmp_path: Path, cluster) -> None:
    result = CliRunner().invoke(
        cli,
        ["process", str(data_dir / T29), "-o", str(tmp_path), "--dask",
         cluster.scheduler_address, "--products", "cog", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{T29}_ndvi.tif").exists()


def test_unreachable_scheduler_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["process", str(data_dir / T29), "-o", str(tmp_path), "--dask", "tcp://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert "--dask tcp://127.0.0.1:9: cannot reach the scheduler" in result.output
    assert list(tmp_path.iterdir()) == []


def test_dask_median_mosaic_equals_local(data_dir: Path, tmp_path: Path, cluster) -> None:
    request = dict(
        bbox=(15.2, 45.7, 15.8, 46.3),
        source=str(data_dir / "stac_L2A_T33TWL_T33TWM_202308/catalog.json"),
        datetime="2023-08-01/2023-08-31", method="median", resolution=120, tile_size=128,
    )  # fmt: skip
    mosaic(output_dir=str(tmp_path / "local"), workers=2, **request)
    result = mosaic(output_dir=str(tmp_path / "dask"),
                    executor=DaskExecutor(cluster.scheduler_address), **request)  # fmt: skip
    assert result.tiles == 20
    local, dask = products(tmp_path / "local"), products(tmp_path / "dask")
    assert len(local) == 7 and local == dask
