"""A throwaway PostgreSQL + PostGIS cluster for tests: Debian's initdb in a fresh temporary
folder, the server on a free port of 127.0.0.1 only, stopped by PID and removed on exit.

initdb refuses to run as root, so as root the folder belongs to the ``postgres`` system user
and every server program runs through ``runuser -u postgres --``; otherwise they run
directly. Loopback connections are trusted: the cluster lives for one test session, listens
on 127.0.0.1 only, and its socket folder is private. ``make test`` installs the packages; a
missing install or a server that does not start raises with the reason, it never skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
SUPERUSER = "postgres"
DATABASE = "madrone"
TEMPLATE = "madrone_template"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
# Durability is worthless in a cluster deleted after the run; speed is not.
TEST_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "100",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster.

    Attributes:
        url: SQLAlchemy URL of the ``madrone`` database (PostGIS installed).
        port: the TCP port on 127.0.0.1.
        pid: the postmaster's process id.
        folder: the temporary folder holding the data, the socket and the log.
    """

    url: str
    port: int
    pid: int
    folder: Path

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of another database of this cluster."""
        return _url(self.port, database)

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """Create an empty database with PostGIS, yield its URL, then drop it, ending any
        connection a test left open."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        # A copy of a template that already holds PostGIS: CREATE EXTENSION takes seconds.
        _admin(self.port, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        try:
            yield self.url_of(name)
        finally:
            _admin(self.port, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_cluster(settings: Mapping[str, str] | None = None) -> Iterator[PostgresServer]:
    """Initialise and start a cluster with PostGIS; yield it; stop it by PID and delete it.

    Args:
        settings: server settings (``name: value``) on top of the test defaults.

    Raises:
        RuntimeError: the packages are missing, or initdb or the server failed; the message
            carries the tool's output or the server log's tail.
    """
    _check_installed()
    folder = Path(tempfile.mkdtemp(prefix="madrone-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        as_postgres = _prepare_folder(folder)
        _run(
            [*as_postgres, str(BIN / "initdb"), "--pgdata", str(folder / "data"),
             "--username", SUPERUSER, "--auth", "trust", "--encoding", "UTF8",
             "--locale", "C", "--no-sync"],
            folder, "initdb",
        )  # fmt: skip
        port = _free_port()
        process = _start(as_postgres, folder, port, {**TEST_SETTINGS, **(settings or {})})
        pid = _wait_ready(process, folder, port)
        _admin(port, f'CREATE DATABASE "{TEMPLATE}"')
        _admin(port, "CREATE EXTENSION postgis", database=TEMPLATE)
        _admin(port, f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
        yield PostgresServer(_url(port, DATABASE), port, pid, folder)
    finally:
        if process is not None:
            _stop(process, folder)
        shutil.rmtree(folder, ignore_errors=True)


def _check_installed() -> None:
    missing = [
        str(p) for p in (BIN / "initdb", BIN / "postgres", POSTGIS_CONTROL) if not p.exists()
    ]
    if missing:
        raise RuntimeError(
            f"PostgreSQL 15 with PostGIS is not installed ({', '.join(missing)} missing): "
            "run `make test`, or apt-get install postgresql-15 postgresql-15-postgis-3"
        )


def _prepare_folder(folder: Path) -> list[str]:
    """Hand the folder to the ``postgres`` user when running as root; return the command
    prefix that runs a program as the folder's owner."""
    if os.geteuid() != 0:
        return []
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, but there is no `postgres` system user") from None
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return ["runuser", "-u", "postgres", "--"]  # util-linux, essential on Debian


def _url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"


def _run(command: list[str], folder: Path, what: str) -> None:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{output[-3000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(
    as_postgres: list[str], folder: Path, port: int, settings: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Run the postmaster in the foreground of a child process, its output in server.log."""
    options = {**settings, "port": str(port), "unix_socket_directories": str(folder)}
    command = [*as_postgres, str(BIN / "postgres"), "-D", str(folder / "data")]
    for name, value in options.items():
        command += ["-c", f"{name}={value}"]
    log = folder / "server.log"
    with open(log, "wb") as handle:
        # The log belongs to the caller (it reads it), the server only writes to the handle.
        return subprocess.Popen(command, cwd=folder, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _wait_ready(process: subprocess.Popen[bytes], folder: Path, port: int) -> int:
    """Wait until the server accepts a connection; return the postmaster PID (under runuser the
    child process is runuser, not the server)."""
    import psycopg

    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {process.returncode}:\n{_tail(folder)}")
        try:
            psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres",
                            connect_timeout=2).close()  # fmt: skip
            pid = _postmaster_pid(folder)
            if pid is None:
                raise RuntimeError(f"PostgreSQL runs without a postmaster.pid:\n{_tail(folder)}")
            return pid
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections on 127.0.0.1:{port} within "
                    f"{START_SECONDS:.0f} s ({error}):\n{_tail(folder)}"
                ) from None
            time.sleep(0.1)


def _admin(port: int, statement: str, database: str = "postgres") -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname=database,
                         autocommit=True) as connection:  # fmt: skip
        connection.execute(statement)


def _stop(process: subprocess.Popen[bytes], folder: Path) -> None:
    """Fast shutdown (SIGINT: roll back and disconnect clients) of the postmaster, by the PID
    in its lock file; immediate shutdown, then SIGKILL, if it does not stop in time."""
    pid = _postmaster_pid(folder) or process.pid
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        if process.poll() is not None:  # gone already: the lock file's PID may be stale
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)
        try:
            process.wait(timeout=STOP_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + STOP_SECONDS
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _postmaster_pid(folder: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((folder / "data" / "postmaster.pid").read_text().splitlines()[0])
    return None


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _tail(folder: Path, lines: int = 30) -> str:
    try:
        text = (folder / "server.log").read_text(errors="replace")
    except OSError as error:
        return f"(no server log: {error})"
    return "\n".join(text.splitlines()[-lines:])
