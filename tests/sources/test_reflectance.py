"""Tests for madrone.sources.reflectance's counts: from DN equal to those from reflectance."""

from __future__ import annotations

import numpy as np
import pytest

from madrone.expression import DnBand
from madrone.sources.reflectance import ReflectanceCounts


def counted_from_reflectance(dn: np.ndarray, band: DnBand) -> ReflectanceCounts:
    """The reference: reflectance in float64, NaN at the invalid DN, counted as such."""
    reflectance = (dn.astype(np.float64) + band.offset) * band.scale
    reflectance[np.isin(dn, band.invalid)] = np.nan
    counts = ReflectanceCounts()
    counts.add_array(reflectance)
    return counts


@pytest.mark.parametrize(
    "low, high",
    [
        (0, 65535),  # every special value and both out-of-range sides present
        (1000, 16000),  # neither special value; nothing negative or far above one
        (0, 12000),  # nodata, no saturated value, nothing far above one
        (1200, 65535),  # saturated, nothing negative
    ],
)
@pytest.mark.parametrize("known_range", [False, True])
def test_counts_from_dn_equal_counts_from_reflectance(low, high, known_range):
    rng = np.random.default_rng(7)
    dn = rng.integers(low, high + 1, (50, 70)).astype(np.uint16)
    dn[0, :2] = [low, high]  # the range's ends are in the tile
    band = DnBand(offset=-1000.0, scale=1e-4, invalid=(0, 65535))
    if known_range:
        band = DnBand(band.offset, band.scale, band.invalid, (int(dn.min()), int(dn.max())))
    counts = ReflectanceCounts()
    counts.add_dn(dn, band)
    assert counts == counted_from_reflectance(dn, band)
    assert counts.valid == dn.size - np.isin(dn, band.invalid).sum()
    # DN below 1000 are negative reflectance; above 16000, above 1.5 (65535 is not counted)
    assert counts.negative == np.count_nonzero((dn > 0) & (dn < 1000))
    assert counts.far_above_one == np.count_nonzero((dn > 16000) & (dn < 65535))
