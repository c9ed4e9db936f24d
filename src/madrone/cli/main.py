"""Commands: process, demo, indices. Errors map to exit codes here and only here:
0 ok, 2 bad input or usage (any MadroneError), 1 internal error, 143 stopped by SIGTERM.

The engine (rasterio, numpy, matplotlib) loads only when a command that computes runs:
``madrone --help`` and argument parsing stay light (tests/cli/test_startup.py)."""

from __future__ import annotations

import gc
import os
import sys

import click

from madrone import __version__
from madrone.cli import cluster as cluster_commands
from madrone.cli.mosaic import mosaic as mosaic_command
from madrone.cli.options import (
    common_options,
    parse_band_map,
    parse_floats,
    parse_indices,
    parse_mask_classes,
    parse_pairs,
    split_list,
)
from madrone.cli.report import execute, print_summary, run_with_progress
from madrone.cli.signals import Terminated, stop_on_sigterm
from madrone.config import Settings
from madrone.engine.vocabulary import ALL_PRODUCTS
from madrone.errors import MadroneError


class MadroneGroup(click.Group):
    """Turns MadroneError into a one-line message and exit 2; anything else into exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Terminated:
            click.echo("madrone: stopped by SIGTERM", err=True)
            raise
        except MadroneError as error:
            click.echo(f"madrone: error: {error}", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            click.echo(f"madrone: internal error: {type(error).__name__}: {error}", err=True)
            if os.environ.get("MADRONE_DEBUG"):
                raise
            sys.exit(1)


@click.group(cls=MadroneGroup)
@click.version_option(__version__, prog_name="madrone")
def cli() -> None:
    """Sentinel-2 spectral-index mosaics: COG, PNG, legend and STAC provenance."""


SPEC_OPTIONS = ("name", "resolution", "crs", "tile_size", "resampling", "offset", "scale",
                "datetime")  # fmt: skip


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--output", "-o", "output_dir", required=True, help="Output folder.")
@click.option("--resolution", type=float, help="Output pixel size in CRS units (metres).")
@click.option("--crs", help="Output CRS, e.g. EPSG:32633 (needed for sources in several CRSs).")
@click.option("--bbox", help="Clip to W,S,E,N in degrees (WGS84).")
@click.option("--datetime", help="Acquisition date of sources that state none, e.g. 2020-02-19.")
@common_options(ALL_PRODUCTS, "How coarser bands are resampled onto the output grid.")
def process(
    sources, indices, expressions, bands, band_maps, dask_address, master_address, **options
) -> None:
    """Compute indices over SOURCES (band folders, SAFE folders or zips, STAC items, rasters)."""
    from madrone.api import build_spec
    from madrone.sources.spec import SourceSpec

    band_map = parse_band_map(band_maps)
    specs = [SourceSpec(path=s, band_map=band_map) for s in sources]
    if bands:
        specs.append(SourceSpec(bands=parse_pairs(bands, "--band")))
    if not specs:
        raise click.UsageError("give at least one SOURCE or --band pairs")
    index_names, parsed_expr = parse_indices(indices, expressions)
    spec = build_spec(
        specs,
        index_names,
        options.pop("output_dir"),
        expressions=parsed_expr,
        bbox=parse_floats(options.pop("bbox"), 4, "--bbox"),
        mask_classes=parse_mask_classes(options.pop("mask_classes")),
        products=split_list((options.pop("products"),)),
        **{k: options[k] for k in SPEC_OPTIONS},
    )
    execute(spec, options["workers"], options["quiet"], dask_address, master_address)


@cli.command()
@click.option("--output", "-o", "output_dir", help="Output folder (default: ./madrone-demo).")
@click.option("--workers", type=int, help="Local processes (default: all cores).")
@click.option("--quiet", "-q", is_flag=True)
@click.option(
    "--no-serve", is_flag=True, help="Stop after the products (for scripts): no map served."
)
@click.option(
    "--port", type=int, default=8000, show_default=True, help="Port of the map on 127.0.0.1."
)
def demo(output_dir: str | None, workers: int | None, quiet: bool, no_serve: bool,
         port: int) -> None:  # fmt: skip
    """NDVI and NDSI of a real Sentinel-2 scene bundled with madrone, then an area request
    (two corners) from the bundled sample mosaic; then the map with both on it, served on
    http://127.0.0.1:PORT until Ctrl-C (the site is kept in OUTPUT/site)."""
    from importlib import resources

    from madrone.api import build_mosaic_spec, build_spec
    from madrone.sources.mosaic import SAMPLE_CORNERS

    settings = Settings.from_env()
    scene = resources.files("madrone") / "data/demo/L1C_T18SVG_20160112_demo"
    output_dir = output_dir or settings.output_dir
    spec = build_spec([str(scene)], ["ndvi", "ndsi"], output_dir, name="demo_T18SVG_20160112")
    result = run_with_progress(spec, workers, quiet)
    print_summary(result)
    corners = ",".join(f"{v:g}" for v in SAMPLE_CORNERS)
    click.echo(f"\nan area request: madrone mosaic --corners {corners} --index ndvi,ndsi")
    area = build_mosaic_spec(
        corners=SAMPLE_CORNERS, indices=["ndvi", "ndsi"], output_dir=output_dir,
        name="demo_mosaic_T29RKH_20200219",
    )  # fmt: skip
    area_result = run_with_progress(area, workers, quiet)
    print_summary(area_result)
    for name in ("demo_T18SVG_20160112_ndvi.png", "demo_mosaic_T29RKH_20200219_ndvi.png"):
        click.echo(f"open {os.path.join(result.output_dir, name)} to look")
    if not no_serve:
        from madrone.cli.demo import serve_site

        serve_site(settings, [(spec, result), (area, area_result)], output_dir, port)


@cli.command(name="indices")
@click.option("--domain", help="Only this application domain (vegetation, water, snow ...).")
def list_indices(domain: str | None) -> None:
    """List the indices madrone computes: name, formula, bands, reference."""
    from madrone.indices import list_indices as available

    for index in available():
        if domain and index.domain != domain:
            continue
        click.echo(
            f"{index.name:<14} {index.formula:<50} {','.join(index.bands):<20} {index.reference}"
        )


for _command in (
    mosaic_command,
    cluster_commands.master,
    cluster_commands.worker,
    cluster_commands.cluster,
):
    cli.add_command(_command)


def main() -> None:
    stop_on_sigterm()
    try:
        cli(prog_name="madrone")
    finally:
        # The command is over and has closed its files. The interpreter's last garbage
        # collections would walk every object the engine's modules made (0.06 s, a tenth of
        # a small job) to free memory the operating system takes back anyway: frozen, they
        # are skipped. atexit handlers and weakref finalizers still run.
        gc.freeze()


# The team commands: a catalog's queue, datasets, users (cli/catalog.py, cli/service.py).
from madrone.cli import catalog as catalog_commands  # noqa: E402
from madrone.cli import service as service_commands  # noqa: E402

for _command in (
    catalog_commands.db,
    catalog_commands.datasets,
    catalog_commands.add,
    catalog_commands.share,
    catalog_commands.user,
    catalog_commands.token,
    service_commands.submit,
    service_commands.jobs,
    service_commands.job,
    service_commands.cancel,
    service_commands.serve,
):
    cli.add_command(_command)

# The web app (cli/web.py): Flask loads only when `madrone web` runs.
from madrone.cli import web as web_commands  # noqa: E402

cli.add_command(web_commands.web)
