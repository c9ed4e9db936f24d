"""Summary statistics of a finished index raster, identical however the raster was tiled.

One pass over the raster's own block windows in row-major order, one block in memory at a
time. Sums are kept *exactly*, so the mean and the population standard deviation are
rounded once, at the end: they do not depend on the block layout (256 or 512 tiles,
strips) and suffer none of the cancellation of ``sum(x²)/n - mean²`` in floating point.

How: float32 values that share a binary exponent are multiples of one power of two and
have 24 significant bits, so float64 sums of up to 2**29 of them are exact. Each block is
summed per exponent (``np.bincount``) and the per-exponent sums are added as Python
integers. Squares are split as (h + l)² = h² + 2hl + l², with h the top 12 significand
bits, so every term again has at most 25 bits.

NaN, infinities and the raster's own nodata value (when it is not NaN) are nodata. Values
are taken as float32, the type the engine writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import rasterio

from madrone.errors import InputError

_SIGNIFICANT_DIGITS = 10
_UNIT_BITS = 300  # sums are integers in units of 2**-300; float32 squares reach 2**-298
_EXPONENTS = 256  # biased float32 exponents
_CHUNK = 1 << 24  # values per exact float64 sum, far below the 2**28 that 25 bits allow
_HIGH_BITS_MASK = np.uint32(0xFFFFF000)  # sign, exponent and the top 11 stored bits


@dataclass
class _ExactSum:
    """An exact running sum, as an integer count of 2**-300 units."""

    units: int = 0

    def add(self, exponent: np.ndarray, terms: np.ndarray) -> None:
        """Add terms grouped by the float32 exponent they were derived from."""
        for partial in np.bincount(exponent, weights=terms, minlength=_EXPONENTS):
            if partial:
                numerator, denominator = float(partial).as_integer_ratio()
                self.units += (numerator << _UNIT_BITS) // denominator

    def value(self) -> Fraction:
        return Fraction(self.units, 1 << _UNIT_BITS)


@dataclass
class _Accumulator:
    """Running count, exact sums, extremes and histogram over the blocks seen so far."""

    edges: np.ndarray
    count: int = 0
    below: int = 0
    above: int = 0
    minimum: float = np.inf
    maximum: float = -np.inf
    total: _ExactSum = field(default_factory=_ExactSum)
    squares: _ExactSum = field(default_factory=_ExactSum)
    counts: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Add the finite float32 values of one block."""
        for start in range(0, values.size, _CHUNK):
            self._add_chunk(np.ascontiguousarray(values[start : start + _CHUNK]))

    def _add_chunk(self, values: np.ndarray) -> None:
        self.count += values.size
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        bits = values.view(np.uint32)
        exponent = ((bits >> np.uint32(23)) & np.uint32(0xFF)).astype(np.intp)
        as64 = values.astype(np.float64)
        self.total.add(exponent, as64)
        high32 = (bits & _HIGH_BITS_MASK).view(np.float32)
        high, low = high32.astype(np.float64), (values - high32).astype(np.float64)
        self.squares.add(exponent, high * high)
        self.squares.add(exponent, 2.0 * high * low)
        self.squares.add(exponent, low * low)
        self._add_histogram(as64)

    def _add_histogram(self, x: np.ndarray) -> None:
        """Count float64 values into the bins; np.searchsorted gives the same, slower."""
        edges, bins = self.edges, len(self.edges) - 1
        self.below += int(np.count_nonzero(x < edges[0]))
        self.above += int(np.count_nonzero(x > edges[-1]))
        # Guess the bin arithmetically, then nudge by one where rounding put a value on the
        # wrong side of an edge; values outside the range fold into the end bins.
        guess = np.floor((x - edges[0]) * (bins / (edges[-1] - edges[0])))
        index = np.clip(guess, 0, bins - 1).astype(np.intp)
        index -= (x < edges[index]) & (index > 0)
        index += (x >= edges[index + 1]) & (index < bins - 1)
        block_counts = np.bincount(index, minlength=bins)
        self.counts = block_counts if self.counts is None else self.counts + block_counts


def compute_stats(raster_path: str, value_range: tuple[float, float], bins: int = 50) -> dict:
    """Compute min, max, mean, std, valid fraction and a histogram of band 1.

    Args:
        raster_path: single-band raster, NaN (or its nodata value) marking nodata.
        value_range: (low, high) covered by the histogram's equal-width bins.
        bins: number of histogram bins.

    Returns:
        Plain JSON-able data; min/max/mean/std are None when no pixel is valid.
    """
    low, high = (float(v) for v in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high) or bins < 1:
        raise InputError(f"bad histogram: range {value_range!r} with {bins} bins")
    acc = _Accumulator(edges=np.linspace(low, high, bins + 1))
    with rasterio.open(raster_path) as ds:
        nodata = ds.nodata
        total_pixels = ds.width * ds.height
        for _, window in ds.block_windows(1):
            block = ds.read(1, window=window).ravel()
            valid = np.isfinite(block)
            if nodata is not None and not np.isnan(nodata):
                valid &= block != nodata
            acc.add(block[valid].astype(np.float32))
    return _summarize(acc, total_pixels)


def _summarize(acc: _Accumulator, total_pixels: int) -> dict:
    bins = len(acc.edges) - 1
    counts = acc.counts if acc.counts is not None else np.zeros(bins, dtype=np.int64)
    result = {
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "valid_pixels": acc.count,
        "total_pixels": total_pixels,
        "valid_fraction": _round(acc.count / total_pixels) if total_pixels else 0.0,
        "histogram": {
            "edges": [_round(float(e)) for e in acc.edges],
            "counts": [int(c) for c in counts],
            "below_range": acc.below,
            "above_range": acc.above,
            "note": "values outside the edges are counted in the first or last bin",
        },
    }
    if acc.count:
        n = acc.count
        total, squares = acc.total.value(), acc.squares.value()
        variance = max((squares * n - total * total) / (n * n), Fraction(0))
        result.update(
            min=_round(acc.minimum),
            max=_round(acc.maximum),
            mean=_round(float(total / n)),
            std=_round(float(variance) ** 0.5),
        )
    return result


def _round(value: float) -> float:
    """Round to 10 significant digits, as a plain Python float."""
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
