"""What the commands share: running a spec with a progress bar, submitting it to a master,
and printing where the products went. Executors are chosen by ``madrone.api``."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from typing import TYPE_CHECKING

import click

from madrone.cli.signals import sigterm_cancels
from madrone.config import Settings
from madrone.errors import InputError

if TYPE_CHECKING:
    from madrone.engine.plan import Plan
    from madrone.engine.run import RunResult
    from madrone.engine.spec import JobSpec


def run_with_progress(
    spec: JobSpec, workers: int | None, quiet: bool, dask: str | None = None
) -> RunResult:
    """Run a spec locally (or on a Dask scheduler) with a progress bar on a terminal; the
    run's warnings are printed as ``madrone: warning: ...``."""
    from madrone.api import run

    show_bar = not quiet and sys.stderr.isatty()
    bar = None
    state = {"done": 0}

    def on_plan(plan: Plan) -> None:
        nonlocal bar
        if not quiet:
            click.echo(describe_plan(plan), err=True)
        if show_bar:
            bar = click.progressbar(
                length=len(plan.tiles), label="tiles", file=sys.stderr, show_eta=True, show_pos=True
            )
            bar.__enter__()

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - state["done"])
        state["done"] = done

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, sigterm_cancels() as cancel:
        warnings.simplefilter("always")
        try:
            result = run(spec, workers=workers, dask=dask, settings=Settings.from_env(),
                         progress=progress, on_plan=on_plan, cancel=cancel)  # fmt: skip
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    for warning in caught:
        click.echo(f"madrone: warning: {warning.message}", err=True)
    result.elapsed = time.perf_counter() - started
    return result


def describe_plan(plan: Plan) -> str:
    grid = plan.grid
    return (
        f"{plan.name}: {', '.join(i.name for i in plan.context.indices)} on "
        f"{grid.width}x{grid.height} px at {grid.res_x:g} m ({grid.crs}), "
        f"{len(plan.tiles)} tiles of {plan.tile_size}"
    )


def submit_to_master(spec: JobSpec, master_address: str, quiet: bool) -> None:
    """Run a spec on a madrone master, with a progress bar on a terminal; print the
    products and the run's warnings."""
    from madrone.api import submit

    bar = None
    if not quiet and sys.stderr.isatty():
        bar = click.progressbar(length=1, label="tiles", file=sys.stderr, show_pos=True)
    state = {"done": 0}

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.length = total
            bar.update(done - state["done"])
        state["done"] = done

    with bar if bar is not None else contextlib.nullcontext(), sigterm_cancels() as cancel:
        summary = submit(spec, master_address, progress=progress, cancel=cancel)
    for message in summary.get("warnings", []):
        click.echo(f"madrone: warning: {message}", err=True)
    if not quiet:
        click.echo(f"products in {summary['output_dir']}:")
        for key, product in summary["products"].items():
            mean = product["stats"]["mean"]
            click.echo(f"  {key}: mean {'n/a' if mean is None else f'{mean:.3f}'}")
            for path in product["files"].values():
                click.echo(f"    {path}")


def print_summary(result: RunResult) -> None:
    click.echo(f"done in {result.elapsed:.1f} s; products in {result.output_dir}:")
    for key, product in result.products.items():
        stats = product.stats
        mean = "n/a" if stats["mean"] is None else f"{stats['mean']:.3f}"
        click.echo(f"  {key}: mean {mean}, valid {stats['valid_fraction']:.1%}")
        for path in product.files.values():
            click.echo(f"    {path}")


def execute(
    spec: JobSpec,
    workers: int | None,
    quiet: bool,
    dask_address: str | None,
    master_address: str | None,
) -> None:
    """Run a spec locally, on a Dask scheduler or on a madrone master; print the products."""
    if master_address and dask_address:
        raise InputError("give --dask or --master, not both")
    if master_address:
        submit_to_master(spec, master_address, quiet)
        return
    result = run_with_progress(spec, workers, quiet, dask_address)
    if not quiet:
        print_summary(result)
