"""The master service on the embedded defaults (SQLite, a local storage folder, the local
pool): a queued request runs once, its files land in storage verified, its datasets are
registered with the same pixels as a direct run."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from madrone import api, team
from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.queue import JobQueue
from madrone.config import Settings
from madrone.errors import InputError, UnknownIndexError
from madrone.service import Master
from madrone.storage import Storage

DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(workers=2, lease_seconds=5, max_attempts=2,
                    db_url=f"sqlite:///{tmp_path / 'cat.sqlite'}",
                    storage_url=str(tmp_path / "storage"))  # fmt: skip


@pytest.fixture
def catalog(settings) -> Catalog:
    catalog = Catalog(settings.db_url)
    yield catalog
    catalog.dispose()


def make_master(catalog: Catalog, settings: Settings, tmp_path) -> Master:
    return Master(catalog, Storage.from_settings(settings), settings,
                  work_dir=str(tmp_path / "work"), name="test-master")  # fmt: skip


def test_queued_job_is_run_stored_and_registered(catalog, settings, tmp_path) -> None:
    spec = api.build_spec([str(DEMO)], ["ndvi", "ndsi"])
    job = team.submit(spec, catalog, settings=settings, name="demo", requester="ana")
    master = make_master(catalog, settings, tmp_path)
    assert master.run_next()
    done = JobQueue(catalog).get(job.id)
    assert done.status == "succeeded", done.errors
    assert done.tiles_done == done.tiles_total > 0
    page = search_datasets(catalog, DatasetQuery(sort="name", ascending=True))
    assert [d.index_name for d in page.items] == ["NDSI", "NDVI"]
    ndvi = page.items[1]
    assert (ndvi.owner, ndvi.scope, ndvi.job_id, ndvi.kind) == ("ana", "local", job.id, "index")
    assert done.dataset_id in {d.id for d in page.items}
    assert ndvi.date_start.isoformat() == "2016-01-12T00:00:00+00:00"
    assert ndvi.crs == "EPSG:32618" and ndvi.resolution == 10.0
    assert -75.7 < ndvi.west < ndvi.east < -75.6
    direct = api.process([str(DEMO)], ["ndvi"], str(tmp_path / "direct"), workers=1)
    for key in ("cog", "png", "legend", "json"):
        asset = ndvi.assets[key]
        stored = Path(Storage.from_settings(settings).gdal_path(asset["href"]))
        data = stored.read_bytes()
        assert len(data) == asset["size"]
        assert hashlib.sha256(data).hexdigest() == asset["sha256"]
    cog = Storage.from_settings(settings).gdal_path(ndvi.assets["cog"]["href"])
    with rasterio.open(cog) as a, rasterio.open(direct.products["NDVI"].files["cog"]) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert ndvi.stats["mean"] == pytest.approx(direct.products["NDVI"].stats["mean"])
    assert not list((tmp_path / "work").iterdir())


def test_bad_requests_are_refused_at_submit(catalog, settings) -> None:
    with pytest.raises(UnknownIndexError, match="ndvx"):
        team.submit(api.build_spec([str(DEMO)], ["ndvx"]), catalog, settings=settings)
    with pytest.raises(InputError, match="latitude"):
        team.submit(api.build_mosaic_spec(corners=(24.9, -11.4, 25.0, -11.3)), catalog,
                    settings=settings)  # fmt: skip
    assert JobQueue(catalog).list() == []


def test_cancel_of_a_running_job_registers_nothing(catalog, settings, tmp_path) -> None:
    spec = api.build_spec([str(DEMO)], ["ndvi"], tile_size=64)
    job = team.submit(spec, catalog, settings=settings, name="slow")
    master = make_master(catalog, settings, tmp_path)
    seen = threading.Event()
    real_runner = master.runner

    def runner(spec, progress, cancel):
        def slow_progress(done, total):
            if done == 3:
                JobQueue(catalog).cancel(job.id)
                seen.set()
            if seen.is_set():
                cancel.wait(0.3)
            progress(done, total)

        return real_runner(spec, slow_progress, cancel)

    master.runner = runner
    assert master.run_next()
    assert JobQueue(catalog).get(job.id).status == "cancelled"
    assert search_datasets(catalog, DatasetQuery()).items == []
    storage_root = Path(settings.storage_url)
    assert not storage_root.exists() or not any(p.is_file() for p in storage_root.rglob("*"))
    assert not list((tmp_path / "work").iterdir())


def test_a_failing_job_is_retried_then_fails_with_every_error(catalog, settings, tmp_path):
    spec = api.build_spec([str(DEMO)], ["ndvi"])
    job = team.submit(spec, catalog, settings=settings, name="flaky")
    master = make_master(catalog, settings, tmp_path)

    def runner(spec, progress, cancel):
        raise OSError("disk on fire")

    master.runner = runner
    leftover = tmp_path / "left.tif"
    leftover.write_bytes(b"an attempt killed after its upload")
    storage = Storage.from_settings(settings)
    storage.put_files({"left.tif": str(leftover)}, f"jobs/{job.id}/killedattempt")
    assert master.run_next() and master.run_next() and not master.run_next()
    assert storage.list(f"jobs/{job.id}") == [], "a job failed for good leaves no files"
    failed = JobQueue(catalog).get(job.id)
    assert failed.status == "failed" and failed.attempts == 2
    assert [e["message"] for e in failed.errors] == ["OSError: disk on fire"] * 2


def test_relative_paths_are_queued_absolute(catalog, settings, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(DEMO.parent)
    job = team.submit(api.build_spec([DEMO.name], ["ndvi"]), catalog, settings=settings)
    assert job.spec["sources"][0]["path"] == str(DEMO)
    monkeypatch.chdir(tmp_path)
    assert make_master(catalog, settings, tmp_path).run_next()
    assert JobQueue(catalog).get(job.id).status == "succeeded"


def test_a_job_without_the_stac_item_still_registers(catalog, settings, tmp_path) -> None:
    spec = api.build_spec([str(DEMO)], ["ndvi"], products=("cog",))
    job = team.submit(spec, catalog, settings=settings, name="cog-only")
    assert make_master(catalog, settings, tmp_path).run_next()
    assert JobQueue(catalog).get(job.id).status == "succeeded"
    [dataset] = search_datasets(catalog, DatasetQuery()).items
    assert {"cog", "json"} <= set(dataset.assets)


def test_a_master_that_lost_its_job_removes_only_its_own_files(catalog, settings, tmp_path):
    spec = api.build_spec([str(DEMO)], ["ndvi"])
    job = team.submit(spec, catalog, settings=settings, name="contested")
    rescuer = make_master(catalog, settings, tmp_path / "b")
    stalled = make_master(catalog, settings, tmp_path / "a")
    stalled.name = "stalled"
    real_runner = stalled.runner

    def runner(spec, progress, cancel):
        result = real_runner(spec, progress, cancel)
        # Meanwhile the lease ran out and another master claimed and finished the job.
        JobQueue(catalog).release(job.id, "stalled")
        assert rescuer.run_next()
        return result

    stalled.runner = runner
    assert stalled.run_next()
    done = JobQueue(catalog).get(job.id)
    assert done.status == "succeeded" and done.claimed_by == "test-master"
    [dataset] = search_datasets(catalog, DatasetQuery()).items
    storage = Storage.from_settings(settings)
    for asset in dataset.assets.values():
        assert storage.exists(asset["href"]), "the winner's files are intact"
    winner = {Path(storage.gdal_path(a["href"])).parent for a in dataset.assets.values()}
    stored = {p.parent for p in Path(settings.storage_url).rglob("*") if p.is_file()}
    assert stored == winner, "the stalled master's upload is gone, the winner's is not"


def test_success_sweeps_what_earlier_attempts_left(catalog, settings, tmp_path) -> None:
    job = team.submit(api.build_spec([str(DEMO)], ["ndvi"]), catalog, settings=settings)
    storage = Storage.from_settings(settings)
    leftover = tmp_path / "left.tif"
    leftover.write_bytes(b"an attempt killed after its upload")
    storage.put_files({"left.tif": str(leftover)}, f"jobs/{job.id}/killedattempt")
    assert make_master(catalog, settings, tmp_path).run_next()
    assert storage.list(f"jobs/{job.id}/killedattempt") == []
    [dataset] = search_datasets(catalog, DatasetQuery()).items
    assert all(storage.exists(asset["href"]) for asset in dataset.assets.values())


def test_a_stop_right_after_a_claim_hands_the_job_back(catalog, settings, tmp_path) -> None:
    job = team.submit(api.build_spec([str(DEMO)], ["ndvi"]), catalog, settings=settings)
    master = make_master(catalog, settings, tmp_path)
    claim = master.queue.claim

    def claim_then_stop(name: str):
        claimed = claim(name)
        master.stop()  # SIGTERM arrives between the claim and the run
        return claimed

    master.queue.claim = claim_then_stop
    assert master.run_next()
    handed_back = JobQueue(catalog).get(job.id)
    assert (handed_back.status, handed_back.attempts, handed_back.claimed_by) == ("queued", 0, None)
    assert search_datasets(catalog, DatasetQuery()).items == []
