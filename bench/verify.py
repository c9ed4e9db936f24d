"""Check a tool's NDVI output against NDVI computed here from the input bands.

Every tool is compared with the same independent reference (float64 arithmetic on the DN,
nodata where either band is 0), so agreement with it means agreement with each other. Only a
sample of windows is read: a fixed set of random ones plus the corners and the swath edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

TOLERANCE = 1e-5
WINDOW_PX = 256
RANDOM_WINDOWS = 12


@dataclass(frozen=True)
class Verdict:
    """Whether an output matches the reference, and by how much it differs."""

    ok: bool
    max_abs_diff: float
    pixels_compared: int
    message: str


def sample_windows(height: int, width: int, seed: int = 0) -> list[Window]:
    """Fixed windows: random ones, the four corners, and the middle of the left edge."""
    side_rows, side_cols = min(WINDOW_PX, height), min(WINDOW_PX, width)
    last_row, last_col = height - side_rows, width - side_cols
    rng = np.random.default_rng(seed)
    offsets = [(0, 0), (0, last_col), (last_row, 0), (last_row, last_col), (last_row // 2, 0)]
    offsets += [
        (int(rng.integers(0, last_row + 1)), int(rng.integers(0, last_col + 1)))
        for _ in range(RANDOM_WINDOWS)
    ]
    return [Window(col, row, side_cols, side_rows) for row, col in offsets]


def reference_ndvi(red_dn: np.ndarray, nir_dn: np.ndarray) -> np.ndarray:
    red, nir = red_dn.astype(np.float64) / 1e4, nir_dn.astype(np.float64) / 1e4
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[(red_dn == 0) | (nir_dn == 0)] = np.nan
    return ndvi


def read_as_nan(src: rasterio.DatasetReader, window: Window) -> np.ndarray:
    """Band 1 as float64 with nodata (declared value or NaN) turned into NaN."""
    data = src.read(1, window=window, masked=True).astype(np.float64)
    return data.filled(np.nan)


def verify_output(output: Path, red_path: Path, nir_path: Path) -> Verdict:
    """Compare ``output`` with the reference NDVI on the sample windows."""
    with (
        rasterio.open(output) as out,
        rasterio.open(red_path) as red,
        rasterio.open(nir_path) as nir,
    ):
        if (out.height, out.width) != (red.height, red.width):
            return Verdict(False, np.inf, 0, f"shape {out.shape} != input {red.shape}")
        if out.crs != red.crs or not out.transform.almost_equals(red.transform):
            return Verdict(False, np.inf, 0, f"grid {out.crs} {out.transform} != input's")
        worst, compared = 0.0, 0
        for window in sample_windows(red.height, red.width):
            expected = reference_ndvi(red.read(1, window=window), nir.read(1, window=window))
            got = read_as_nan(out, window)
            nodata_mismatch = np.isnan(expected) != np.isnan(got)
            if nodata_mismatch.any():
                return Verdict(
                    False,
                    np.inf,
                    compared,
                    f"{int(nodata_mismatch.sum())} pixels differ in nodata in window {window}",
                )
            valid = ~np.isnan(expected)
            if valid.any():
                worst = max(worst, float(np.abs(got[valid] - expected[valid]).max()))
            compared += int(valid.sum())
    ok = worst <= TOLERANCE
    message = f"max |diff| {worst:.2e} over {compared} pixels"
    return Verdict(ok, worst, compared, message if ok else f"{message} > {TOLERANCE:g}")
