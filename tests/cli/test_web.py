"""The web app from the command line, as real processes on real ports: ``madrone web`` in
the foreground, gunicorn on the app factory as compose.yaml runs it, and ``madrone serve``
with the web app beside its master; SIGTERM stops each with exit 0, a taken port exits 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.processes import stop

BIN = Path(sys.executable).parent
MADRONE = str(BIN / "madrone")
GUNICORN = str(BIN / "gunicorn")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A catalog, storage and home in tmp_path, readable without a token."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")}
    return values | {
        "MADRONE_DB_URL": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        "MADRONE_STORAGE_URL": str(tmp_path / "storage"),
        "MADRONE_PUBLIC_READ": "1",
        "MADRONE_WORKERS": "1",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "HOME": str(tmp_path),  # gunicorn's control socket goes in ~/.gunicorn
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        yield other.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def get_json(url: str, process: subprocess.Popen, timeout: float = 60) -> tuple[int, Any]:
    """The status and JSON body of a GET, retried until the server is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.headers["Content-Type"].startswith("application/")
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError:
            raise
        except OSError:
            if process.poll() is not None:
                _, _, err = stop(process)
                pytest.fail(f"{process.args} exited {process.returncode}:\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer in {timeout} s")
            time.sleep(0.2)


def test_web_serves_the_api_and_stac_until_sigterm(env, tmp_path: Path) -> None:
    port = free_port()
    process = start([MADRONE, "web", "--port", str(port)], env, tmp_path)
    try:
        status, spec = get_json(f"http://127.0.0.1:{port}/api/openapi.json", process)
        assert status == 200 and spec["openapi"].startswith("3.")
        status, landing = get_json(f"http://127.0.0.1:{port}/stac", process)
        assert status == 200 and landing["type"] == "Catalog"
        assert "https://api.stacspec.org/v1.0.0/core" in landing["conformsTo"]
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    assert f"serving http://127.0.0.1:{port}" in err
    assert "madrone web: stopped" in err


def test_web_on_a_taken_port_exits_2_naming_it(env, tmp_path: Path, taken_port: int) -> None:
    done = subprocess.run([MADRONE, "web", "--port", str(taken_port)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1 port {taken_port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_gunicorn_serves_the_app_factory(env, tmp_path: Path) -> None:
    """compose.yaml's web command: gunicorn calls ``create_app()`` with its defaults."""
    port = free_port()
    command = [GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "2",
               "madrone.web:create_app()"]  # fmt: skip
    process = start(command, env, tmp_path)
    try:
        status, landing = get_json(f"http://127.0.0.1:{port}/stac", process)
        assert status == 200 and landing["type"] == "Catalog"
        status, spec = get_json(f"http://127.0.0.1:{port}/api/openapi.json", process)
        assert status == 200 and spec["paths"]
        workers = psutil.Process(process.pid).children()
        assert len(workers) == 2
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    assert not [worker for worker in workers if worker.is_running()]


def test_serve_answers_on_its_web_port_and_stops_cleanly(env, tmp_path: Path) -> None:
    port = free_port()
    process = start([MADRONE, "serve", "--port", str(port)], env, tmp_path)
    try:
        status, landing = get_json(f"http://127.0.0.1:{port}/stac", process)
        assert status == 200 and landing["type"] == "Catalog"
        status, found = get_json(f"http://127.0.0.1:{port}/stac/search", process)
        assert status == 200 and found["features"] == []
        children = psutil.Process(process.pid).children(recursive=True)
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert f"web: http://127.0.0.1:{port}" in out
    assert "stopped" in err
    assert not [child for child in children if child.is_running()]
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again


def test_serve_on_a_taken_port_exits_2_at_once(env, tmp_path: Path, taken_port: int) -> None:
    done = subprocess.run([MADRONE, "serve", "--port", str(taken_port)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"port {taken_port}" in done.stderr
    assert "madrone master" not in done.stderr, "no master starts"


def test_serve_without_web_binds_no_port(env, tmp_path: Path, taken_port: int) -> None:
    process = start([MADRONE, "serve", "--no-web", "--port", str(taken_port)], env, tmp_path)
    for line in process.stderr:
        if "madrone master" in line:
            break
    code, out, err = stop(process)
    assert code == 0, err
    assert "web:" not in out


# madrone serve with SIGTERM sent from inside, once the web app is up and before the master
# serves: the moment the first admin is set up. Not a race with a timer.
SIGTERM_DURING_SETUP = """
import os, signal, sys
from madrone.cli import service, main

def announce(*args):
    os.kill(os.getpid(), signal.SIGTERM)

service.announce_first_admin = announce
sys.argv = ["madrone", "serve", "--port", sys.argv[1]]
main()
"""


def test_sigterm_while_serve_sets_up_stops_it_cleanly(env, tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run([sys.executable, "-c", SIGTERM_DURING_SETUP, str(port)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stopped" in done.stderr and "Traceback" not in done.stderr
    with socket.create_server(("127.0.0.1", port)):
        pass  # the web app's port is free again
