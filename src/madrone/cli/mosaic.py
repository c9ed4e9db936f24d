"""``madrone mosaic``: an area (two corners, a bbox or a polygon) from a mosaic or a STAC
catalog, as the same products ``process`` makes."""

from __future__ import annotations

import click

from madrone.cli.options import (
    common_options,
    parse_band_map,
    parse_floats,
    parse_indices,
    parse_mask_classes,
    parse_pairs,
    split_list,
)
from madrone.cli.report import execute
from madrone.config import Settings
from madrone.engine.vocabulary import COMPOSITE_METHODS, PRODUCT_KINDS


@click.command()
@click.option("--corners", help="UL_LAT,UL_LNG,LR_LAT,LR_LNG: upper-left and lower-right corners.")
@click.option("--bbox", help="W,S,E,N in degrees (W > E crosses the antimeridian).")
@click.option("--geometry", help="GeoJSON polygon (file or text); pixels outside are nodata.")
@click.option(
    "--source",
    help="Mosaic raster (path, http(s), s3://, az://), STAC item, or STAC catalog or API "
    "(default: the bundled sample mosaic).",
)
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
@common_options(PRODUCT_KINDS, "How the source is resampled onto the output grid.")
def mosaic(
    indices, expressions, bands, band_maps, dask_address, master_address, workers, quiet, **options
) -> None:
    """Index mosaic of an area from a mosaic raster or a STAC catalog (dates combined)."""
    from madrone.api import build_mosaic_spec

    index_names, parsed_expr = parse_indices(indices, expressions)
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
        mask_classes=parse_mask_classes(options.pop("mask_classes")),
        products=split_list((options.pop("products"),)),
        **options,
    )
    execute(spec, workers, quiet, dask_address, master_address)
