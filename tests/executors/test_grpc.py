"""gRPC master and workers as real processes on 127.0.0.1: identical products, a worker
killed mid-job, a tile that always fails, a wrong token."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from madrone import mosaic, process
from madrone.api import build_mosaic_spec, build_spec
from madrone.errors import InputError, ProcessingError
from madrone.executors.grpc.client import submit
from madrone.executors.grpc.master import check_paths
from madrone.products.writer import MAX_PENDING
from madrone.sources.spec import SourceSpec

T29 = "L2A_T29RKH_20200219_100m"
COMMAND = [sys.executable, "-m", "madrone.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Workers(list):
    """The worker processes, and the master's log lines."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.master_log: list[str] = []


@contextmanager
def grpc_cluster(
    roots: list[Path], workers: int = 2, token: str = ""
) -> Iterator[tuple[str, list]]:
    """A master serving ``roots`` and workers, as separate processes; stopped by PID."""
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "MADRONE_TOKEN": token,
           "MADRONE_MASTER_ROOTS": os.pathsep.join(str(root) for root in roots)}  # fmt: skip
    master = subprocess.Popen([*COMMAND, "master", "--listen", address], env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    started = [master]
    drain = None
    try:
        line = master.stderr.readline()
        assert "listening" in line, line
        children = Workers(
            subprocess.Popen(
                [*COMMAND, "worker", "--master", address], env=env, stderr=subprocess.DEVNULL
            )
            for _ in range(workers)
        )
        started += children
        # Drain the master's log so its pipe never fills; tests read what it said.
        drain = threading.Thread(target=children.master_log.extend, args=(master.stderr,))
        drain.start()
        # Every worker has joined before a test submits, so a fault a test injects into
        # one worker always hits a worker that holds tiles (a slow start-up under load
        # could otherwise leave it out of the job entirely).
        deadline = time.monotonic() + 60
        while sum(" joined " in line for line in children.master_log) < workers:
            assert time.monotonic() < deadline, "workers did not join the master"
            time.sleep(0.05)
        yield address, children
    finally:
        for child in started:
            if child.poll() is None:
                child.terminate()
        for child in started:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if drain is not None:
            drain.join(timeout=20)
        master.stderr.close()


def products(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_master_and_two_workers_equal_local(data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / T29)
    process([source], ["ndvi", "ndsi"], str(tmp_path / "local"), tile_size=256, workers=1)
    spec = build_spec([source], ["ndvi", "ndsi"], str(tmp_path / "grpc"), tile_size=256)
    seen: list[tuple[int, int]] = []
    with grpc_cluster([data_dir, tmp_path]) as (address, _):
        summary = submit(spec, address, progress=lambda done, total: seen.append((done, total)))
    assert summary["products"]["NDVI"]["stats"]["valid_pixels"] > 800_000
    assert seen[-1] == (25, 25)
    assert products(tmp_path / "local") == products(tmp_path / "grpc")


def test_mosaic_search_runs_once_on_the_master_and_equals_local(
    data_dir: Path, tmp_path: Path
) -> None:
    request = dict(
        bbox=(15.2, 45.7, 15.8, 46.3),
        source=str(data_dir / "stac_L2A_T33TWL_T33TWM_202308/catalog.json"),
        datetime="2023-08-01/2023-08-31", method="max-ndvi", resolution=120, tile_size=128,
    )  # fmt: skip
    mosaic(output_dir=str(tmp_path / "local"), workers=1, **request)
    spec = build_mosaic_spec(output_dir=str(tmp_path / "grpc"), **request)
    assert spec.sources == () and spec.search is not None  # the master searches
    with grpc_cluster([data_dir, tmp_path]) as (address, _):
        summary = submit(spec, address)
    assert summary["products"]["NDVI"]["stats"]["valid_pixels"] > 200_000
    local, remote = products(tmp_path / "local"), products(tmp_path / "grpc")
    assert len(local) == 7 and local == remote


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stalled"])
def test_worker_lost_mid_job(data_dir: Path, tmp_path: Path, fault: signal.Signals) -> None:
    """A worker killed (-9) or stalled (SIGSTOP) mid-job: its tiles are leased again after
    the heartbeat timeout and the job completes with the same products."""
    source = str(data_dir / T29)
    process([source], ["ndvi"], str(tmp_path / "local"), tile_size=64, workers=1,
            products=["cog"])  # fmt: skip
    spec = build_spec([source], ["ndvi"], str(tmp_path / "grpc"), tile_size=64, products=["cog"])
    with grpc_cluster([data_dir, tmp_path]) as (address, workers):
        hit = []

        def fault_one(done: int, total: int) -> None:
            if done >= 20 and not hit:
                os.kill(workers[0].pid, fault)
                hit.append(done)

        started = time.monotonic()
        try:
            submit(spec, address, progress=fault_one)
        finally:
            if fault == signal.SIGSTOP:
                os.kill(workers[0].pid, signal.SIGCONT)
    assert hit and hit[0] < 324, "the job was still running when the worker was lost"
    assert time.monotonic() - started < 60
    log = "".join(workers.master_log)
    # The lost worker's tiles went to the other one: re-queued once its silence passed the
    # heartbeat timeout, or sooner, leased again speculatively as stragglers.
    assert ("re-queued r" in log) or ("(speculative)" in log), log
    assert products(tmp_path / "local") == products(tmp_path / "grpc")


def test_a_tile_that_always_fails_fails_the_job(data_dir: Path, tmp_path: Path) -> None:
    scene = tmp_path / "T29RKH_20200219"
    scene.mkdir()
    for band in ("B04", "B08"):
        shutil.copy(data_dir / T29 / f"{band}.tif", scene / f"{band}.tif")
    data = (scene / "B04.tif").read_bytes()
    (scene / "B04.tif").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    spec = build_spec([str(scene)], ["ndvi"], str(tmp_path / "out"), tile_size=512)
    with (
        grpc_cluster([data_dir, tmp_path]) as (address, _),
        pytest.raises(ProcessingError) as caught,
    ):
        submit(spec, address)
    message = str(caught.value)
    assert "failed" in message and "B04.tif" in message and "corrupt" in message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_wrong_token_is_refused(data_dir: Path, tmp_path: Path) -> None:
    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path))
    with grpc_cluster([data_dir, tmp_path], workers=0, token="s3cret") as (address, _):
        with pytest.raises(InputError, match="token refused"):
            submit(spec, address, token="wrong")
        with pytest.raises(InputError, match="token refused"):
            submit(spec, address)


def test_malformed_results_are_refused_and_the_master_keeps_serving(
    data_dir: Path, tmp_path: Path
) -> None:
    import threading

    import grpc

    from madrone.executors.grpc import madrone_pb2 as pb
    from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc
    from madrone.executors.grpc.wire import MAX_MESSAGE_BYTES

    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path), products=["cog"])
    with grpc_cluster([data_dir, tmp_path], workers=0) as (address, _):
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(summary=submit(spec, address)))
        runner.start()
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.MasterStub(channel)
            stub.Register(pb.Hello(worker="rogue", capacity=1))
            lease = None
            for _ in range(50):
                reply = stub.Lease(pb.LeaseRequest(worker="rogue", slots=1))
                if reply.leases:
                    lease = reply.leases[0]
                    break
                time.sleep(0.1)
            assert lease is not None
            wrong_shape = pb.ResultChunk(job=lease.job, task=lease.task, lease=lease.lease,
                                         worker="rogue", name="NDVI", height=3, width=3,
                                         data=b"x" * 36, last=True, meta_json="{}")  # fmt: skip
            ack = stub.Complete(iter([wrong_shape]))
            assert not ack.accepted and "is not its shape" in ack.reason
            oversized = pb.Failure(job=lease.job, task=lease.task, lease=lease.lease,
                                   worker="rogue", error="x" * (MAX_MESSAGE_BYTES + 1))  # fmt: skip
            with pytest.raises(grpc.RpcError) as caught:
                stub.Fail(oversized)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            stub.Leave(pb.Goodbye(worker="rogue"))
        with grpc_worker(address):
            runner.join(timeout=120)
    assert outcome["summary"]["products"]["NDVI"]["stats"]["valid_pixels"] > 800_000


@contextmanager
def grpc_worker(address: str) -> Iterator[subprocess.Popen]:
    worker = subprocess.Popen([*COMMAND, "worker", "--master", address],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_paths_outside_the_masters_roots_are_refused(data_dir: Path, tmp_path: Path) -> None:
    inside = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path / "out"))
    elsewhere = build_spec([str(data_dir / T29)], ["ndvi"], "/etc/madrone-out")
    outside_source = pytest.raises(InputError, match=r"source .*T29RKH.* is outside the folders")
    with grpc_cluster([tmp_path], workers=0) as (address, _), outside_source:
        submit(inside, address)
    outside_output = pytest.raises(InputError, match="output folder /etc/madrone-out is outside")
    with grpc_cluster([data_dir], workers=0) as (address, _), outside_output:
        submit(elsewhere, address)


def test_catalogs_and_item_assets_outside_the_roots_are_refused(
    data_dir: Path, tmp_path: Path
) -> None:
    catalog = str(data_dir / "stac_L2A_T33TWL_T33TWM_202308/catalog.json")
    search = build_mosaic_spec(bbox=(15.2, 45.7, 15.8, 46.3), source=catalog,
                               output_dir=str(tmp_path))  # fmt: skip
    check_paths(search, [str(data_dir), str(tmp_path)])
    with pytest.raises(InputError, match=r"catalog .*catalog\.json is outside the folders"):
        check_paths(search, [str(tmp_path)])
    item = {"id": "x", "assets": {"red": {"href": "/etc/shadow"}, "web": {"href": "https://a/b"}}}
    smuggled = replace(search, sources=(SourceSpec(item=item),))
    with pytest.raises(InputError, match="STAC asset /etc/shadow is outside"):
        check_paths(smuggled, [str(data_dir), str(tmp_path)])


def test_restarted_master_resumes_from_written_tiles(data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / T29)
    process([source], ["ndvi"], str(tmp_path / "local"), tile_size=32, workers=1,
            products=["cog"])  # fmt: skip
    spec = build_spec([source], ["ndvi"], str(tmp_path / "grpc"), tile_size=32, products=["cog"])
    port = free_port()
    env = {**os.environ, "MADRONE_MASTER_ROOTS": os.pathsep.join([str(data_dir), str(tmp_path)])}
    address = f"127.0.0.1:{port}"

    def start_master() -> subprocess.Popen:
        master = subprocess.Popen([*COMMAND, "master", "--listen", address], env=env,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert "listening" in master.stderr.readline()
        return master

    master = start_master()
    with grpc_worker(address):
        progress: list[int] = []

        def kill_master(done: int, total: int) -> None:
            progress.append(done)
            if done >= 100 and master.poll() is None:
                master.kill()

        with pytest.raises(InputError, match="UNAVAILABLE"):
            submit(spec, address, progress=kill_master)
        master.wait()
        master.stderr.close()
        first_run = max(progress)
        master = start_master()
        try:
            resumed: list[int] = []
            submit(spec, address, progress=lambda done, total: resumed.append(done))
        finally:
            master.terminate()
            master.wait(timeout=20)
            master.stderr.close()
    assert 100 <= first_run < 1296
    # Tiles are reported done as the writer takes them and logged once in its files: at most
    # MAX_PENDING behind.
    assert resumed[0] > 100 - MAX_PENDING, "the restarted master started from the tiles written"
    assert products(tmp_path / "local") == products(tmp_path / "grpc")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no network, no openssl)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "madrone test master")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "master.pem", folder / "master.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_and_token_together(data_dir: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "MADRONE_TOKEN": "t0ken", "MADRONE_TLS_CERT": str(cert),
           "MADRONE_TLS_KEY": str(key), "MADRONE_TLS_CA": str(cert),
           "MADRONE_MASTER_ROOTS": os.pathsep.join([str(data_dir), str(tmp_path)])}  # fmt: skip
    master = subprocess.Popen([*COMMAND, "master", "--listen", address], env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    worker = None
    try:
        assert "listening" in master.stderr.readline()
        worker = subprocess.Popen([*COMMAND, "worker", "--master", address], env=env,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path / "out"),
                          products=["cog"])  # fmt: skip
        summary = submit(spec, address, token="t0ken", ca=cert.read_bytes())
        assert summary["products"]["NDVI"]["stats"]["valid_pixels"] > 800_000
        with pytest.raises(InputError, match="UNAVAILABLE"):
            submit(spec, address, token="t0ken")  # plaintext to a TLS master
    finally:
        for child in (worker, master):
            if child is not None:
                child.terminate()
                child.wait(timeout=20)
        master.stderr.close()


def test_sigterm_worker_hands_back_and_exits(data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / T29)
    spec = build_spec([source], ["ndvi"], str(tmp_path / "out"), tile_size=64, products=["cog"])
    with grpc_cluster([data_dir, tmp_path]) as (address, workers):
        stopped = []

        def stop_one(done: int, total: int) -> None:
            if done >= 20 and not stopped:
                workers[0].send_signal(signal.SIGTERM)
                stopped.append(time.monotonic())

        submit(spec, address, progress=stop_one)
        assert workers[0].wait(timeout=30) == 0
    assert stopped


@pytest.mark.parametrize(("workers", "concurrency"), [(2, 1), (1, 2)])
def test_cluster_command_runs_a_job(
    data_dir: Path, tmp_path: Path, workers: int, concurrency: int
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "MADRONE_MASTER_ROOTS": os.pathsep.join([str(data_dir), str(tmp_path)])}
    cluster = subprocess.Popen([*COMMAND, "cluster", "--workers", str(workers), "--concurrency",
                                str(concurrency), "--listen", address],
                               env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path), products=["cog"])
        deadline = time.monotonic() + 60  # the master needs a moment to start (more under load)
        while True:
            try:
                summary = submit(spec, address)
                break
            except InputError:
                if time.monotonic() > deadline:
                    pytest.fail(f"no master on {address} after 60 s")
                time.sleep(0.2)
        assert summary["products"]["NDVI"]["files"]["cog"].endswith("_ndvi.tif")
        children = [" ".join(c.cmdline()) for c in psutil.Process(cluster.pid).children()]
        started = [c for c in children if " worker " in c]
        assert len(started) == workers, children
        assert all(c.endswith(f"--concurrency {concurrency}") for c in started), started
    finally:
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 0


def submitting(spec, address: str, **options) -> tuple[threading.Thread, dict]:
    """``submit`` in a thread of its own; its error's text and class land in the dict."""
    from madrone.errors import MadroneError

    outcome: dict = {}

    def run() -> None:
        try:
            submit(spec, address, **options)
        except MadroneError as error:
            outcome["error"], outcome["class"] = str(error), type(error).__name__

    runner = threading.Thread(target=run)
    runner.start()
    return runner, outcome


def test_cancel_ends_a_running_job(data_dir: Path, tmp_path: Path) -> None:
    import grpc

    from madrone.executors.grpc import madrone_pb2 as pb
    from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc

    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path / "out"), products=["cog"])
    with grpc_cluster([data_dir, tmp_path], workers=0) as (address, _):
        runner, outcome = submitting(spec, address)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.MasterStub(channel)
            job = lease_a_tile(stub)
            assert stub.Cancel(pb.CancelRequest(job=job)).accepted
            assert not stub.Cancel(pb.CancelRequest(job=job)).accepted
        runner.join(timeout=30)
    assert "job cancelled" in outcome["error"]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def lease_a_tile(stub) -> str:
    """Join the master as a worker and lease one tile of its running job: return the job."""
    from madrone.executors.grpc import madrone_pb2 as pb

    stub.Register(pb.Hello(worker="probe", capacity=1))
    for _ in range(100):
        reply = stub.Lease(pb.LeaseRequest(worker="probe", slots=1))
        if reply.leases:
            return reply.leases[0].job
        time.sleep(0.1)
    pytest.fail("the job never ran on the master")


def test_a_set_cancel_event_cancels_the_job_on_the_master(data_dir: Path, tmp_path: Path) -> None:
    import grpc

    from madrone.executors.grpc import madrone_pb2 as pb
    from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc

    spec = build_spec([str(data_dir / T29)], ["ndvi"], str(tmp_path / "out"), products=["cog"])
    cancel = threading.Event()
    with grpc_cluster([data_dir, tmp_path], workers=0) as (address, _):
        runner, outcome = submitting(spec, address, cancel=cancel)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.MasterStub(channel)
            job = lease_a_tile(stub)  # the job runs and waits for this tile: no event comes
            cancel.set()
            runner.join(timeout=10)
            assert not runner.is_alive(), "the client still waits for the master"
            assert outcome["class"] == "RunCancelled"
            assert outcome["error"] == f"master {address}: job {job} cancelled"
            refused = stub.Cancel(pb.CancelRequest(job=job))
            assert not refused.accepted and refused.reason == f"no running job {job}"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_sigterm_to_a_submitting_client_cancels_its_job(data_dir: Path, tmp_path: Path) -> None:
    import grpc

    from madrone.executors.grpc import madrone_pb2 as pb
    from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc

    out = tmp_path / "out"
    with grpc_cluster([data_dir, tmp_path], workers=0) as (address, _):
        client = subprocess.Popen(
            [*COMMAND, "process", str(data_dir / T29), "-o", str(out), "-i", "ndvi",
             "--master", address, "--quiet"], stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.MasterStub(channel)
            job = lease_a_tile(stub)
            client.send_signal(signal.SIGTERM)
            assert client.wait(timeout=20) == 143
            assert "madrone: stopped by SIGTERM" in client.stderr.read()
            client.stderr.close()
            refused = stub.Cancel(pb.CancelRequest(job=job))
            assert not refused.accepted, "the client's job still ran on the master"
    assert not out.exists() or list(out.iterdir()) == []
