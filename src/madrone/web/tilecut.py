"""Cut 256 px WebMercatorQuad tiles out of a single-band raster by nearest neighbour, from
the raster's own overviews, with the raster kept open between requests.

Why not rio-tiler's ``Reader.tile`` (which ``/tiles/<id>/point`` still uses)? For every tile
it builds a full-extent ``WarpedVRT`` and lets GDAL's warper compute the source window and
warp a chunk; on a full-scene NDVI COG that costs about 30 ms per tile on this project's
2-core bench machine, whether or not the blocks are already decoded, against about 5 ms
for the work itself (``bench/tiles.py`` has both). Nearest-neighbour reprojection of one
band needs far less: map each output pixel to a source pixel and copy it. So:

1. the tile's pixel centres (a 17 x 17 grid, interpolated to 256 x 256: the projection is
   smooth at tile scale, as GDAL's approximate transformer also assumes) go to the raster's
   CRS with pyproj;
2. the coarsest overview whose pixels are still no larger than the tile's pixels there is
   chosen (GDAL's own rule for overview use), or full resolution;
3. the window covering the mapped pixels is read (only those blocks are decoded, and kept
   in GDAL's block cache for the next tile of the same view), and pixels are gathered with
   numpy.

Sampling follows nearest neighbour to within the interpolation error, so a few pixels on
the seams between source pixels may pick the neighbour GDAL's warper would not; values are
always real pixel values of the raster (the tile test checks them against the COG).

Open rasters live in a small LRU cache keyed by their path and the dataset's ``updated_at``
(a replaced file is reopened). A GDAL handle is not thread-safe, so each cached raster
serialises its reads with a lock; different rasters are read in parallel.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import morecantile
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.io import DatasetReader
from rasterio.windows import Window

TILE_SIZE = 256
_GRID = 17  # coarse grid of exactly transformed points, 16 intervals of 16 pixels
_WMQ = morecantile.tms.get("WebMercatorQuad")
_CACHE_SIZE = 16


class CutterClosed(RuntimeError):
    """The cutter was evicted from the cache while a request held it: ask ``cutter_for``
    again."""


@dataclass(frozen=True)
class _Level:
    """One resolution of a raster: full (factor 1) or an overview."""

    factor: int
    dataset: DatasetReader


class TileCutter:
    """An open single-band raster that cuts WebMercatorQuad tiles (see the module doc).

    Args:
        path: what GDAL opens (a local path, /vsis3/..., /vsiaz/...).
        env: GDAL configuration options needed to open and read ``path`` (credentials,
            endpoints), applied around every read.
    """

    def __init__(self, path: str, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.env = dict(env or {})
        self.lock = threading.Lock()
        self.closed = False
        with rasterio.Env(**self.env):
            full = rasterio.open(path)
            levels = [_Level(1, full)]
            try:
                for number, factor in enumerate(full.overviews(1)):
                    levels.append(_Level(factor, rasterio.open(path, overview_level=number)))
            except Exception:
                for level in levels:
                    level.dataset.close()
                raise
        self.levels = levels
        self.full = full
        self.to_raster = Transformer.from_crs("EPSG:3857", full.crs, always_xy=True)

    def close(self) -> None:
        self.closed = True
        for level in self.levels:
            level.dataset.close()

    def tile(self, z: int, x: int, y: int) -> np.ndarray | None:
        """The tile's values as float32 (nodata, masked and non-finite pixels NaN), or None
        when the tile does not meet the raster."""
        raster_x, raster_y = self._pixel_centres(z, x, y)
        finite = np.isfinite(raster_x) & np.isfinite(raster_y)
        if not finite.any():
            return None
        level = self._level_for(raster_x, raster_y)
        transform = ~level.dataset.transform
        cols, rows = transform * (np.where(finite, raster_x, 0.0), np.where(finite, raster_y, 0.0))
        cols = np.floor(cols).astype(np.int64)
        rows = np.floor(rows).astype(np.int64)
        inside = finite & (cols >= 0) & (cols < level.dataset.width)
        inside &= (rows >= 0) & (rows < level.dataset.height)
        if not inside.any():
            return None
        col_in, row_in = cols[inside], rows[inside]
        col_off, row_off = int(col_in.min()), int(row_in.min())
        window = Window(
            col_off, row_off, int(col_in.max()) - col_off + 1, int(row_in.max()) - row_off + 1
        )
        with self.lock, rasterio.Env(**self.env):
            if self.closed:
                raise CutterClosed(self.path)
            band = level.dataset.read(1, window=window, masked=True)
        values = np.ma.filled(band.astype(np.float32, copy=False), np.nan)
        tile = np.full((TILE_SIZE, TILE_SIZE), np.nan, dtype=np.float32)
        tile[inside] = values[row_in - row_off, col_in - col_off]
        tile[~np.isfinite(tile)] = np.nan
        return tile

    def _pixel_centres(self, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
        """The tile's 256 x 256 pixel centres in the raster's CRS (x, y arrays)."""
        bounds = _WMQ.xy_bounds(x, y, z)
        size = (bounds.right - bounds.left) / TILE_SIZE
        grid_x = np.linspace(bounds.left + size / 2, bounds.right - size / 2, _GRID)
        grid_y = np.linspace(bounds.top - size / 2, bounds.bottom + size / 2, _GRID)
        mesh_x, mesh_y = np.meshgrid(grid_x, grid_y)
        coarse_x, coarse_y = self.to_raster.transform(mesh_x, mesh_y, errcheck=False)
        return _spread(np.asarray(coarse_x)), _spread(np.asarray(coarse_y))

    def _level_for(self, raster_x: np.ndarray, raster_y: np.ndarray) -> _Level:
        """The coarsest level whose pixel is no larger than a tile pixel at the centre."""
        middle = TILE_SIZE // 2
        step = math.hypot(
            raster_x[middle, middle + 1] - raster_x[middle, middle],
            raster_y[middle, middle + 1] - raster_y[middle, middle],
        )
        pixel = abs(self.full.transform.a) or abs(self.full.transform.b)
        chosen = self.levels[0]
        if not math.isfinite(step):
            return chosen
        for level in self.levels[1:]:
            if pixel * level.factor <= step * (1 + 1e-9):
                chosen = level
        return chosen


_POSITION = np.linspace(0.0, _GRID - 1, TILE_SIZE)
_LOW = np.clip(np.floor(_POSITION).astype(np.int64), 0, _GRID - 2)
_WEIGHT = _POSITION - _LOW


def _spread(coarse: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a 17 x 17 grid to 256 x 256 (grid ends at pixel centres),
    rows then columns, by gathering neighbours: about 0.25 ms, where the same sums as two
    small matrix products took 16 ms through the BLAS library here."""
    rows = coarse[_LOW] * (1 - _WEIGHT)[:, None] + coarse[_LOW + 1] * _WEIGHT[:, None]
    return rows[:, _LOW] * (1 - _WEIGHT)[None, :] + rows[:, _LOW + 1] * _WEIGHT[None, :]


_cache: OrderedDict[tuple[str, str], TileCutter] = OrderedDict()
_cache_lock = threading.Lock()


def cutter_for(path: str, version: str, env: Mapping[str, str] | None = None) -> TileCutter:
    """The cached ``TileCutter`` of ``path`` at ``version`` (opened on first use; the least
    recently used of more than 16 is closed)."""
    key = (path, version)
    with _cache_lock:
        cutter = _cache.get(key)
        if cutter is not None:
            _cache.move_to_end(key)
            return cutter
    cutter = TileCutter(path, env)
    with _cache_lock:
        existing = _cache.get(key)
        if existing is not None:
            cutter.close()
            return existing
        _cache[key] = cutter
        while len(_cache) > _CACHE_SIZE:
            _, old = _cache.popitem(last=False)
            _close_when_idle(old)
    return cutter


def forget(path: str) -> None:
    """Drop every cached version of ``path`` (its dataset was deleted)."""
    with _cache_lock:
        for key in [key for key in _cache if key[0] == path]:
            _close_when_idle(_cache.pop(key))


def _close_when_idle(cutter: TileCutter) -> None:
    with cutter.lock:
        cutter.close()
