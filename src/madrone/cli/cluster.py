"""Commands of the distributed executor: master, worker, cluster."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

import click

from madrone.config import Settings
from madrone.errors import InputError


def read_pem(path: str, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise InputError(f"{what} {path}: cannot read ({error.strerror})") from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--listen", default="127.0.0.1:50051", show_default=True, help="HOST:PORT.")
def master(listen: str) -> None:
    """Serve jobs to workers over gRPC until SIGTERM or Ctrl-C."""
    from madrone.executors.grpc.master import serve

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tls = None
    if settings.tls_cert or settings.tls_key:
        tls = (read_pem(settings.tls_key, "MADRONE_TLS_KEY"),
               read_pem(settings.tls_cert, "MADRONE_TLS_CERT"))  # fmt: skip
    server, service, port = serve(listen, settings, settings.token or None, tls)
    host = listen.rsplit(":", 1)[0]
    click.echo(f"madrone master listening on {host}:{port}", err=True)
    sys.stderr.flush()
    stop = _stop_on_signals()
    stop.wait()
    service.stop()
    server.stop(grace=2).wait()


@click.command()
@click.option("--master", "master_address", required=True, help="The master's HOST:PORT.")
@click.option("--concurrency", type=int, default=1, show_default=True, help="Tiles at once.")
def worker(master_address: str, concurrency: int) -> None:
    """Lease tiles from a master and compute them until SIGTERM or Ctrl-C."""
    from madrone.executors.grpc.worker import Worker

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {concurrency}")
    ca = read_pem(settings.tls_ca, "MADRONE_TLS_CA")
    runner = Worker(master_address, concurrency, settings.token or None, ca)
    click.echo(f"madrone worker {runner.name} serving {master_address}", err=True)
    runner.run(_stop_on_signals())


@click.command()
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--listen", default="127.0.0.1:50051", show_default=True)
def cluster(workers: int, listen: str) -> None:
    """A master and N workers on this machine, until Ctrl-C; submit with --master."""
    command = [sys.executable, "-m", "madrone.cli"]
    started = [subprocess.Popen([*command, "master", "--listen", listen])]
    started += [subprocess.Popen([*command, "worker", "--master", listen]) for _ in range(workers)]
    click.echo(f"cluster: master on {listen}, {workers} workers; Ctrl-C stops them", err=True)
    stop = _stop_on_signals()
    stop.wait()
    for process in started:
        process.terminate()
    for process in started:
        process.wait(timeout=30)
