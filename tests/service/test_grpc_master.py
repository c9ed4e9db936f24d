"""The database-driven master runs its jobs on its gRPC workers when it has some, on the
local pool when it has none; either way the products equal a direct run, and paths outside
MADRONE_MASTER_ROOTS (a guard for network clients) are no obstacle to it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

from madrone import api, team
from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.queue import JobQueue
from madrone.config import Settings
from madrone.executors.grpc.master import serve
from madrone.service import Master, master_runner
from madrone.storage import Storage

T29 = "L2A_T29RKH_20200219_100m"


def stored_pixels(storage: Storage, catalog: Catalog, job_id: str) -> np.ndarray:
    dataset = next(d for d in search_datasets(catalog, DatasetQuery()).items if d.job_id == job_id)
    with rasterio.open(storage.gdal_path(dataset.assets["cog"]["href"])) as cog:
        return cog.read(1)


def test_jobs_run_on_grpc_workers_then_on_the_pool(data_dir: Path, tmp_path: Path, caplog) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    settings = Settings(workers=1, master_roots=str(roots), storage_url=str(tmp_path / "st"))
    server, grpc_service, port = serve("127.0.0.1:0", settings)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    storage = Storage.from_settings(settings)
    master = Master(catalog, storage, settings, runner=master_runner(settings, grpc=grpc_service),
                    work_dir=str(tmp_path / "work"), name="m")  # fmt: skip
    spec = api.build_spec([str(data_dir / T29)], ["ndvi"], tile_size=256)
    direct = api.process([str(data_dir / T29)], ["ndvi"], str(tmp_path / "direct"), workers=1)
    with rasterio.open(direct.products["NDVI"].files["cog"]) as reference:
        expected = reference.read(1)
    workers = [subprocess.Popen([sys.executable, "-m", "madrone.cli", "worker", "--master",
                                 f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
               for _ in range(2)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while grpc_service.worker_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert grpc_service.worker_count() == 2
        job = team.submit(spec, catalog, settings=settings, name="on-workers")
        assert master.run_next()
        assert JobQueue(catalog).get(job.id).status == "succeeded"
        assert [j.state for j in grpc_service.jobs.values()] == ["done"]
        np.testing.assert_array_equal(stored_pixels(storage, catalog, job.id), expected)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    try:
        deadline = time.monotonic() + 30
        while grpc_service.worker_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        job = team.submit(spec, catalog, settings=settings, name="on-the-pool")
        with caplog.at_level("INFO", logger="madrone.service"):
            assert master.run_next()
        assert "no gRPC workers registered" in caplog.text
        assert len(grpc_service.jobs) == 1
        np.testing.assert_array_equal(stored_pixels(storage, catalog, job.id), expected)
    finally:
        server.stop(grace=1).wait()
        grpc_service.stop()
    catalog.dispose()
