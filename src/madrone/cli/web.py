"""The ``web`` command: the web app in the foreground on a threaded WSGI server, and the same
server in a background thread for ``serve``. Flask and the app load only when they run, so
``madrone --help`` stays light. A site with many users runs the app under gunicorn instead
(``gunicorn "madrone.web:create_app()"``, as compose.yaml does)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from madrone.config import Settings
from madrone.errors import InputError

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class WebServer:
    """A threaded werkzeug server of a WSGI app, served from a background thread."""

    def __init__(self, server: BaseWSGIServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="madrone-web")

    @property
    def url(self) -> str:
        host = self.server.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.port}"

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wait for the serving thread, close the socket."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()


def bind_web(app: Any, host: str, port: int) -> WebServer:
    """A server of ``app`` bound to ``host:port`` (port 0: any free one), not yet serving.

    Raises:
        InputError: the address cannot be bound (the port is taken, the host is not ours).
    """
    from werkzeug.serving import make_server

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Bound here rather than by werkzeug, which prints and exits on a taken port.
        listener = socket.create_server((host, port), family=family)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise InputError(f"cannot serve the web app on {host} port {port}: {reason}") from None
    with listener:
        server = make_server(host, port, app, threaded=True, fd=listener.fileno())
    return WebServer(server)


def start_web(app: Any, host: str, port: int) -> WebServer:
    """``app`` served on ``host:port`` from a background thread (see ``bind_web``)."""
    return bind_web(app, host, port).start()


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="TCP port.")
def web(host: str, port: int) -> None:
    """Serve the web app (REST API at /api, STAC API at /stac) on the local catalog, in the
    foreground until Ctrl-C or SIGTERM. For many users: gunicorn "madrone.web:create_app()"."""
    from madrone.web import create_app

    app = create_app(Settings.from_env())
    catalog = app.config["MADRONE_CATALOG"]
    try:
        server = bind_web(app, host, port)
    except InputError:
        catalog.dispose()
        raise
    stop = _stop_event()
    try:
        server.start()
        click.echo(f"madrone web: serving {server.url} (API {server.url}/api, STAC "
                   f"{server.url}/stac); Ctrl-C or SIGTERM stops", err=True)  # fmt: skip
        sys.stderr.flush()
        stop.wait()
    finally:
        server.stop()
        catalog.dispose()
    click.echo("madrone web: stopped", err=True)
