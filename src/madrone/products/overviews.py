"""COG overviews as exact block means, made from each tile while it is in memory.

Level ``f`` (2, 4, 8, ...) holds, per pixel, the mean of the valid (non-NaN) values of the
2 x 2 pixels of the level below it (the full resolution under level 2), NaN where none is
valid; a block cut short by the grid's edge averages the pixels it holds. Each level is a
pure function of fixed blocks of the grid, so it comes out the same bytes whether made from
one tile or from the whole raster, whatever the tile size or the executor: the writer makes
the levels of every tile aligned to the largest factor as the tile arrives, and never reads
the full-resolution data back (GDAL's own overview pass re-read the scene: about a quarter
of the COG step's CPU).
"""

from __future__ import annotations

import numpy as np

from madrone.grid import Tile


def overview_factors(height: int, width: int, block: int) -> list[int]:
    """Overview levels 2, 4, ... until the smallest fits in one block."""
    factors, factor = [], 2
    while max(height, width) / (factor // 2) > block:
        factors.append(factor)
        factor *= 2
    return factors


def level_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """(rows, cols) of the level of ``factor`` over a raster of ``height`` x ``width``."""
    return -(-height // factor), -(-width // factor)


def halve(values: np.ndarray) -> np.ndarray:
    """The float32 level above ``values``: the NaN-ignoring mean of each 2 x 2 block."""
    height, width = values.shape
    if not (height % 2 or width % 2 or np.isnan(values).any()):
        # Every count is 4: the same sums, in the same order, and x / 4 is x * 0.25 exactly.
        total = values[0::2, 0::2] + values[0::2, 1::2]
        total += values[1::2, 0::2]
        total += values[1::2, 1::2]
        total *= np.float32(0.25)
        return total
    if height % 2 or width % 2:
        padded = np.full((height + height % 2, width + width % 2), np.nan, np.float32)
        padded[:height, :width] = values
        values = padded
    valid = ~np.isnan(values)
    filled = np.where(valid, values, np.float32(0))
    # The sum and the count of the valid values of each block, in a fixed order: a, b, c, d.
    total = filled[0::2, 0::2] + filled[0::2, 1::2]
    total += filled[1::2, 0::2]
    total += filled[1::2, 1::2]
    count = valid[0::2, 0::2].astype(np.uint8)
    count += valid[0::2, 1::2]
    count += valid[1::2, 0::2]
    count += valid[1::2, 1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count  # float32; 0 / 0 is the NaN of a block with no valid value


def tile_levels(values: np.ndarray, factors: list[int]) -> list[np.ndarray]:
    """Every level of ``factors`` (2, 4, ...) over one tile, each from the one below."""
    levels = []
    for _ in factors:
        values = halve(values)
        levels.append(values)
    return levels


def holds_whole_blocks(tile: Tile, grid_shape: tuple[int, int], factor: int) -> bool:
    """Whether a tile covers whole blocks of ``factor`` pixels (or reaches the grid's edge),
    so its levels up to ``factor`` are the grid's own over its footprint."""
    height, width = grid_shape
    return (
        tile.row_off % factor == 0
        and tile.col_off % factor == 0
        and (tile.height % factor == 0 or tile.row_off + tile.height == height)
        and (tile.width % factor == 0 or tile.col_off + tile.width == width)
    )
