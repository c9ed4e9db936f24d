"""A static file server on 127.0.0.1 that honours HTTP range requests, as object stores and
CDNs do (Python's http.server ignores ``Range``), so GDAL's /vsicurl/ reads real byte ranges.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """Serves files, answering ``Range: bytes=a-b`` with 206 and just those bytes."""

    log_path: str | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(f"{self.path}\t{self.headers.get('Range', '')}\n")
        match = _RANGE.match(self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            super().do_GET()
            return
        size = os.path.getsize(path)
        first = int(match.group(1)) if match.group(1) else max(0, size - int(match.group(2)))
        last = int(match.group(2)) if match.group(1) and match.group(2) else size - 1
        last = min(last, size - 1)
        if first >= size or first > last:
            self.send_error(416, "range not satisfiable")
            return
        with open(path, "rb") as handle:
            handle.seek(first)
            body = handle.read(last - first + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve_directory(directory: str, log_path: str | None = None) -> Iterator[str]:
    """Serve ``directory`` from a separate process on a free port of 127.0.0.1 and yield its
    base URL; the server is stopped by PID on exit. With ``log_path``, every request's path
    and Range header are appended to that file, one tab-separated line each.

    A separate process, not a thread: GDAL reads block the calling thread while holding
    resources a same-process Python server would need, and a real server is remote anyway.
    """
    with spawn_server("tests.support.http", directory, log_path or "") as url:
        yield url


@contextlib.contextmanager
def spawn_server(module: str, *args: str) -> Iterator[str]:
    """Run ``python -m module args`` from the repository root: the server prints its port
    on its first line; yield its base URL; stop it by PID on exit."""
    command = [sys.executable, "-m", module, *args]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def read_log(log_path: str) -> list[tuple[str, str]]:
    """The (path, Range header) pairs a server logged."""
    if not os.path.exists(log_path):
        return []
    with open(log_path) as handle:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in handle if line.strip()]


def main() -> None:
    directory, log_path = sys.argv[1], sys.argv[2] or None
    handler = type("Handler", (RangeRequestHandler,), {"log_path": log_path})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    print(server.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
