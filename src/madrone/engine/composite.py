"""Combining observations per pixel: scenes of one solar day, then days by a method.

Scenes taken on the same solar day are one observation of the ground (adjacent tiles of one
satellite pass, or overlapping products of it): within a day the first valid pixel wins.
Days then combine per pixel by ``first`` (the first day with a valid pixel, days in the order
of their least cloudy scene), ``median`` (of the valid days' index values) or ``max-ndvi``
(every index from the day whose NDVI is highest there, the classic greenest-pixel
composite). Everything here is pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.warp import transform

from madrone.grid import Grid
from madrone.sources.base import Scene
from madrone.sources.catalog import solar_day


@dataclass
class Layer:
    """One day's values over a tile: per index (NaN where invalid), and which scene (its
    position in the context) gave each pixel of the first index, -1 for none."""

    values: dict[str, np.ndarray]
    origin: np.ndarray


@dataclass
class Composite:
    """A tile's combined values, valid days per index and pixels given per scene."""

    values: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    contributions: dict[int, int]


def composite_groups(scenes: Sequence[Scene], grid: Grid) -> tuple[tuple[int, ...], ...]:
    """Scene positions grouped by solar day at the grid's centre longitude, groups in the
    order of their first scene (sources in the order given; a search lists the least cloudy
    first). A scene with no date is a day of its own."""
    centre_x = grid.transform[2] + grid.width * grid.res_x / 2
    centre_y = grid.transform[5] - grid.height * grid.res_y / 2
    (lon,), _ = transform(grid.crs, "EPSG:4326", [centre_x], [centre_y])
    groups: dict[object, list[int]] = {}
    for position, scene in enumerate(scenes):
        when = scene.metadata.get("datetime")
        key = solar_day(str(when), lon) if when else ("undated", position)
        groups.setdefault(key, []).append(position)
    return tuple(tuple(members) for members in groups.values())


def combine(
    layers: Sequence[Layer], names: Sequence[str], method: str, ranking: str | None = None
) -> Composite:
    """Combine day layers per pixel by ``method``; ``ranking`` names the index max-ndvi
    ranks days by (present in every layer)."""
    primary = names[0]
    stacks = {name: np.stack([layer.values[name] for layer in layers]) for name in names}
    counts = {name: np.count_nonzero(~np.isnan(stack), axis=0) for name, stack in stacks.items()}
    origins = np.stack([layer.origin for layer in layers])
    if method == "median":
        values = {name: _nan_median(stack, counts[name]) for name, stack in stacks.items()}
        used = origins[~np.isnan(stacks[primary])]
        return Composite(values, counts, tally_origins(used))
    rows, cols = np.indices(origins.shape[1:])
    if method == "max-ndvi":
        rank = np.stack([layer.values[ranking] for layer in layers])
        choice = _pick(rank)
        values = {name: stack[choice, rows, cols] for name, stack in stacks.items()}
        nothing = np.isnan(rank).all(axis=0)
        for array in values.values():
            array[nothing] = np.nan
    else:  # first: each index from its own first valid day (snow masking differs)
        choices = {name: _pick_first(stack) for name, stack in stacks.items()}
        values = {name: stacks[name][choices[name], rows, cols] for name in stacks}
        choice = choices[primary]
    picked = origins[choice, rows, cols]
    return Composite(values, counts, tally_origins(picked[~np.isnan(values[primary])]))


def _pick(rank: np.ndarray) -> np.ndarray:
    """Per pixel, the layer with the highest value (the first on ties; 0 if all NaN)."""
    filled = np.where(np.isnan(rank), -np.inf, rank)
    return np.argmax(filled, axis=0)


def _pick_first(stack: np.ndarray) -> np.ndarray:
    """Per pixel, the first layer with a valid value (0 if none)."""
    return np.argmax(~np.isnan(stack), axis=0)


def tally_origins(origins: np.ndarray) -> dict[int, int]:
    """Pixels per scene position in an origin array (-1: no scene)."""
    # One comparison pass per scene position (a handful): np.unique sorted every pixel.
    last = int(origins.max()) if origins.size else -1
    pixels = {p: int(np.count_nonzero(origins == p)) for p in range(last + 1)}
    return {p: n for p, n in pixels.items() if n}


def _nan_median(stack: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The median over the first axis ignoring NaN, NaN where nothing is valid: the values
    np.nanmedian gives (the mean of the two middle values for an even count), without its
    all-NaN warning, which only warnings.catch_warnings could silence and that is not
    thread-safe."""
    ordered = np.sort(stack, axis=0)  # NaN sort last
    low = np.take_along_axis(ordered, np.maximum(valid - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, (valid // 2)[None], axis=0)[0]
    middle = ((low + high) / np.float32(2)).astype(np.float32)
    middle[valid == 0] = np.nan
    return middle
