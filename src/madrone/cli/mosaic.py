"""``madrone mosaic``: an area (two corners, a bbox or a polygon) from a mosaic or a STAC
catalog, as the same products ``process`` makes."""

from __future__ import annotations

import click

from madrone.api import MOSAIC_PRODUCTS, build_mosaic_spec
from madrone.cli.options import (
    parse_band_map,
    parse_expressions,
    parse_floats,
    parse_pairs,
    split_list,
)
from madrone.cli.report import print_summary, run_with_progress, submit_to_master
from madrone.config import Settings
from madrone.engine.spec import COMPOSITE_METHODS, RESAMPLING_METHODS


@click.command()
@click.option("--corners", help="UL_LAT,UL_LNG,LR_LAT,LR_LNG: upper-left and lower-right corners.")
@click.option("--bbox", help="W,S,E,N in degrees (W > E crosses the antimeridian).")
@click.option("--geometry", help="GeoJSON polygon (file or text); pixels outside are nodata.")
@click.option(
    "--source",
    help="Mosaic raster (path, http(s), s3://, az://), STAC item, or STAC catalog or API "
    "(default: the bundled sample mosaic).",
)
@click.option("--index", "-i", "indices", multiple=True, help="Indices, e.g. ndvi,ndsi.")
@click.option("--expr", "expressions", multiple=True, help='Band math: "[NAME=]EXPRESSION".')
@click.option("--output", "-o", "output_dir", help="Output folder (default: MADRONE_OUTPUT_DIR).")
@click.option("--resolution", type=float, default=10.0, show_default=True, help="Pixel size, m.")
@click.option("--crs", help="Output CRS (default: the UTM zone of the area's centre).")
@click.option("--datetime", help="Search dates, e.g. 2023-08-01/2023-08-31 (a mosaic: its date).")
@click.option("--max-cloud", type=float, help="Only items with eo:cloud_cover <= this (%).")
@click.option("--collection", "collections", multiple=True, help="STAC collection(s) to search.")
@click.option("--limit", type=int, default=500, show_default=True, help="Most items to use.")
@click.option(
    "--method",
    type=click.Choice(COMPOSITE_METHODS),
    default="first",
    show_default=True,
    help="How solar days combine per pixel (first: least cloudy first).",
)
@click.option(
    "--resampling",
    type=click.Choice(RESAMPLING_METHODS),
    default="bilinear",
    show_default=True,
    help="How the source is resampled onto the output grid.",
)
@click.option("--band-map", "band_maps", multiple=True, help="Mosaic bands, e.g. red=3,nir=4.")
@click.option("--band", "bands", multiple=True, help="A band file or URL, e.g. B04=URL (repeat).")
@click.option("--offset", type=float, help="DN offset overriding the metadata, e.g. -1000.")
@click.option("--scale", type=float, help="Reflectance per DN overriding the metadata.")
@click.option("--mask-classes", help="SCL classes to mask, e.g. 3,8,9,10 (default: see docs).")
@click.option(
    "--products", default=",".join(MOSAIC_PRODUCTS), show_default=True, help="Products to write."
)
@click.option("--name", help="Product name prefix (default: the source's name, or 'mosaic').")
@click.option("--tile-size", type=int, help="Tile edge in pixels.")
@click.option("--workers", type=int, help="Local processes (default: all cores).")
@click.option("--dask", "dask_address", help="Run on a Dask scheduler, e.g. tcp://host:8786.")
@click.option("--master", "master_address", help="Submit to a madrone master, e.g. host:50051.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def mosaic(
    indices, expressions, bands, band_maps, dask_address, master_address, workers, quiet, **options
) -> None:
    """Index mosaic of an area from a mosaic raster or a STAC catalog (dates combined)."""
    index_names = split_list(indices)
    parsed_expr = parse_expressions(expressions)
    if not index_names and not parsed_expr:
        index_names = ["ndvi"]
    mask = options.pop("mask_classes")
    spec = build_mosaic_spec(
        corners=options.pop("corners"),
        bbox=parse_floats(options.pop("bbox"), 4, "--bbox"),
        geometry=options.pop("geometry"),
        indices=index_names,
        expressions=parsed_expr,
        output_dir=options.pop("output_dir") or Settings.from_env().output_dir,
        band_map=parse_band_map(band_maps),
        bands=parse_pairs(bands, "--band") if bands else None,
        collections=split_list(options.pop("collections")),
        mask_classes=[int(c) for c in split_list((mask,))] if mask else None,
        products=split_list((options.pop("products"),)),
        **options,
    )
    if master_address:
        submit_to_master(spec, master_address, quiet)
        return
    executor = None
    if dask_address:
        from madrone.executors.dask import DaskExecutor

        executor = DaskExecutor(dask_address)
    result = run_with_progress(spec, workers, quiet, executor)
    if not quiet:
        print_summary(result)
