"""The CLI starts without the catalog's weight: SQLAlchemy, fsspec and the database drivers
load only when a command that needs them runs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "psycopg", "fsspec", "s3fs", "adlfs")


def test_help_does_not_load_the_catalog() -> None:
    probe = (
        "import sys; from click.testing import CliRunner; from madrone.cli.main import cli; "
        "result = CliRunner().invoke(cli, ['--help']); assert result.exit_code == 0; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
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
