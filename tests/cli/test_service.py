"""The job service from the command line, as real processes: ``madrone submit`` queues a
request in a SQLite catalog, ``madrone master --db`` (or ``madrone serve``) runs it into a
storage folder, ``jobs``/``job``/``datasets`` show the outcome; bad requests queue nothing;
SIGTERM hands a running job back and leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from madrone.catalog.db import Catalog
from madrone.catalog.models import FINAL_STATES, Job
from madrone.catalog.queue import JobQueue
from madrone.cli.main import cli
from tests.support.processes import stop

DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
MADRONE = str(Path(sys.executable).with_name("madrone"))
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
SLOW = ("--tile-size", "64", "--resolution", "5")  # 625 small tiles: seconds of work


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A catalog and a storage folder in tmp_path; nothing of the user's is touched."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")}
    return values | {
        "MADRONE_DB_URL": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        "MADRONE_STORAGE_URL": str(tmp_path / "storage"),
        "MADRONE_WORKERS": "2",
        "MADRONE_USER": "ana",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """The demo's band files in a folder whose name states no date."""
    folder = tmp_path / "scene"
    folder.mkdir()
    for band in ("B03", "B04", "B08", "B11"):
        shutil.copy(DEMO / f"{band}.tif", folder / f"{band}.tif")
    return folder


def madrone(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120):
    """Run the real command in ``cwd`` (outside the repository)."""
    return subprocess.run([MADRONE, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([MADRONE, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def master(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    """``madrone master --db URL`` on the test catalog, started in another folder."""
    elsewhere = tmp_path / "master-cwd"
    elsewhere.mkdir()
    process = start(env, elsewhere, "master", "--db", env["MADRONE_DB_URL"])
    yield process
    stop(process)


def queue_of(env: dict[str, str]) -> JobQueue:
    return JobQueue(Catalog(env["MADRONE_DB_URL"]))


def wait_until(env: dict[str, str], job_id: str, states: tuple[str, ...], timeout=120) -> Job:
    queue, deadline = queue_of(env), time.monotonic() + timeout
    while (job := queue.get(job_id)).status not in states:
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.05)
    queue.catalog.dispose()
    return job


def submit(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = madrone(env, cwd, "submit", *args)
    assert done.returncode == 0, done.stderr
    assert JOB_ID.match(done.stdout.strip()), f"only the id on stdout: {done.stdout!r}"
    return done.stdout.strip()


def as_json(done: subprocess.CompletedProcess) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_submitted_jobs_are_run_by_a_master(env, tmp_path: Path, scene: Path) -> None:
    undated = submit(env, tmp_path, "scene/", "--index", "ndvi,ndsi", "--name", "undated")
    dated = submit(env, tmp_path, str(DEMO), "--index", "ndvi", "--name", "demo")
    listed = as_json(madrone(env, tmp_path, "jobs", "--json"))
    assert [(j["id"], j["status"], j["requester"]) for j in listed] == [
        (dated, "queued", "ana"), (undated, "queued", "ana")]  # fmt: skip
    assert listed[1]["spec"]["sources"][0]["path"] == str(scene), "stored absolute"

    elsewhere = tmp_path / "master-cwd"
    elsewhere.mkdir()
    process = start(env, elsewhere, "master", "--db", env["MADRONE_DB_URL"])
    try:
        for job_id in (undated, dated):
            assert wait_until(env, job_id, FINAL_STATES).status == "succeeded"
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    assert "claimed" in err and "succeeded" in err, "log lines on stderr"

    shown = as_json(madrone(env, tmp_path, "job", undated, "--json"))
    assert shown["status"] == "succeeded" and shown["errors"] == []
    assert shown["progress"]["done"] == shown["progress"]["total"]
    page = as_json(madrone(env, tmp_path, "datasets", "--json", "--sort", "name", "--asc"))
    assert page["next_cursor"] is None
    names = [(d["name"], d["index"], d["date_start"]) for d in page["datasets"]]
    assert names == [("demo NDVI", "NDVI", "2016-01-12T00:00:00+00:00"),
                     ("undated NDSI", "NDSI", None), ("undated NDVI", "NDVI", None)]  # fmt: skip
    for dataset in page["datasets"]:
        west, south, east, north = dataset["bbox"]
        assert -75.7 < west < east < -75.6 and 37.65 < south < north < 37.73, dataset["bbox"]
        assert (dataset["owner"], dataset["scope"]) == ("ana", "local")
        cog = dataset["assets"]["cog"]["href"]
        assert Path(cog).is_file() and Path(cog).is_relative_to(tmp_path / "storage")
    table = madrone(env, tmp_path, "datasets", "--index", "ndvi", "--sort", "name").stdout
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["id", "name", "kind", "index", "date", "owner", "scope"]
    assert [row[-4:] for row in rows[1:]] == [["NDVI", "unknown", "ana", "local"],
                                              ["NDVI", "2016-01-12", "ana", "local"]]  # fmt: skip


def test_submit_wait_follows_the_job_to_its_end(env, tmp_path: Path, master) -> None:
    done = madrone(env, tmp_path, "submit", str(DEMO), "--index", "ndvi", "--wait", *SLOW)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert JOB_ID.match(job_id)
    assert f"job {job_id}: running" in done.stderr
    ticks = re.findall(rf"job {job_id}: (\d+)/(\d+) tiles", done.stderr)
    assert ticks and all(total == "625" for _, total in ticks), done.stderr
    assert done.stderr.rstrip().endswith(f"job {job_id}: succeeded")


def test_submit_wait_exits_1_with_the_last_error(env, tmp_path: Path, scene, master) -> None:
    data = (scene / "B04.tif").read_bytes()
    (scene / "B04.tif").write_bytes(data[: len(data) // 2])  # the header reads, pixels do not
    done = madrone(env, tmp_path, "submit", "scene", "--wait", "--json")
    assert done.returncode == 1, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "failed" and len(job["errors"]) == 1
    assert "B04.tif" in job["errors"][0]["message"]
    assert f"madrone: job {job['id']} failed: " in done.stderr and "B04.tif" in done.stderr
    text = madrone(env, tmp_path, "job", job["id"]).stdout
    assert re.search(r"attempt 1 on \S+ at \S+: .*B04\.tif", text), text


def invoke(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    "args, named",
    [
        (("DEMO", "--index", "ndvx"), "'ndvx'"),
        (("--corners", "24.9,-11.4,25.0,-11.3"), "latitude 24.9"),
        (("scene_missing/",), "scene_missing"),
        (("DEMO", "--source", "x.tif"), "--source"),
        (("DEMO", "--corners", "25.0,-11.4,24.9,-11.3"), "not both"),
        ((), "give SOURCES"),
    ],
)
def test_bad_requests_exit_2_and_queue_nothing(env, tmp_path, monkeypatch, args, named) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(env, "submit", *[str(DEMO) if a == "DEMO" else a for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("madrone: error:") and named in result.output
    assert json.loads(invoke(env, "jobs", "--json").output) == []


def test_cancel_a_queued_job(env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = invoke(env, "submit", str(DEMO), "--key", "k1", "--priority", "5", "--json")
    job = json.loads(first.output)
    assert (job["status"], job["priority"], job["idempotency_key"]) == ("queued", 5, "k1")
    again = invoke(env, "submit", str(DEMO), "--key", "k1")
    assert again.output.strip() == job["id"], "the same key gives the same job"
    cancelled = invoke(env, "cancel", job["id"])
    assert cancelled.exit_code == 0 and cancelled.output == f"job {job['id']}: cancelled\n"
    twice = invoke(env, "cancel", job["id"])
    assert twice.exit_code == 2 and "already cancelled" in twice.output
    unknown = invoke(env, "cancel", "nosuchjob")
    assert unknown.exit_code == 2 and "no job 'nosuchjob'" in unknown.output
    table = invoke(env, "jobs", "--status", "cancelled").output.splitlines()
    assert table[0].split() == ["id", "name", "status", "progress", "attempts", "requester",
                                "created"]  # fmt: skip
    assert table[1].split()[:6] == [job["id"], "L1C_T18SVG_20160112_demo", "cancelled", "0/0",
                                    "0/3", "ana"]  # fmt: skip
    assert invoke(env, "jobs", "--status", "queued").output.splitlines()[1:] == []


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def left_alive(processes: list[psutil.Process], grace: float = 10) -> list[int]:
    """The processes still running (not zombies) after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for process in processes:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_sigterm_hands_the_running_job_back(env, tmp_path: Path) -> None:
    env = {**env, "MADRONE_POOL": "processes"}  # the pool's processes must end with it
    job_id = submit(env, tmp_path, str(DEMO), "--index", "ndvi,ndsi", *SLOW)
    process = start(env, tmp_path, "master", "--db", env["MADRONE_DB_URL"])
    try:
        wait_until(env, job_id, ("running", *FINAL_STATES))
        deadline = time.monotonic() + 30
        while len(children := descendants(process.pid)) < 3:  # the pool is up
            assert time.monotonic() < deadline, "no pool processes"
            time.sleep(0.05)
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    assert "handed back" in err
    job = queue_of(env).get(job_id)
    assert (job.status, job.attempts, job.errors, job.claimed_by) == ("queued", 0, [], None)
    assert left_alive(children) == [], "the pool's processes end with the master"
    assert not list((tmp_path / "storage").rglob("*.tif")), "nothing stored"


def test_serve_runs_a_submitted_job_on_the_defaults(env, tmp_path: Path) -> None:
    env = {k: v for k, v in env.items() if k not in ("MADRONE_DB_URL", "MADRONE_STORAGE_URL")}
    data = tmp_path / "xdg" / "madrone"
    process = start(env, tmp_path, "serve", "--no-web")
    try:
        job_id = submit(env, tmp_path, str(DEMO), "--index", "ndvi", "--name", "served")
        env_db = env | {"MADRONE_DB_URL": f"sqlite:///{data / 'catalog.sqlite'}"}
        assert wait_until(env_db, job_id, FINAL_STATES).status == "succeeded"
        children = descendants(process.pid)
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert f"catalog: sqlite:///{data / 'catalog.sqlite'}" in out
    assert f"storage: {data / 'storage'}" in out and "madrone submit" in out
    assert left_alive(children) == []
    assert len(list((data / "storage").rglob("served_ndvi.tif"))) == 1


def test_master_with_listen_runs_jobs_on_grpc_workers(env, tmp_path: Path) -> None:
    master = start(env, tmp_path, "master", "--db", env["MADRONE_DB_URL"], "--listen",
                   "127.0.0.1:0")  # fmt: skip
    worker = None
    try:
        line = master.stderr.readline()
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert port, line
        worker = start(env, tmp_path, "worker", "--master", f"127.0.0.1:{port[1]}")
        deadline = time.monotonic() + 30
        while "joined" not in (text := master.stderr.readline()):
            assert time.monotonic() < deadline and text, "the worker never joined"
        done = madrone(env, tmp_path, "submit", str(DEMO), "--index", "ndvi", "--wait")
        assert done.returncode == 0, done.stderr
    finally:
        worker_code = stop(worker)[0] if worker else None
        code, _, err = stop(master)
    assert (worker_code, code) == (0, 0), err
    assert "succeeded" in err and "local pool" not in err, "run on the gRPC worker"


def test_interrupted_wait_exits_130_and_the_job_goes_on(env, tmp_path: Path) -> None:
    process = start(env, tmp_path, "submit", str(DEMO), "--wait")
    job_id = process.stdout.readline().strip()
    assert JOB_ID.match(job_id)
    assert process.stderr.readline() == f"job {job_id}: queued\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"stopped following job {job_id}; it goes on" in err
    assert queue_of(env).get(job_id).status == "queued"


def test_submit_takes_process_and_mosaic_options(env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    area = invoke(env, "submit", "--corners", "25.08,-11.42,24.98,-11.32", "--index", "ndsi",
                  "--method", "median", "--json")  # fmt: skip
    job = json.loads(area.output)
    spec = job["spec"]
    assert (job["kind"], spec["indices"], spec["method"], spec["resolution"]) == (
        "mosaic", ["ndsi"], "median", 10.0)  # fmt: skip
    assert spec["area"] is not None and "count" in spec["products"]
    scene = invoke(env, "submit", str(DEMO), "--bbox", "-75.7,37.66,-75.6,37.74",
                   "--resolution", "20", "--products", "cog", "--json")  # fmt: skip
    job = json.loads(scene.output)
    spec = job["spec"]
    assert (job["kind"], spec["resolution"], spec["products"], spec["area"]) == (
        "process", 20.0, ["cog"], None)  # fmt: skip
    assert spec["bbox"] == [-75.7, 37.66, -75.6, 37.74]
    plain = json.loads(invoke(env, "submit", str(DEMO), "--json").output)["spec"]
    assert plain["resolution"] is None and "count" not in plain["products"]
