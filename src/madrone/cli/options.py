"""Parsers for the CLI's compact option syntax (``B04=PATH``, ``W,S,E,N``, ``NAME=EXPR``)."""

from __future__ import annotations

import re

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
        raise click.BadParameter(f"{value!r} has {len(numbers)} numbers, not {count}", option)
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
