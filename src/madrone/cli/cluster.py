"""Commands of the distributed executor: master (of a catalog's queue with ``--db``, or of
gRPC submissions), worker, cluster."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

import click

from madrone.config import Settings, read_pem
from madrone.errors import InputError
from madrone.lazy import lazy_module

if TYPE_CHECKING:
    from madrone.catalog.db import Catalog
    from madrone.storage import Storage

team = lazy_module("madrone.team")
service = lazy_module("madrone.service")
stores = lazy_module("madrone.storage")

DEFAULT_LISTEN = "127.0.0.1:50051"


def log_to_stderr() -> None:
    """madrone's log lines (INFO and up) on stderr; other libraries' only from WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("madrone").setLevel(logging.INFO)


def stop_on_signals() -> threading.Event:
    """From now on SIGTERM and SIGINT only set the returned event (for a master to see)."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--db", "db_url", metavar="URL", help="Serve the job queue of this catalog.")
@click.option(
    "--central",
    is_flag=True,
    help="Serve the team's catalog (MADRONE_CENTRAL_DB_URL; keeps the password off the "
    "command line).",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help=f"gRPC address for workers (default {DEFAULT_LISTEN}; with --db only when given).",
)
@click.option("--dask", "dask_address", metavar="ADDRESS", help="With --db: run jobs on Dask.")
@click.option("--name", help="With --db: this master's name in the jobs (default host:pid).")
def master(
    db_url: str | None,
    central: bool,
    listen: str | None,
    dask_address: str | None,
    name: str | None,
) -> None:
    """Serve jobs until SIGTERM or Ctrl-C: a catalog's queue with --db (on the gRPC workers
    when --listen is given and some are registered, else on --dask, else on the local
    pool), else jobs submitted over gRPC with --master."""
    settings = Settings.from_env()
    log_to_stderr()
    if db_url is None and not central:
        if dask_address or name:
            raise InputError("--dask and --name apply to a catalog's queue: give --db URL too")
        _serve_grpc(listen or DEFAULT_LISTEN, settings)
        return
    catalog = team.open_catalog(settings, db=db_url, central=central)
    storage = stores.Storage.from_settings(settings, central=catalog.is_postgres)
    run_master(catalog, storage, settings, listen=listen, dask=dask_address, name=name)


def _serve_grpc(listen: str, settings: Settings) -> None:
    """The gRPC master alone: jobs come from ``--master`` clients, not from a catalog."""
    server, service, _ = _start_grpc(listen, settings)
    stop = stop_on_signals()
    stop.wait()
    service.stop()
    server.stop(grace=2).wait()


def _start_grpc(listen: str, settings: Settings) -> tuple[Any, Any, int]:
    """Start the gRPC master service on ``listen`` (with the settings' token and TLS)."""
    from madrone.executors.grpc.master import serve

    tls = None
    if settings.tls_cert or settings.tls_key:
        tls = (read_pem(settings.tls_key, "MADRONE_TLS_KEY"),
               read_pem(settings.tls_cert, "MADRONE_TLS_CERT"))  # fmt: skip
    server, service, port = serve(listen, settings, settings.token or None, tls)
    host = listen.rsplit(":", 1)[0]
    click.echo(f"madrone master listening on {host}:{port}", err=True)
    sys.stderr.flush()
    return server, service, port


def run_master(
    catalog: Catalog,
    storage: Storage,
    settings: Settings,
    *,
    listen: str | None = None,
    dask: str | None = None,
    name: str | None = None,
    early: threading.Event | None = None,
) -> None:
    """Serve a catalog's queue in the foreground until SIGTERM or SIGINT. A job in hand is
    handed back to the queue (no attempt counted); returns once the run's processes are
    gone, with the catalog and the storage closed. ``early``: ``stop_on_signals()``'s event
    when the caller set it up before."""
    # The engine loads with the runner (a second or more): a signal meanwhile is kept for
    # the master, which then stops before its first job, instead of cutting the setup short.
    early = early or stop_on_signals()
    grpc = _start_grpc(listen, settings) if listen else None
    runner = service.master_runner(settings, dask=dask, grpc=grpc[1] if grpc else None)
    try:
        with tempfile.TemporaryDirectory(prefix="madrone-master-") as work_dir:
            served = service.Master(catalog, storage, settings, runner=runner, name=name,
                            work_dir=work_dir)  # fmt: skip
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda *_: served.stop())
            if early.is_set():
                served.stop()
            click.echo(
                f"madrone master {served.name}: serving {catalog.safe_url}, products to "
                f"{storage.url}; SIGTERM or Ctrl-C stops",
                err=True,
            )
            served.serve()
    finally:
        if grpc is not None:
            grpc[1].stop()
            grpc[0].stop(grace=2).wait()
        storage.close()
        catalog.dispose()
    click.echo(f"madrone master {served.name}: stopped", err=True)


@click.command()
@click.option("--master", "master_address", required=True, help="The master's HOST:PORT.")
@click.option("--concurrency", type=int, default=1, show_default=True, help="Tiles at once.")
def worker(master_address: str, concurrency: int) -> None:
    """Lease tiles from a master and compute them until SIGTERM or Ctrl-C."""
    from madrone.executors.grpc.worker import Worker

    settings = Settings.from_env()
    log_to_stderr()
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {concurrency}")
    ca = read_pem(settings.tls_ca, "MADRONE_TLS_CA")
    runner = Worker(master_address, concurrency, settings.token or None, ca, pool=settings.pool,
                    gdal_cache_mb=settings.gdal_cache_mb)  # fmt: skip
    click.echo(f"madrone worker {runner.name} serving {master_address}", err=True)
    runner.run(stop_on_signals())


@click.command()
@click.option("--workers", type=int, default=2, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tiles at once per worker: one worker of N threads holds less memory than N workers.",
)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True)
def cluster(workers: int, concurrency: int, listen: str) -> None:
    """A master and N workers on this machine, until Ctrl-C; submit with --master."""
    command = [sys.executable, "-m", "madrone.cli"]
    one_worker = [*command, "worker", "--master", listen, "--concurrency", str(concurrency)]
    started = [subprocess.Popen([*command, "master", "--listen", listen])]
    started += [subprocess.Popen(one_worker) for _ in range(workers)]
    click.echo(f"cluster: master on {listen}, {workers} workers of {concurrency} threads; "
               "Ctrl-C stops them", err=True)  # fmt: skip
    stop = stop_on_signals()
    stop.wait()
    for process in started:
        process.terminate()
    for process in started:
        process.wait(timeout=30)
