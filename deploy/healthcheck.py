"""Container health checks of the madrone stack: exit 0 when healthy, else 1 and the reason.

    healthcheck.py master [HOST:PORT]  the gRPC server completes an HTTP/2 handshake
    healthcheck.py worker HOST:PORT    this container holds an open TCP connection to the master
    healthcheck.py web [URL]           the web app answers HTTP without a server error
    healthcheck.py db                  the database of MADRONE_CENTRAL_DB_URL answers SELECT 1
    healthcheck.py auto                the check of the command PID 1 runs (the image default)

Standard library only (``db`` excepted), so a check costs a few milliseconds of CPU and
never imports madrone itself.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 5.0
# The client connection preface of HTTP/2 with prior knowledge, then an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
H2_SETTINGS = 4
TCP_ESTABLISHED = "01"


class Unhealthy(Exception):
    """The reason a check failed."""


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``) to a pair; a wildcard host means this machine."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(port or default_port)


def check_master(address: str = "127.0.0.1:50051") -> str:
    """The gRPC server answers the HTTP/2 preface with its SETTINGS frame (through TLS with
    ALPN h2 when the master has a certificate), which a bound but stuck port would not."""
    host, port = split_address(address, 50051)
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
            if os.environ.get("MADRONE_TLS_CERT"):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # liveness, not identity
                context.set_alpn_protocols(["h2"])
                with context.wrap_socket(raw) as tls:
                    frame = _handshake(tls)
            else:
                frame = _handshake(raw)
    except OSError as error:
        raise Unhealthy(f"gRPC port {host}:{port}: {error}") from None
    if len(frame) < 9 or frame[3] != H2_SETTINGS:
        raise Unhealthy(f"{host}:{port} did not answer as an HTTP/2 (gRPC) server")
    return f"gRPC server on {host}:{port} answers"


def _handshake(connection: socket.socket) -> bytes:
    connection.sendall(H2_PREFACE)
    frame = b""
    while len(frame) < 9:
        chunk = connection.recv(9 - len(frame))
        if not chunk:
            break
        frame += chunk
    return frame


def established_ports(proc_net: Path = Path("/proc/net")) -> set[int]:
    """Remote ports of the established TCP connections of this network namespace (the
    container's), read from the kernel's tables."""
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc_net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == TCP_ESTABLISHED:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def check_worker(master: str) -> str:
    """The worker keeps its gRPC connection to the master open while it is registered; a
    worker that lost the master (and is backing off) or never reached it has none."""
    _, port = split_address(master, 50051)
    if port not in established_ports():
        raise Unhealthy(f"no open connection to the master's port {port} ({master})")
    return f"connected to the master's port {port}"


def check_web(url: str = "http://127.0.0.1:8000/") -> str:
    """Any answer below 500 means the WSGI server and the app are serving."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        raise Unhealthy(f"{url}: {error}") from None
    if status >= 500:
        raise Unhealthy(f"{url} answered {status}")
    return f"{url} answered {status}"


def check_db(url: str | None = None) -> str:
    """The central catalog accepts a connection and answers a query."""
    import sqlalchemy

    url = url or os.environ.get("MADRONE_CENTRAL_DB_URL", "")
    if not url:
        raise Unhealthy("MADRONE_CENTRAL_DB_URL is not set")
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": int(TIMEOUT)})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        raise Unhealthy(f"database: {type(error).__name__}: {reason}") from None
    finally:
        engine.dispose()
    return "database answers"


def check_auto(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """Run the check matching the madrone command of PID 1 (also when an init runs it)."""
    args = cmdline.read_bytes().decode(errors="replace").split("\0")

    def option(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args[:-1] else default

    # The subcommand is the first role word that is not an option's value (--master master).
    roles = [a for i, a in enumerate(args) if a in CHECKS and not args[i - 1].startswith("-")]
    role = roles[0] if roles else None
    if role == "master":
        return check_master(option("--listen", "127.0.0.1:50051"))
    if role == "worker":
        return check_worker(option("--master", "127.0.0.1:50051"))
    if role == "web":
        return check_web(f"http://127.0.0.1:{option('--port', '8000')}/")
    return "no long-running madrone service in this container: nothing to check"


CHECKS = {
    "master": check_master,
    "worker": check_worker,
    "web": check_web,
    "db": check_db,
    "auto": check_auto,
}


def main(argv: list[str]) -> int:
    """Run the named check; print its verdict; 0 healthy, 1 unhealthy, 2 usage."""
    if not argv or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}} [ARGUMENT]", file=sys.stderr)
        return 2
    try:
        print(CHECKS[argv[0]](*argv[1:2]))
    except Unhealthy as reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
