"""Catalog commands: db upgrade/current on SQLite and PostGIS, datasets search, add and
share, users and tokens; the same operations through ``madrone.team``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from madrone import team
from madrone.api import build_spec
from madrone.catalog.db import HEAD, Catalog
from madrone.catalog.models import ApiToken
from madrone.catalog.users import authenticate
from madrone.cli.main import cli

DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
MADRONE = str(Path(sys.executable).with_name("madrone"))


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, str | None]:
    """A local catalog and storage in tmp_path, no central catalog, run from tmp_path."""
    monkeypatch.chdir(tmp_path)
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MADRONE_")}
    return cleared | {
        "MADRONE_DB_URL": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        "MADRONE_STORAGE_URL": str(tmp_path / "storage"),
        "MADRONE_USER": "ana",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }


def invoke(env: dict[str, str | None], *args: str):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def ok(env: dict[str, str | None], *args: str) -> str:
    result = invoke(env, *args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(env: dict[str, str | None], *args: str, code: int = 2) -> str:
    result = invoke(env, *args)
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_db_upgrade_then_current(engine: str, tmp_path: Path, request) -> None:
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")}

    def madrone(*args: str) -> str:
        done = subprocess.run([MADRONE, *args, "--db", url], env=environ, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "revision none (empty), not the newest" in madrone("db", "current")
    assert f"revision none (empty) -> {HEAD}" in madrone("db", "upgrade")
    assert f"revision {HEAD}, the newest" in madrone("db", "current")


def test_which_catalog_is_refused_clearly(env) -> None:
    assert "MADRONE_CENTRAL_DB_URL" in refused(env, "db", "current", "--central")
    assert "MADRONE_CENTRAL_DB_URL" in refused(env, "datasets", "--shared")
    assert "not both" in refused(env, "jobs", "--db", "sqlite:///x.sqlite", "--central")
    assert "not both" in refused(env, "datasets", "--db", "sqlite:///x.sqlite", "--shared")
    assert "mysql" in refused(env, "db", "current", "--db", "mysql://host/db")


def test_users_and_a_token_shown_once(env, tmp_path: Path) -> None:
    assert ok(env, "user", "add", "bob", "--role", "editor").startswith("user bob (editor)")
    ok(env, "user", "add", "cy")
    assert "already exists" in refused(env, "user", "add", "bob")
    assert "--role" in refused(env, "user", "add", "dee", "--role", "boss")
    listed = json.loads(ok(env, "user", "list", "--json"))
    assert [(u["name"], u["role"], u["created_by"]) for u in listed] == [
        ("bob", "editor", "ana"), ("cy", "viewer", "ana")]  # fmt: skip
    assert ok(env, "user", "list").splitlines()[1].split()[:2] == ["bob", "editor"]

    result = CliRunner().invoke(cli, ["token", "create", "bob", "--name", "laptop"], env=env)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("mdr_") and result.stdout == token + "\n", "only the token"
    assert "will not be shown again" in result.stderr and token not in result.stderr
    assert "no user 'zoe'" in refused(env, "token", "create", "zoe")

    catalog = Catalog(env["MADRONE_DB_URL"])
    with catalog.session() as session:
        rows = list(session.scalars(select(ApiToken)))
    assert [(r.name, r.token_hash) for r in rows] == [
        ("laptop", hashlib.sha256(token.encode()).hexdigest())]  # fmt: skip
    assert authenticate(catalog, token).name == "bob"
    catalog.dispose()
    for file in tmp_path.glob("catalog.sqlite*"):
        assert token.encode() not in file.read_bytes(), f"the plain token is in {file.name}"


def write_geojson(path: Path) -> Path:
    feature = {"type": "Feature", "properties": {"name": "field"},
               "geometry": {"type": "Polygon", "coordinates": [[[15.0, 45.5], [15.4, 45.5],
                            [15.4, 45.9], [15.0, 45.9], [15.0, 45.5]]]}}  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def test_add_files_and_points_then_search(env, tmp_path: Path) -> None:
    red = ok(env, "add", str(DEMO / "B04.tif"), "--description", "red band").strip()
    Image.new("RGB", (8, 4), (200, 40, 40)).save(tmp_path / "photo.png")
    photo = ok(env, "add", "photo.png", "--corners", "25.08,-11.42,24.98,-11.32").strip()
    field = ok(env, "add", str(write_geojson(tmp_path / "field.json")), "--name", "field")
    buoy = ok(env, "add", "--point", "37.7,-75.65", "--name", "buoy",
              "--description", "tide gauge").strip()  # fmt: skip
    page = json.loads(ok(env, "datasets", "--json", "--sort", "name", "--asc"))
    assert [(d["name"], d["kind"], d["owner"], d["scope"]) for d in page["datasets"]] == [
        ("B04", "geotiff", "ana", "local"), ("buoy", "point", "ana", "local"),
        ("field", "vector", "ana", "local"), ("photo", "image", "ana", "local")]  # fmt: skip
    assert page["next_cursor"] is None
    assert [d["id"] for d in page["datasets"]] == [red, buoy, field.strip(), photo]
    assert Path(page["datasets"][0]["assets"]["data"]["href"]).is_relative_to(
        tmp_path / "storage")  # fmt: skip

    near_demo = json.loads(ok(env, "datasets", "--json", "--bbox", "-75.7,37.6,-75.6,37.8"))
    assert sorted(d["name"] for d in near_demo["datasets"]) == ["B04", "buoy"]
    found = json.loads(ok(env, "datasets", "--json", "--text", "GAUGE"))
    assert [d["id"] for d in found["datasets"]] == [buoy]
    first = json.loads(ok(env, "datasets", "--json", "--limit", "3", "--sort", "name"))
    rest = json.loads(ok(env, "datasets", "--json", "--limit", "3", "--sort", "name",
                         "--cursor", first["next_cursor"]))  # fmt: skip
    assert [d["name"] for d in first["datasets"] + rest["datasets"]] == [
        "photo", "field", "buoy", "B04"]  # fmt: skip
    assert rest["next_cursor"] is None
    assert json.loads(ok(env, "datasets", "--json", "--from", "2016-01-01"))["datasets"] == []
    table = ok(env, "datasets", "--owner", "ana", "--sort", "name", "--asc").splitlines()
    assert table[0].split() == ["id", "name", "kind", "index", "date", "owner", "scope"]
    assert table[1].split() == [red, "B04", "geotiff", "-", "unknown", "ana", "local"]


def test_add_and_search_refuse_bad_input(env, tmp_path: Path) -> None:
    assert "nothing.tif: no such file" in refused(env, "add", "nothing.tif")
    assert "--name and --description" in refused(env, "add", "--point", "1,2", "--name", "x")
    assert "latitude 95" in refused(env, "add", "--point", "95,2", "--name", "x",
                                    "--description", "y")  # fmt: skip
    assert "--point" in refused(env, "add", "--point", "95", "--name", "x", "--description", "y")
    assert "give a FILE" in refused(env, "add")
    assert "--bbox" in refused(env, "datasets", "--bbox", "1,2,3")
    assert "from 'yesterday'" in refused(env, "datasets", "--from", "yesterday")
    assert "cursor" in refused(env, "datasets", "--cursor", "abc")
    assert "--sort" in refused(env, "datasets", "--sort", "size")
    assert not (tmp_path / "storage").exists() or not list((tmp_path / "storage").rglob("*.*"))


def test_share_to_the_central_catalog(env, tmp_path: Path, postgres_url: str) -> None:
    assert "MADRONE_CENTRAL_DB_URL" in refused(env, "share", "abc")
    env = env | {"MADRONE_CENTRAL_DB_URL": postgres_url,
                 "MADRONE_CENTRAL_STORAGE_URL": str(tmp_path / "central")}  # fmt: skip
    assert f"-> {HEAD}" in ok(env, "db", "upgrade", "--central")
    local_id = ok(env, "add", str(DEMO / "B08.tif"), "--name", "nir").strip()
    shared_id = ok(env, "share", local_id).strip()
    assert ok(env, "share", local_id).strip() == shared_id, "sharing again: the same entry"
    page = json.loads(ok(env, "datasets", "--shared", "--json"))
    [shared] = page["datasets"]
    assert (shared["id"], shared["shared_from"], shared["scope"]) == (shared_id, local_id,
                                                                     "shared")  # fmt: skip
    assert Path(shared["assets"]["data"]["href"]).is_relative_to(tmp_path / "central")
    [local] = json.loads(ok(env, "datasets", "--json"))["datasets"]
    assert (local["id"], local["scope"]) == (local_id, "local")
    assert "no dataset 'nosuch'" in refused(env, "share", "nosuch")
    elsewhere = env | {"MADRONE_USER": "bob"}
    assert "only 'ana'" in refused(elsewhere, "share", local_id, code=3)


def test_the_same_operations_from_python(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'cat.sqlite'}")
    job = team.submit(build_spec([str(DEMO)], ["ndvi"]), catalog, name="py", requester="ana")
    assert [j.id for j in team.list_jobs(catalog, status="queued")] == [job.id]
    assert team.get_job(catalog, job.id).name == "py"
    assert team.cancel_job(catalog, job.id).status == "cancelled"
    point = team.add_point(catalog, 37.7, -75.65, name="buoy", description="gauge", owner="ana")
    query = team.dataset_query(bbox=(-76, 37, -75, 38), date_to="2020-01-01")
    assert team.find_datasets(catalog, query).items == [], "a point of unknown date"
    data = team.page_to_dict(team.find_datasets(catalog, team.dataset_query(text="gauge")))
    assert [d["id"] for d in data["datasets"]] == [point.id]
    team.add_user(catalog, "bob", "admin", created_by="ana")
    made = team.create_token(catalog, "bob", name="ci", created_by="ana")
    assert [u.name for u in team.list_users(catalog)] == ["bob"]
    assert authenticate(catalog, made.token).role == "admin"
    assert team.catalog_revision(catalog) == (HEAD, True)
    catalog.dispose()
