"""The CLI's remote mode against a real server: the web app served by werkzeug on
127.0.0.1 (a free port), ``submit``, ``jobs`` and ``datasets`` with ``--server`` and a
token; a master runs the submitted job while ``submit --wait`` follows it through the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.users import add_user, create_token
from madrone.cli.main import cli
from madrone.cli.web import WebServer, start_web
from madrone.config import Settings
from madrone.service import Master
from madrone.sources.mosaic import SAMPLE_CORNERS
from madrone.storage import Storage
from madrone.web import create_app

CORNERS = ",".join(str(value) for value in SAMPLE_CORNERS)


@dataclass
class Server:
    url: str
    catalog: Catalog
    settings: Settings
    root: Path
    tokens: dict[str, str]

    def run(self, *args: str, token: str | None = "eve", env: dict | None = None):
        """The CLI in-process, with --server and the user's token (None: no token)."""
        extra = ["--server", self.url] + (["--token", self.tokens[token]] if token else [])
        command, *rest = args
        return CliRunner().invoke(cli, [command, *extra, *rest], env=env or {})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = Settings(workers=1, db_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        storage_url=str(tmp_path / "storage"))  # fmt: skip
    catalog = Catalog(settings.db_url, upgrade=True)
    tokens = {}
    for name, role in (("vic", "viewer"), ("eve", "editor")):
        add_user(catalog, name, role)
        tokens[name] = create_token(catalog, name).token
    web: WebServer = start_web(create_app(settings, catalog=catalog), "127.0.0.1", 0)
    try:
        yield Server(web.url, catalog, settings, tmp_path, tokens)
    finally:
        web.stop()
        catalog.dispose()


def queued(server: Server) -> list[str]:
    return [job["id"] for job in json.loads(server.run("jobs", "--json").output)]


def test_submit_then_list_jobs(server: Server) -> None:
    result = server.run("submit", "--corners", CORNERS, "--index", "ndvi", "--name", "wadi")
    assert result.exit_code == 0, result.output
    job_id = result.output.strip()
    assert len(job_id) == 32
    listed = server.run("jobs", token="vic")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["id", "name", "status", "progress", "attempts", "requester",
                              "created"]  # fmt: skip
    assert row.split()[:6] == [job_id, "wadi", "queued", "0/0", "0/3", "eve"]
    as_json = json.loads(server.run("jobs", "--json", "--status", "queued").output)
    assert [(job["id"], job["spec"]["indices"]) for job in as_json] == [(job_id, ["ndvi"])]
    assert server.run("jobs", "--json", "--status", "failed").output.strip() == "[]"


def test_submit_json_and_the_idempotency_key(server: Server) -> None:
    args = ("submit", "--corners", CORNERS, "--index", "ndsi", "--key", "k1", "--json")
    first = server.run(*args, "--priority", "4")
    assert first.exit_code == 0, first.output
    job = json.loads(first.output)
    assert (job["status"], job["priority"], job["requester"]) == ("queued", 4, "eve")
    again = json.loads(server.run(*args, "--priority", "4").output)
    assert again["id"] == job["id"]
    assert queued(server) == [job["id"]]


def test_errors_show_the_servers_message_and_exit_code(server: Server) -> None:
    bad_index = server.run("submit", "--corners", CORNERS, "--index", "ndvx")
    assert bad_index.exit_code == 2
    assert "madrone: error: " in bad_index.output and "ndvx" in bad_index.output
    viewer = server.run("submit", "--corners", CORNERS, token="vic")
    assert viewer.exit_code == 3
    assert "editor role needed" in viewer.output
    anonymous = server.run("jobs", token=None)
    assert anonymous.exit_code == 3
    assert "API token" in anonymous.output
    paths = server.run("submit", "/etc", "--index", "ndvi")
    assert paths.exit_code == 3
    assert "only an admin" in paths.output
    both = server.run("jobs", "--db", "sqlite:///x.sqlite")
    assert both.exit_code == 2
    assert "--db: not with --server" in both.output
    assert queued(server) == []


def test_an_unreachable_server(server: Server) -> None:
    result = CliRunner().invoke(cli, ["jobs", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot reach the madrone server http://127.0.0.1:9" in result.output
    bad = CliRunner().invoke(cli, ["jobs", "--server", "ftp://host"])
    assert bad.exit_code == 2
    assert "not an http(s) URL" in bad.output


def test_server_and_token_from_the_environment(server: Server) -> None:
    env = {"MADRONE_SERVER": server.url, "MADRONE_API_TOKEN": server.tokens["vic"]}
    result = CliRunner().invoke(cli, ["jobs", "--json"], env=env)
    assert (result.exit_code, result.output.strip()) == (0, "[]")


def test_submit_wait_follows_the_job_a_master_runs(server: Server) -> None:
    storage = Storage.from_settings(server.settings)
    master = Master(server.catalog, storage, server.settings,
                    work_dir=str(server.root / "work"), name="remote")  # fmt: skip
    ran: list[bool] = []

    def run_when_queued() -> None:
        for _ in range(600):
            if master.run_next():
                ran.append(True)
                return
            threading.Event().wait(0.05)

    worker = threading.Thread(target=run_when_queued)
    worker.start()
    try:
        result = server.run("submit", "--corners", CORNERS, "--index", "ndvi", "--name", "wadi",
                            "--wait", "--json")  # fmt: skip
    finally:
        worker.join()
        storage.close()
    assert ran == [True]
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert (job["status"], job["name"]) == ("succeeded", "wadi")

    listed = server.run("datasets", token="vic")
    assert listed.exit_code == 0, listed.output
    (dataset,) = search_datasets(server.catalog, DatasetQuery()).items
    header, row = listed.output.splitlines()
    assert header.split() == ["id", "name", "kind", "index", "date", "owner", "scope"]
    when = dataset.date_start.date().isoformat() if dataset.date_start else "unknown"
    assert row.split() == [dataset.id, *dataset.name.split(), "index", dataset.index_name, when,
                           "eve", "local"]  # fmt: skip
    assert dataset.name.startswith("wadi")
    local = CliRunner().invoke(cli, ["datasets", "--db", server.settings.db_url])
    assert local.output == listed.output
    as_json = json.loads(server.run("datasets", "--json", "--index", "ndvi").output)
    assert [d["id"] for d in as_json["datasets"]] == [dataset.id]
    assert json.loads(server.run("datasets", "--json", "--index", "ndsi").output) == {
        "datasets": [], "next_cursor": None}  # fmt: skip
    shared = server.run("datasets", "--shared")
    assert shared.exit_code == 2
    assert "no central catalog" in shared.output
