"""Output grids and their tiles: frozen values and pure functions, no I/O.

Axis order is in every name: ``row, col`` for pixels, ``x, y`` for coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window

from madrone.errors import GridError


@dataclass(frozen=True)
class Tile:
    """A window of the output grid, in pixels."""

    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def key(self) -> str:
        return f"r{self.row_off}c{self.col_off}"


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform (as 6 numbers), shape."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise GridError(f"output grid is empty ({self.height} rows x {self.width} cols)")
        if self.transform[1] != 0 or self.transform[3] != 0:
            raise GridError("rotated grids are not supported; the output is always north-up")
        if self.transform[0] <= 0 or self.transform[4] >= 0:
            raise GridError(f"grid transform {self.transform} is not north-up")

    @classmethod
    def from_affine(cls, crs: str, affine: Affine, height: int, width: int) -> Grid:
        return cls(crs, tuple(affine)[:6], int(height), int(width))

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def res_x(self) -> float:
        return self.transform[0]

    @property
    def res_y(self) -> float:
        return -self.transform[4]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        left, top = self.transform[2], self.transform[5]
        return (left, top - self.height * self.res_y, left + self.width * self.res_x, top)

    def tile_affine(self, tile: Tile) -> Affine:
        return self.affine @ Affine.translation(tile.col_off, tile.row_off)


def snap_grid(
    crs: str,
    bounds: tuple[float, float, float, float],
    res_x: float,
    res_y: float,
    anchor_x: float = 0.0,
    anchor_y: float = 0.0,
) -> Grid:
    """The smallest grid with the given resolution, aligned to an anchor, covering bounds.

    Pixel edges fall on ``anchor + k * res``, so grids built from Sentinel-2 tiles of the same
    UTM zone share pixel edges and mosaic without resampling.
    """
    if not (res_x > 0 and res_y > 0 and math.isfinite(res_x) and math.isfinite(res_y)):
        raise GridError(f"resolution must be a positive number of metres, got {res_x} x {res_y}")
    left, bottom, right, top = bounds
    if not (right > left and top > bottom):
        raise GridError(f"the area {bounds} is empty")
    eps = 1e-6
    col0 = math.floor((left - anchor_x) / res_x + eps)
    col1 = math.ceil((right - anchor_x) / res_x - eps)
    row0 = math.floor((anchor_y - top) / res_y + eps)
    row1 = math.ceil((anchor_y - bottom) / res_y - eps)
    transform = Affine(res_x, 0.0, anchor_x + col0 * res_x, 0.0, -res_y, anchor_y - row0 * res_y)
    return Grid.from_affine(crs, transform, row1 - row0, col1 - col0)


def iter_tiles(grid: Grid, tile_size: int) -> Iterator[Tile]:
    """Tiles of ``tile_size`` pixels covering the grid, row-major, edges clipped."""
    if tile_size <= 0:
        raise GridError(f"tile size must be positive, got {tile_size}")
    for row_off in range(0, grid.height, tile_size):
        for col_off in range(0, grid.width, tile_size):
            yield Tile(
                row_off,
                col_off,
                min(tile_size, grid.height - row_off),
                min(tile_size, grid.width - col_off),
            )
