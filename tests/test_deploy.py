"""The deployment files: compose.yaml parses with docker-compose and says what matters, the
Dockerfile runs as a user, and the containers' health checks tell healthy from broken."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import grpc
import pytest
import yaml

from tests.support.http import serve_directory

REPO = Path(__file__).resolve().parents[1]
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
SERVICES = {"postgis", "migrate", "master", "worker", "web"}


def compose_config(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``docker-compose config`` of compose.yaml in a project folder holding ``env`` as .env."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose is not installed: run `make test` (apt-get docker-compose)")
    shutil.copy(REPO / "compose.yaml", folder / "compose.yaml")
    if env is not None:
        (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    command = [executable, "--profile", "web", "-f", "compose.yaml", "config"]
    # A clean environment: the shell's variables would win over .env.
    clean = {"PATH": os.environ["PATH"], "HOME": str(folder)}
    return subprocess.run(command, cwd=folder, env=clean, capture_output=True, text=True)


def example_env() -> dict[str, str]:
    """The variables .env.example sets (not the commented-out ones)."""
    lines = (REPO / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if re.match(r"[A-Z_]+=", line)]
    return {key: value for key, value in pairs}


@pytest.fixture
def config(tmp_path: Path) -> dict:
    """The parsed, interpolated compose configuration, from .env.example's values with
    recognisable secrets."""
    env = {**example_env(), "POSTGRES_PASSWORD": "pw-from-env", "MADRONE_TOKEN": "tok-from-env"}
    done = compose_config(tmp_path, env)
    if done.returncode != 0:
        pytest.fail(f"docker-compose config failed:\n{done.stderr}")
    return yaml.safe_load(done.stdout)


def test_compose_file_has_every_service_with_a_real_health_check(config: dict) -> None:
    services = config["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert not service["healthcheck"].get("disable")
    assert "pg_isready -h 127.0.0.1" in services["postgis"]["healthcheck"]["test"][1]
    checks = {name: services[name]["healthcheck"]["test"][2:] for name in SERVICES - {"postgis"}}
    assert checks == {
        "migrate": ["/opt/madrone/healthcheck.py", "db"],
        "master": ["/opt/madrone/healthcheck.py", "master", "127.0.0.1:50051"],
        "worker": ["/opt/madrone/healthcheck.py", "worker", "master:50051"],
        "web": ["/opt/madrone/healthcheck.py", "web", "http://127.0.0.1:8000/api/openapi.json"],
    }


def test_compose_services_start_in_order_with_their_commands(config: dict) -> None:
    services = config["services"]
    assert services["postgis"]["image"] == "postgis/postgis:15-3.4"
    assert services["migrate"]["command"] == ["madrone", "db", "upgrade", "--central"]
    assert services["migrate"]["restart"] == "no"
    master = ["madrone", "master", "--central", "--listen", "0.0.0.0:50051"]
    assert services["master"]["command"] == master
    assert services["worker"]["command"][:4] == ["madrone", "worker", "--master", "master:50051"]
    web = ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "madrone.web:create_app()"]
    assert services["web"]["command"] == web
    assert services["web"]["profiles"] == ["web"]
    conditions = {
        name: {k: v["condition"] for k, v in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions == {
        "postgis": {},
        "migrate": {"postgis": "service_healthy"},
        "master": {"migrate": "service_completed_successfully"},
        "worker": {"master": "service_healthy"},
        "web": {"migrate": "service_completed_successfully"},
    }


def test_workers_scale(config: dict, tmp_path: Path) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] == 2
    env = {**example_env(), "WORKER_REPLICAS": "7"}
    done = compose_config(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["services"]["worker"]["deploy"]["replicas"] == 7


def test_configuration_comes_from_the_environment(config: dict) -> None:
    services = config["services"]
    assert services["postgis"]["environment"]["POSTGRES_PASSWORD"] == "pw-from-env"
    for name in ("migrate", "master", "worker", "web"):
        environment = services[name]["environment"]
        assert environment["MADRONE_TOKEN"] == "tok-from-env"
        assert environment["MADRONE_STORAGE_URL"] == "/data/products"
        assert environment["MADRONE_CENTRAL_DB_URL"].startswith("postgresql+psycopg://")
        assert services[name]["volumes"] == ["data:/data:rw"]


def test_no_secret_is_written_in_compose_yaml() -> None:
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    secret = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|_DB_URL")
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret.search(key):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", str(value)), f"{name}: {key}"
    text = (REPO / "compose.yaml").read_text()
    for value in example_env().values():
        if "change-me" in value:
            assert value not in text


def test_required_secrets_are_enforced(tmp_path: Path) -> None:
    env = {k: v for k, v in example_env().items() if k != "POSTGRES_PASSWORD"}
    done = compose_config(tmp_path, env)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


def test_env_example_documents_every_variable() -> None:
    text = (REPO / "compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    )
    assert used <= documented, used - documented
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT",
                 "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY"):  # fmt: skip
        assert name in documented


def test_dockerfile_runs_as_a_user_with_a_health_check() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") for line in instructions)
    assert instructions[-1].startswith(("CMD", "ENTRYPOINT"))
    text = "\n".join(instructions)
    assert "FROM python:3.11-slim" in text
    assert 'pip install --no-cache-dir "$(ls /wheels/madrone-*.whl)[server]"' in text


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "node_modules", "bench", "madrone-demo", ".env"} <= ignored
    assert not {"src", "deploy", "pyproject.toml", "README.md"} & ignored


# The health checks, run as the containers run them: a separate process, exit code 0 or 1.


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")}
    command = [sys.executable, str(HEALTHCHECK), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("madrone_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answer_once(server: socket.socket, greeting: bytes) -> None:
    connection, _ = server.accept()
    # Read until the client hangs up, so that no reset of ours races its read; the client
    # leaves part of the greeting unread, so its hang-up may be a reset.
    with connection, contextlib.suppress(ConnectionResetError):
        connection.sendall(greeting)
        while connection.recv(1024):
            pass


def test_master_check_needs_a_grpc_server() -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done = run_check("master", f"0.0.0.0:{port}")
    finally:
        server.stop(grace=None).wait()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gRPC server on 127.0.0.1:{port} answers"
    # A port that accepts connections but speaks something else is not a master.
    with socket.create_server(("127.0.0.1", 0)) as other:
        answer = threading.Thread(target=answer_once, args=(other, b"SSH-2.0-OpenSSH_9.2\r\n"))
        answer.start()
        done = run_check("master", f"127.0.0.1:{other.getsockname()[1]}")
        answer.join()
    assert done.returncode == 1
    assert "did not answer as an HTTP/2 (gRPC) server" in done.stderr
    assert run_check("master", f"127.0.0.1:{closed_port()}").returncode == 1


def test_worker_check_needs_a_connection_to_the_master() -> None:
    with socket.create_server(("127.0.0.1", 0)) as master:
        port = master.getsockname()[1]
        assert run_check("worker", f"master:{port}").returncode == 1
        with socket.create_connection(("127.0.0.1", port)):
            done = run_check("worker", f"master:{port}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"connected to the master's port {port}"


def test_auto_check_follows_the_command_of_pid_1(tmp_path: Path) -> None:
    health = healthcheck_module()
    cmdline = tmp_path / "cmdline"
    with socket.create_server(("127.0.0.1", 0)) as master:
        port = master.getsockname()[1]
        args = ["/usr/local/bin/python", "/usr/local/bin/madrone", "worker", "--master"]
        cmdline.write_bytes("\0".join([*args, f"master:{port}", ""]).encode())
        with pytest.raises(health.Unhealthy, match=f"port {port}"):
            health.check_auto(cmdline)
        with socket.create_connection(("127.0.0.1", port)):
            assert health.check_auto(cmdline) == f"connected to the master's port {port}"
    cmdline.write_bytes(b"madrone\0db\0upgrade\0")
    assert "nothing to check" in health.check_auto(cmdline)


def test_web_check_needs_an_http_answer(tmp_path: Path) -> None:
    with serve_directory(str(tmp_path)) as url:
        done = run_check("web", f"{url}/missing-page")
    assert done.returncode == 0, done.stderr  # a 404 is an answer: the server is up
    assert done.stdout.strip().endswith("answered 404")
    assert run_check("web", f"http://127.0.0.1:{closed_port()}/").returncode == 1


def test_db_check_needs_the_database(postgres_url: str) -> None:
    done = run_check("db", postgres_url)
    assert done.returncode == 0, done.stderr
    _, _, rest = postgres_url.partition("@127.0.0.1:")
    port = rest.split("/")[0]
    wrong = postgres_url.replace(rest, f"{port}/no_such_database")
    done = run_check("db", wrong)
    assert done.returncode == 1 and "no_such_database" in done.stderr
    assert run_check("db").returncode == 1  # MADRONE_CENTRAL_DB_URL unset


def test_compose_commands_are_madrone_commands(config: dict) -> None:
    """Every madrone command line of the stack parses (its options exist): click checks the
    options before it acts on the trailing --help."""
    from click.testing import CliRunner

    from madrone.cli.main import cli

    for name in ("migrate", "master", "worker"):
        command = config["services"][name]["command"]
        assert command[0] == "madrone"
        result = CliRunner().invoke(cli, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{name}: {result.output}"
    # The web service runs gunicorn (tests/cli/test_web.py serves the same app with it);
    # `madrone web` serves it without gunicorn with the same address.
    result = CliRunner().invoke(cli, ["web", "--host", "0.0.0.0", "--port", "8000", "--help"])
    assert result.exit_code == 0, f"web: {result.output}"
    bad = CliRunner().invoke(cli, ["master", "--no-such-option", "--help"])
    assert bad.exit_code == 2
