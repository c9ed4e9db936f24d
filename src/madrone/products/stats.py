"""Summary statistics of an index raster, identical however the raster was tiled.

Statistics are built from FIXED 512 x 512 windows of the output grid (not the file's blocks,
not the processing tiles): each window gives a partial (count, mean, sum of squared
deviations computed two-pass, min, max, histogram), a pure function of its pixels; partials
are merged in row-major window order with Chan's pairwise update. So the same pixels always
give the same bytes, whichever tile size or executor produced them, and the variance stays
accurate for large offsets. Workers compute the partials of the windows inside their tiles
(``window_partials``); the rest are computed from the finished raster.

NaN, infinities and the raster's own nodata value (when it is not NaN) are nodata.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from madrone.errors import InputError

STATS_WINDOW = 512
DEFAULT_BINS = 50
_SIGNIFICANT_DIGITS = 10

WindowKey = tuple[int, int]  # (row_off, col_off) of a stats window


@dataclass
class WindowStats:
    """The statistics of one window (or, after merging, of many)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = np.inf
    maximum: float = -np.inf
    below: int = 0
    above: int = 0
    counts: np.ndarray | None = None

    def merge(self, other: WindowStats) -> None:
        """Add another partial (Chan et al.'s parallel update)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.below += other.below
        self.above += other.above
        self.counts = other.counts if self.counts is None else self.counts + other.counts


def histogram_edges(value_range: tuple[float, float], bins: int = DEFAULT_BINS) -> np.ndarray:
    low, high = (float(v) for v in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high) or bins < 1:
        raise InputError(f"bad histogram: range {value_range!r} with {bins} bins")
    return np.linspace(low, high, bins + 1)


def window_stats(values: np.ndarray, edges: np.ndarray, nodata: float | None = None) -> WindowStats:
    """The partial statistics of one window of float32 values.

    The window is read in bands of ``_BAND_ROWS`` rows, so every temporary stays small: in
    cache, and reused by the allocator rather than page-faulted in afresh. Bands are counted
    from the window's first row, so the result depends on the window's pixels only.
    """
    bands = [_valid_values(values[row : row + _BAND_ROWS], nodata) for row in _band_rows(values)]
    bands = [x for x in bands if x.size]
    stats = WindowStats()
    stats.count = sum(x.size for x in bands)
    if stats.count == 0:
        return stats
    stats.mean = math.fsum(float(x.sum(dtype=np.float64)) for x in bands) / stats.count
    mean, m2 = np.float32(stats.mean), []
    low, high = _float32_bounds(edges)
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for x in bands:
        # float32 squares summed pairwise by numpy: ~1e-7 relative, at a tenth of float64's cost
        work = np.subtract(x, mean)
        m2.append(float(np.square(work, out=work).sum(dtype=np.float64)))
        stats.minimum = min(stats.minimum, float(x.min()))
        stats.maximum = max(stats.maximum, float(x.max()))
        stats.below += int(np.count_nonzero(x < low))
        stats.above += int(np.count_nonzero(x > high))
        counts += _bin_counts(x, edges, work)
    stats.m2 = math.fsum(m2)
    stats.counts = counts
    return stats


# 128 rows of a window: 256 KiB of float32 values and 512 KiB of bin indices at most
_BAND_ROWS = 128


def _band_rows(values: np.ndarray) -> range:
    return range(0, values.shape[0], _BAND_ROWS)


def _float32_bounds(edges: np.ndarray) -> tuple[np.float32, np.float32]:
    """float32 (low, high) such that, for float32 x, ``x < low`` is ``x < edges[0]`` and
    ``x > high`` is ``x > edges[-1]``: a comparison in float32, at half the cost of float64."""
    with np.errstate(over="ignore"):
        low, high = np.float32(edges[0]), np.float32(edges[-1])
    if low < edges[0]:
        low = np.nextafter(low, np.float32(np.inf))
    if high > edges[-1]:
        high = np.nextafter(high, np.float32(-np.inf))
    return low, high


def _valid_values(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """The valid values of a 2-D array, row-major and contiguous whatever its layout."""
    valid = np.isfinite(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= values != nodata
    return values.flatten() if valid.all() else values[valid]


def _bin_counts(x: np.ndarray, edges: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Equal-width histogram, values outside folded into the end bins; bins as np.histogram
    gives them (a value on an edge goes to the bin it opens), several times faster.
    ``work`` (float32, as long as ``x``) is scratch."""
    bins = len(edges) - 1
    scaled = np.subtract(x, np.float32(edges[0]), out=work)
    scaled *= np.float32(bins / (edges[-1] - edges[0]))
    # Values outside fold into the end bins; clipping to the middle of those bins also keeps
    # them (and the outer edges, where either side is the same bin) off the near-edge check.
    np.clip(scaled, 0.5, bins - 0.5, out=scaled)
    floor = np.floor(scaled)
    index = floor.astype(np.intp)  # the type bincount counts in: no copy there
    # float32 rounding may misplace values within a hair of an inner edge: redo those exactly
    off_edge = np.subtract(scaled, floor, out=scaled)  # in [0, 1), exact: the place in the bin
    near = np.flatnonzero((off_edge < np.float32(0.001)) | (off_edge > np.float32(0.999)))
    if near.size:  # inner edges only: the exact bin is one of the two they separate
        index[near] = np.searchsorted(edges, x[near].astype(np.float64), side="right") - 1
    return np.bincount(index, minlength=bins)


def iter_windows(height: int, width: int) -> Iterator[Window]:
    """The fixed statistics windows of a grid, row-major."""
    for row in range(0, height, STATS_WINDOW):
        for col in range(0, width, STATS_WINDOW):
            yield Window(col, row, min(STATS_WINDOW, width - col), min(STATS_WINDOW, height - row))


def window_partials(
    values: np.ndarray,
    row_off: int,
    col_off: int,
    grid_shape: tuple[int, int],
    edges: np.ndarray,
) -> dict[WindowKey, WindowStats]:
    """Partials of the stats windows lying wholly inside a tile at (row_off, col_off)."""
    height, width = values.shape
    first_row = -(-row_off // STATS_WINDOW) * STATS_WINDOW
    first_col = -(-col_off // STATS_WINDOW) * STATS_WINDOW
    partials = {}
    for row in range(first_row, row_off + height, STATS_WINDOW):
        row_end = min(row + STATS_WINDOW, grid_shape[0])
        if row_end > row_off + height:
            break
        for col in range(first_col, col_off + width, STATS_WINDOW):
            col_end = min(col + STATS_WINDOW, grid_shape[1])
            if col_end > col_off + width:
                break
            block = values[row - row_off : row_end - row_off, col - col_off : col_end - col_off]
            partials[(row, col)] = window_stats(block, edges)
    return partials


def merge_partials(
    partials: Mapping[WindowKey, WindowStats],
    raster_path: str,
    edges: np.ndarray,
) -> dict:
    """Merge window partials in fixed order, computing missing windows from the raster."""
    total = WindowStats()
    with rasterio.open(raster_path) as dataset:
        for window in iter_windows(dataset.height, dataset.width):
            part = partials.get((window.row_off, window.col_off))
            if part is None:
                part = window_stats(dataset.read(1, window=window), edges, dataset.nodata)
            total.merge(part)
        return summarize(total, edges, dataset.width * dataset.height)


def compute_stats(
    raster_path: str, value_range: tuple[float, float], bins: int = DEFAULT_BINS
) -> dict:
    """Compute min, max, mean, std, valid fraction and a histogram of band 1.

    Args:
        raster_path: single-band raster, NaN (or its nodata value) marking nodata.
        value_range: (low, high) covered by the histogram's equal-width bins.
        bins: number of histogram bins.

    Returns:
        Plain JSON-able data; min/max/mean/std are None when no pixel is valid.
    """
    return merge_partials({}, raster_path, histogram_edges(value_range, bins))


def summarize(total: WindowStats, edges: np.ndarray, total_pixels: int) -> dict:
    """Plain JSON-able statistics from merged partials."""
    bins = len(edges) - 1
    counts = total.counts if total.counts is not None else np.zeros(bins, dtype=np.int64)
    result = {
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "valid_pixels": total.count,
        "total_pixels": total_pixels,
        "valid_fraction": _round(total.count / total_pixels) if total_pixels else 0.0,
        "histogram": {
            "edges": [_round(float(e)) for e in edges],
            "counts": [int(c) for c in counts],
            "below_range": total.below,
            "above_range": total.above,
            "note": "values outside the edges are counted in the first or last bin",
        },
    }
    if total.count:
        result.update(
            min=_round(total.minimum),
            max=_round(total.maximum),
            mean=_round(total.mean),
            std=_round(max(total.m2 / total.count, 0.0) ** 0.5),
        )
    return result


def _round(value: float) -> float:
    """Round to 10 significant digits, as a plain Python float."""
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def count_summary(path: str) -> dict:
    """How many valid observations the pixels of a count COG had: the mean, and pixels per
    count (read block by block, so memory stays O(block))."""
    totals = np.zeros(1, dtype=np.int64)
    with rasterio.open(path) as dataset:
        for _, window in dataset.block_windows(1):
            counts = np.bincount(dataset.read(1, window=window).ravel())
            if counts.size > totals.size:
                counts[: totals.size] += totals
                totals = counts.astype(np.int64)
            else:
                totals[: counts.size] += counts
    pixels = int(totals.sum())
    mean = float((np.arange(totals.size) * totals).sum() / pixels) if pixels else 0.0
    return {
        "mean": mean,
        "max": int(np.flatnonzero(totals).max()) if pixels else 0,
        "pixels_by_count": {str(n): int(c) for n, c in enumerate(totals) if c},
    }
