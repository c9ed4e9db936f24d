"""The CLI starts light: the engine (rasterio, numpy, pyproj, matplotlib), the catalog
(SQLAlchemy, fsspec, the database drivers), gRPC and the web app load only when a command
that needs them runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CATALOG = ("sqlalchemy", "alembic", "psycopg", "fsspec", "s3fs", "adlfs")
ENGINE = ("rasterio", "numpy", "numexpr", "pyproj", "matplotlib", "PIL", "boto3", "pystac",
          "spyndex", "rio_cogeo", "madrone.api", "madrone.engine.spec", "madrone.grid")  # fmt: skip
SERVICES = ("grpc", "google.protobuf", "distributed", "flask", "werkzeug", "madrone.web")
HEAVY = CATALOG + ENGINE + SERVICES
DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"


def loaded_after(args: list[str]) -> set[str]:
    """The HEAVY modules a fresh interpreter has executed after the CLI parsed ``args``.
    A module the lazy loader registered but never ran does not count."""
    probe = (
        "import sys, types; from click.testing import CliRunner; from madrone.cli.main import cli; "
        f"result = CliRunner().invoke(cli, {args!r}); "
        "assert result.exit_code == 0, result.output; "
        "lazy = lambda m: isinstance(m, types.ModuleType) and "
        "type(m).__name__ == '_LazyModule'; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules and not lazy(sys.modules[m])))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {name for name in done.stdout.strip().split(",") if name}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["process", "--help"], ["mosaic", "--help"], ["submit", "--help"],
     ["serve", "--help"], ["web", "--help"], ["master", "--help"], ["worker", "--help"]],
    ids=lambda args: " ".join(args),
)  # fmt: skip
def test_help_loads_no_engine_catalog_or_service(args: list[str]) -> None:
    assert loaded_after(args) == set()


def test_a_job_over_local_files_loads_no_stac_catalog_or_service(tmp_path) -> None:
    """Every default product, the STAC item included, is made without pystac (0.1 s to
    import), the catalog's drivers or a service."""
    loaded = loaded_after(["process", str(DEMO), "--index", "ndvi", "-o", str(tmp_path)])
    assert {"rasterio", "numpy", "madrone.api"} <= loaded  # the probe sees what a job loads
    # (rasterio imports boto3 itself when it is installed, as the test extras do)
    assert loaded.isdisjoint({"pystac", "matplotlib", "pyproj", *CATALOG, *SERVICES}), loaded
    assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix != ".xml") == [
        ".json",
        ".pgw",
        ".png",
        ".png",
        ".tif",
    ]


def test_the_heavy_modules_are_real_names() -> None:
    """The probe above would pass for a misspelt name: each one is importable here."""
    probe = (
        "import importlib.util; "
        f"missing = [m for m in {HEAVY!r} if importlib.util.find_spec(m) is None]; "
        "print(','.join(missing))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_a_catalog_command_loads_it_when_it_runs(tmp_path) -> None:
    env_db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-m", "madrone.cli", "db", "current", "--db", env_db],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "revision none (empty)" in done.stdout
