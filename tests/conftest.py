"""Shared fixtures: the real Sentinel-2 test data in ../shared/data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, postgres_cluster

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data folder of the run's own (``XDG_DATA_HOME``): the default catalog, storage and
    web key of anything a test starts land there, never in the real user's."""
    before = os.environ.get("XDG_DATA_HOME")
    home = tmp_path_factory.mktemp("xdg-data")
    os.environ["XDG_DATA_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = before


def sentinel2_dir() -> Path:
    """Where the real Sentinel-2 test data is: ``MADRONE_TEST_DATA``, else ../shared."""
    default = REPO_ROOT.parent / "shared" / "data" / "sentinel2"
    return Path(os.environ.get("MADRONE_TEST_DATA", default))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Sentinel-2 data folder; a missing folder fails the run, it never skips."""
    path = sentinel2_dir()
    if not path.is_dir():
        pytest.fail(
            f"Sentinel-2 test data not found at {path}: set MADRONE_TEST_DATA to the folder "
            "holding L1C_T32UPC_tiny_offsets/, SAFE_metadata/, stac_L2A_T33TWL_T33TWM_202308/"
        )
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 + PostGIS cluster on 127.0.0.1 for the whole session."""
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostGIS database, dropped after the test."""
    with postgres_server.fresh_database() as url:
        yield url


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    """An output folder that already holds a file, which must survive any failure."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    return out
