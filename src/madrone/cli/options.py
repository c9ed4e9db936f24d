"""Parsers for the CLI's compact option syntax (``B04=PATH``, ``W,S,E,N``, ``NAME=EXPR``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import click

_NAMED_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)(.*)$", re.DOTALL)


def split_list(values: tuple[str, ...]) -> list[str]:
    """``--index ndvi,ndsi --index evi`` -> [ndvi, ndsi, evi]."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``KEY=VALUE`` items, comma-separated or repeated."""
    pairs = {}
    for item in split_list(values) if option == "--band-map" else values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key.strip()] = value.strip()
    return pairs


def parse_band_map(values: tuple[str, ...]) -> dict[str, int]:
    pairs = parse_pairs(values, "--band-map")
    try:
        return {band: int(index) for band, index in pairs.items()}
    except ValueError:
        raise click.BadParameter("band numbers must be whole numbers", "--band-map") from None


def parse_floats(value: str | None, count: int, option: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not {count} numbers", param_hint=option) from None
    if len(numbers) != count:
        message = f"{value!r} has {len(numbers)} numbers, not {count}"
        raise click.BadParameter(message, param_hint=option)
    return numbers


def parse_expressions(values: tuple[str, ...]) -> dict[str, str]:
    """``--expr "(B08-B04)/(B08+B04)"`` or ``--expr "myndvi=(B08-B04)/(B08+B04)"``."""
    expressions = {}
    for i, value in enumerate(values):
        match = _NAMED_EXPR.match(value)
        name, expr = (match.group(1), match.group(2)) if match else (None, value)
        name = name or ("expr" if len(values) == 1 else f"expr{i + 1}")
        expressions[name] = expr.strip()
    return expressions


def common_options(products: tuple[str, ...], resampling_help: str) -> Callable:
    """The options ``process`` and ``mosaic`` share: indices, band handling, radiometry
    overrides, masking, products, tiling and where to run."""
    from madrone.engine.vocabulary import RESAMPLING_METHODS

    options = [
        click.option("--index", "-i", "indices", multiple=True, help="Indices, e.g. ndvi,ndsi."),
        click.option(
            "--expr", "expressions", multiple=True, help='Band math: "[NAME=](B08-B04)/(B08+B04)".'
        ),
        click.option(
            "--resampling",
            type=click.Choice(RESAMPLING_METHODS),
            default="bilinear",
            show_default=True,
            help=resampling_help,
        ),
        click.option(
            "--band", "bands", multiple=True, help="A band file or URL, B04=PATH (repeat)."
        ),
        click.option("--band-map", "band_maps", multiple=True, help="Raster bands, B04=3,nir=4."),
        click.option("--offset", type=float, help="DN offset overriding the metadata, e.g. -1000."),
        click.option("--scale", type=float, help="Reflectance per DN overriding the metadata."),
        click.option("--mask-classes", help="SCL classes to mask, e.g. 3,8,9,10 (default: docs)."),
        click.option(
            "--products", default=",".join(products), show_default=True, help="Products to write."
        ),
        click.option("--name", help="Product name prefix (default: from the source)."),
        click.option("--tile-size", type=int, help="Tile edge in pixels (default: from blocks)."),
        click.option(
            "--workers",
            type=int,
            help="Local processes (default: all cores; a job of up to 2048x2048 px runs in one).",
        ),
        click.option("--dask", "dask_address", help="Run on a Dask scheduler, tcp://host:8786."),
        click.option("--master", "master_address", help="Submit to a madrone master, host:50051."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary."),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def parse_mask_classes(value: str | None) -> list[int] | None:
    """``3,8,9,10`` -> [3, 8, 9, 10]; None keeps the defaults."""
    if not value:
        return None
    try:
        return [int(c) for c in split_list((value,))]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not whole numbers", "--mask-classes") from None


def parse_indices(
    indices: tuple[str, ...], expressions: tuple[str, ...]
) -> tuple[list[str], dict[str, str]]:
    """Index names and named expressions; NDVI when neither is given."""
    names, parsed = split_list(indices), parse_expressions(expressions)
    return (names or ([] if parsed else ["ndvi"])), parsed
