"""Commands of the job service: ``submit`` a request to a catalog's queue, follow it with
``jobs``/``job``, ``cancel`` it, and ``serve``: the whole service on one machine.

``submit`` takes the sources and options of ``process``, or an area with the options of
``mosaic``. The area and engine options are the ``mosaic`` command's own parameters, so a
flag means the same thing in every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from madrone.catalog.vocabulary import FINAL_STATES, JOB_STATES
from madrone.cli.catalog import (
    catalog_options,
    echo_json,
    echo_table,
    opened_catalog,
    remote_client,
    remote_options,
    stamp,
)
from madrone.cli.cluster import log_to_stderr, run_master, stop_on_signals
from madrone.cli.mosaic import mosaic as mosaic_command
from madrone.cli.options import (
    parse_band_map,
    parse_floats,
    parse_indices,
    parse_mask_classes,
    parse_pairs,
    split_list,
)
from madrone.cli.web import DEFAULT_PORT as DEFAULT_WEB_PORT
from madrone.cli.web import WebServer, start_web
from madrone.config import Settings
from madrone.errors import InputError, MadroneError
from madrone.lazy import lazy_module

if TYPE_CHECKING:
    from madrone.catalog.models import Job
    from madrone.engine.spec import JobSpec

team = lazy_module("madrone.team")
queue = lazy_module("madrone.catalog.queue")
stores = lazy_module("madrone.storage")

# Parameters of ``mosaic`` that ``submit`` takes as they are.
AREA_OPTIONS = ("corners", "bbox", "geometry", "source", "max_cloud", "collections", "limit",
                "method")  # fmt: skip
ENGINE_OPTIONS = ("resolution", "crs", "datetime", "indices", "expressions", "resampling",
                  "bands", "band_maps", "offset", "scale", "mask_classes", "products", "name",
                  "tile_size")  # fmt: skip
# Passed on only when given, so each request kind keeps its own default.
SPEC_OPTIONS = ("name", "resolution", "crs", "tile_size", "resampling", "offset", "scale",
                "datetime")  # fmt: skip
INTERRUPTED = 130


def borrowed(command: click.Command, names: Sequence[str]) -> list[click.Parameter]:
    """Parameters of another command, the same objects, by name."""
    params = {param.name: param for param in command.params}
    missing = [name for name in names if name not in params]
    if missing:
        raise RuntimeError(f"command {command.name} has no option {', '.join(missing)}")
    return [params[name] for name in names]


# -- submit ---------------------------------------------------------------------------------
@click.command()
@click.argument("sources", nargs=-1)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option(
    "--key",
    "idempotency_key",
    metavar="IDEMPOTENCY_KEY",
    help="Submitting again with the same key gives the same job, not a second one.",
)
@catalog_options
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the job until it ends: exit 0 succeeded, 1 failed or cancelled, 130 Ctrl-C.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@remote_options
@click.pass_context
def submit(
    ctx: click.Context,
    sources: tuple[str, ...],
    priority: int,
    idempotency_key: str | None,
    db_url: str | None,
    central: bool,
    wait: bool,
    as_json: bool,
    server: str | None,
    token: str | None,
    **options: Any,
) -> None:
    """Queue a request: SOURCES as for `process`, or an area (--corners, --bbox or
    --geometry) as for `mosaic`. Prints the job id; a master runs it (`madrone master
    --db URL` or `madrone serve`). With --server, the request goes to that server's API
    (SOURCES are paths on the server: an admin's token is needed for them).

    The defaults shown are an area request's; SOURCES keep those of `process` (the finest
    band's resolution, the sources' CRS, no count product), and --bbox clips them."""
    given = {k for k in options if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if server:
        client = remote_client(server, token, **{"--db": db_url, "--central": central})
        body = remote_request(sources, options, given)
        body.update(priority=priority or None, idempotency_key=idempotency_key)
        data = client.submit({key: value for key, value in body.items() if value is not None})
        if not wait:
            echo_json(data) if as_json else click.echo(data["id"])
            return
        if not as_json:
            click.echo(data["id"])
        sys.stdout.flush()
        ended = follow(client, RemoteJob(data))
        if as_json and ended is not None:
            echo_json(ended.data)
        ctx.exit(_exit_code(ended))
    spec = request_spec(sources, options, given)
    with opened_catalog(db_url, central) as catalog, echoed_warnings():
        job = team.submit(spec, catalog, name=options["name"], priority=priority,
                          idempotency_key=idempotency_key)  # fmt: skip
        if not wait:
            echo_json(queue.job_to_dict(job)) if as_json else click.echo(job.id)
            return
        if not as_json:
            click.echo(job.id)
        sys.stdout.flush()
        ended = follow(catalog, job)
    if as_json and ended is not None:
        echo_json(queue.job_to_dict(ended))
    ctx.exit(_exit_code(ended))


def request_spec(sources: tuple[str, ...], options: dict[str, Any], given: set[str]) -> JobSpec:
    """The JobSpec of a submit: process SOURCES (or --band files), else an area request."""
    from madrone.api import build_mosaic_spec, build_spec
    from madrone.sources.spec import SourceSpec

    indices, expressions = parse_indices(options["indices"], options["expressions"])
    bands = parse_pairs(options["bands"], "--band") if options["bands"] else None
    common = {
        "expressions": expressions,
        "mask_classes": parse_mask_classes(options["mask_classes"]),
        "bands": bands,
        **{key: options[key] for key in SPEC_OPTIONS if key in given},
    }
    if "products" in given:
        common["products"] = split_list((options["products"],))
    bbox = parse_floats(options["bbox"], 4, "--bbox")
    area_given = [f"--{name.replace('_', '-')}" for name in AREA_OPTIONS if name in given]
    if (sources or bands) and not {"corners", "geometry"} & given:
        if set(area_given) - {"--bbox"}:
            raise InputError(
                f"{', '.join(sorted(set(area_given) - {'--bbox'}))}: only for an area request "
                "(--corners, --bbox or --geometry without SOURCES)"
            )
        band_map = parse_band_map(options["band_maps"])
        specs = [SourceSpec(path=source, band_map=band_map) for source in sources]
        return build_spec(specs, indices, bbox=bbox, **common)
    check_one_request(sources, area_given)
    return build_mosaic_spec(
        corners=options["corners"], bbox=bbox, geometry=options["geometry"],
        source=options["source"], indices=indices, band_map=parse_band_map(options["band_maps"]),
        max_cloud=options["max_cloud"], collections=split_list(options["collections"]),
        limit=options["limit"], method=options["method"], **common,
    )  # fmt: skip


def check_one_request(sources: Sequence[str], area_given: Sequence[str]) -> None:
    """An area request (no SOURCES) must name its area; SOURCES and an area are two requests."""
    if sources:
        raise InputError(
            f"SOURCES {' '.join(sources)} and an area: give SOURCES (as for process) or "
            "--corners/--geometry (as for mosaic), not both"
        )
    if not area_given:
        raise InputError("give SOURCES to process, or an area: --corners, --bbox or --geometry")


def remote_request(
    sources: tuple[str, ...], options: dict[str, Any], given: set[str]
) -> dict[str, Any]:
    """The JSON body of POST /api/jobs for a submit's options (as ``request_spec`` reads
    them); only the options given, so the server's defaults are those of local mode."""
    indices, expressions = parse_indices(options["indices"], options["expressions"])
    body: dict[str, Any] = {
        "indices": indices,
        "expressions": expressions or None,
        "bands": parse_pairs(options["bands"], "--band") if options["bands"] else None,
        "mask_classes": parse_mask_classes(options["mask_classes"]),
        **{key: options[key] for key in SPEC_OPTIONS if key in given},
    }
    if "products" in given:
        body["products"] = split_list((options["products"],))
    bbox = parse_floats(options["bbox"], 4, "--bbox")
    body["bbox"] = list(bbox) if bbox else None
    band_map = parse_band_map(options["band_maps"]) or None
    area_given = [name for name in AREA_OPTIONS if name in given]
    if (sources or body["bands"]) and not {"corners", "geometry"} & given:
        extra = [f"--{name.replace('_', '-')}" for name in area_given if name != "bbox"]
        if extra or band_map:
            raise InputError(
                f"{', '.join(extra or ['--band-map'])}: not for SOURCES sent to a server "
                "(an area request: --corners, --bbox or --geometry without SOURCES)"
            )
        return {**body, "sources": list(sources)}
    check_one_request(sources, area_given)
    corners = parse_floats(options["corners"], 4, "--corners")
    body.update(
        corners=list(corners) if corners else None,
        geometry=_geometry_object(options["geometry"]),
        band_map=band_map,
        collections=split_list(options["collections"]) or None,
        **{key: options[key] for key in ("source", "max_cloud", "limit", "method") if key in given},
    )
    return body


def _geometry_object(text: str | None) -> dict[str, Any] | None:
    """``--geometry`` (a file or GeoJSON text) as the object the API takes."""
    if not text:
        return None
    raw = text
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as handle:
            raw = handle.read()
    try:
        geometry = json.loads(raw)
    except ValueError as error:
        raise InputError(
            f"--geometry {text[:60]!r}: neither a file nor GeoJSON ({error})"
        ) from None
    if not isinstance(geometry, dict):
        raise InputError(f"--geometry {text[:60]!r}: GeoJSON must be an object")
    return geometry


class RemoteJob:
    """A job of a server's API (its JSON) with the attributes ``JobProgress`` reads."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.id = data["id"]
        self.status = data["status"]
        self.tiles_done = data["progress"]["done"]
        self.tiles_total = data["progress"]["total"]
        self.errors = data["errors"]


submit.params.extend(borrowed(mosaic_command, AREA_OPTIONS + ENGINE_OPTIONS))


@contextlib.contextmanager
def echoed_warnings() -> Iterator[None]:
    """The engine's warnings as ``madrone: warning: ...`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                click.echo(f"madrone: warning: {warning.message}", err=True)


class JobProgress:
    """A followed job on stderr: a progress bar of tiles (with ETA) on a terminal, a line
    per change elsewhere, and a line at each change of status."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.last: tuple[str, int, int] = ("", -1, -1)

    def __call__(self, job: Job) -> None:
        status, done, total = job.status, job.tiles_done, job.tiles_total
        if status != self.last[0]:
            self.close()
            click.echo(f"job {self.job_id}: {status}", err=True)
        if status == "running" and total and (done, total) != self.last[1:]:
            if self.tty:
                self._bar(done, total)
            else:
                click.echo(f"job {self.job_id}: {done}/{total} tiles", err=True)
        self.last = (status, done, total)

    def _bar(self, done: int, total: int) -> None:
        if self.bar is None or self.bar.length != total or done < self.bar.pos:
            self.close()
            self.bar = click.progressbar(length=total, label="tiles", file=sys.stderr,
                                         show_eta=True, show_pos=True)  # fmt: skip
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def follow(catalog: Any, job: Job | RemoteJob) -> Any:
    """Follow a job to its end; None when interrupted (Ctrl-C), the job going on.
    ``catalog`` is a Catalog, or an ApiClient for a server's job (polled twice a second)."""
    show = JobProgress(job.id)
    try:
        if isinstance(job, RemoteJob):
            return _wait_remote(catalog, job.id, show)
        return team.wait_for(catalog, job.id, progress=show)
    except KeyboardInterrupt:
        show.close()
        click.echo(f"\nstopped following job {job.id}; it goes on: madrone job {job.id}", err=True)
        return None
    finally:
        show.close()


def _wait_remote(client: Any, job_id: str, progress: JobProgress) -> RemoteJob:
    while True:
        job = RemoteJob(client.job(job_id))
        progress(job)
        if job.status in FINAL_STATES:
            return job
        time.sleep(0.5)


def _exit_code(job: Any) -> int:
    """0 succeeded, 1 failed or cancelled (the last error printed), 130 interrupted."""
    if job is None:
        return INTERRUPTED
    if job.status == "succeeded":
        return 0
    last = job.errors[-1]["message"] if job.errors else "no error recorded"
    detail = f": {last}" if job.status == "failed" else ""
    click.echo(f"madrone: job {job.id} {job.status}{detail}", err=True)
    return 1


# -- jobs, job, cancel ----------------------------------------------------------------------
@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.option("--status", type=click.Choice(JOB_STATES), help="Only jobs in this state.")
@click.option("--limit", type=int, default=50, show_default=True, help="Most jobs shown.")
@catalog_options
@remote_options
def jobs(
    as_json: bool,
    status: str | None,
    limit: int,
    db_url: str | None,
    central: bool,
    server: str | None,
    token: str | None,
) -> None:
    """List jobs, newest first: id, name, status, progress, attempts, requester, created
    (of a catalog, or with --server of that server's queue)."""
    if server:
        client = remote_client(server, token, **{"--db": db_url, "--central": central})
        found = client.jobs(status=status, limit=limit)
    else:
        with opened_catalog(db_url, central) as catalog:
            found = [queue.job_to_dict(job) for job in team.list_jobs(catalog, status=status,
                                                                      limit=limit)]  # fmt: skip
    if as_json:
        echo_json(found)
        return
    rows = [(job["id"], job["name"], job["status"],
             f"{job['progress']['done']}/{job['progress']['total']}",
             f"{job['attempts']}/{job['max_attempts']}", job["requester"] or "-",
             stamp(_moment(job["created_at"]))) for job in found]  # fmt: skip
    headers = ("id", "name", "status", "progress", "attempts", "requester", "created")
    echo_table(headers, rows)


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@catalog_options
def job(job_id: str, as_json: bool, db_url: str | None, central: bool) -> None:
    """Show every field of job ID, with the error of every attempt."""
    with opened_catalog(db_url, central) as catalog:
        data = queue.job_to_dict(team.get_job(catalog, job_id))
    if as_json:
        echo_json(data)
        return
    errors, spec = data.pop("errors"), data.pop("spec")
    data["progress"] = f"{data['progress']['done']}/{data['progress']['total']} tiles"
    for key, value in data.items():
        click.echo(f"{key + ':':<18}{'-' if value is None else value}")
    click.echo(f"{'errors:':<18}{'none' if not errors else ''}")
    for error in errors:
        click.echo(f"  attempt {error['attempt']} on {error['master']} at {error['at']}: "
                   f"{error['message']}")  # fmt: skip
    click.echo(f"{'spec:':<18}{spec}")


@click.command()
@click.argument("job_id", metavar="ID")
@catalog_options
def cancel(job_id: str, db_url: str | None, central: bool) -> None:
    """Cancel job ID: a queued one at once, a running one within about a second."""
    with opened_catalog(db_url, central) as catalog:
        cancelled = team.cancel_job(catalog, job_id)
    if cancelled.status in FINAL_STATES:
        click.echo(f"job {cancelled.id}: {cancelled.status}")
    else:
        click.echo(f"job {cancelled.id}: {cancelled.status}, cancel requested (its master stops)")


# -- serve ----------------------------------------------------------------------------------
@click.command()
@click.option(
    "--port",
    type=int,
    default=DEFAULT_WEB_PORT,
    show_default=True,
    help="Port of the web app on 127.0.0.1.",
)
@click.option("--no-web", is_flag=True, help="The master alone, without the web app.")
def serve(port: int, no_web: bool) -> None:
    """The whole service on this machine, in the foreground until Ctrl-C or SIGTERM: the
    local catalog (migrated), the local storage folder, a master on the local pool and the
    web app on http://127.0.0.1:PORT. A local catalog without an admin gets one (MADRONE_USER,
    else your login name), with a one-time login link printed on stderr."""
    settings = Settings.from_env()
    log_to_stderr()
    # A signal from here on is kept for the master, which then stops before its first job
    # and closes everything: one during the set-up below once ended the process with 143.
    early = stop_on_signals()
    catalog = team.open_catalog(settings, upgrade=True)
    storage = stores.Storage.from_settings(settings)
    try:
        served_web = None if no_web else start_served_web(settings, catalog, port)
    except BaseException:
        storage.close()
        catalog.dispose()
        raise
    # From here on the web server's thread is stopped however this ends: a SIGTERM during
    # the first admin's set-up once left it serving and the process alive.
    try:
        if served_web is not None and not catalog.is_postgres:
            announce_first_admin(settings, catalog, served_web.url)
        click.echo(f"catalog: {catalog.safe_url}\nstorage: {storage.url}")
        if served_web is not None:
            click.echo(
                f"web: {served_web.url} (API {served_web.url}/api, STAC {served_web.url}/stac)"
            )
        click.echo("submit from another terminal: madrone submit SCENE --index ndvi --name NAME")
        click.echo("follow: madrone jobs, madrone job ID; results: madrone datasets")
        click.echo("Ctrl-C or SIGTERM stops (a running job goes back to the queue)")
        sys.stdout.flush()
        run_master(catalog, storage, settings, early=early)
    finally:
        if served_web is not None:
            served_web.stop()


def announce_first_admin(settings: Settings, catalog: Any, url: str) -> None:
    """On a catalog without an admin: make the site's user (``MADRONE_USER``, else the
    login name) its first admin and print a one-time login link to the web app at ``url``."""
    from datetime import timedelta

    from madrone.catalog import users

    try:
        link = users.first_admin_link(catalog, team.current_user(settings), timedelta(hours=24))
    except MadroneError as error:
        click.echo(f"madrone serve: no first admin made ({error}); make one with `madrone user "
                   "add NAME --role admin --password`", err=True)  # fmt: skip
        return
    if link is not None:
        click.echo(f"madrone serve: first admin '{link.user}': open {link.url(url)} (valid 24 h, "
                   "once)", err=True)  # fmt: skip


def start_served_web(settings: Settings, catalog: Any, port: int) -> WebServer:
    """The web app on the master's catalog, served on 127.0.0.1:``port`` from a thread."""
    from madrone.web import create_app

    return start_web(create_app(settings, catalog=catalog), "127.0.0.1", port)
