"""DN -> reflectance: the one place that decides offsets and scales, and checks the result.

Rules (see ../shared/data/sentinel2/PROVENANCE.md):
- SAFE products: offset = RADIO_ADD_OFFSET (L1C) or BOA_ADD_OFFSET (L2A) when the metadata
  has it, else 0 (baselines before 04.00); scale = 1 / QUANTIFICATION_VALUE.
- STAC items: ``raster:bands`` scale and offset, unless the item says the offset was already
  removed from the pixels (``earthsearch:boa_offset_applied`` or the older
  ``sentinel:boa_offset_applied``): then the offset is 0, never applied twice.
- Bare files: by default offset 0 and scale 1e-4; the user overrides with --offset/--scale.
Whatever the rule, the reflectance actually computed is checked for plausibility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from madrone.expression import DnBand

DEFAULT_QUANTIFICATION = 10000.0
OFFSET_BASELINE = (4, 0)
BOA_OFFSET_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")

# Thresholds for the plausibility check, as fractions of valid pixels.
MOSTLY = 0.5
FAR_ABOVE_ONE = 1.5


def parse_baseline(text: str | None) -> tuple[int, int] | None:
    """Parse a processing baseline like ``04.00`` or ``N0400`` into (major, minor)."""
    if not text:
        return None
    digits = text.strip().lstrip("Nn")
    if "." in digits:
        major, _, minor = digits.partition(".")
    elif len(digits) == 4 and digits.isdigit():
        major, minor = digits[:2], digits[2:]
    else:
        return None
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def expected_offset(baseline: tuple[int, int] | None) -> float:
    """The DN offset the rules imply for a baseline when the metadata states none."""
    if baseline is not None and baseline >= OFFSET_BASELINE:
        return -1000.0
    return 0.0


def stac_offset_applied(properties: dict) -> bool | None:
    """True/False when a STAC item states whether the BOA offset is already in the pixels."""
    for key in BOA_OFFSET_FLAGS:
        if key in properties:
            return bool(properties[key])
    return None


@dataclass
class ReflectanceCounts:
    """Counts of valid reflectance values per band, summed over tiles: cheap, mergeable."""

    valid: int = 0
    negative: int = 0
    far_above_one: int = 0

    def add_array(self, reflectance: np.ndarray) -> None:
        """Count a tile's reflectance values (NaN = invalid)."""
        self.valid += int(np.count_nonzero(np.isfinite(reflectance)))
        self.negative += int(np.count_nonzero(reflectance < 0))
        self.far_above_one += int(np.count_nonzero(reflectance > FAR_ABOVE_ONE))

    def add_dn(self, dn: np.ndarray, band: DnBand) -> None:
        """Count a tile's values from its digital numbers, without computing reflectance:
        on integer DN every test is one cheap comparison."""
        if dn.dtype.kind == "f" or band.scale <= 0:
            reflectance = dn.astype(np.float32)  # a copy, so the arithmetic can be in place
            reflectance += np.float32(band.offset)
            reflectance *= np.float32(band.scale)
            self.add_array(reflectance)
            return
        # For integer DN: reflectance < 0 <=> DN < ceil(-offset); > 1.5 <=> DN > floor(1.5/s - o)
        negative_below = math.ceil(-band.offset)
        far_above = math.floor(FAR_ABOVE_ONE / band.scale - band.offset)
        low, high = band.dn_range or (-math.inf, math.inf)
        invalid = [
            int(np.count_nonzero(dn == value)) if low <= value <= high else 0
            for value in band.invalid
        ]
        self.valid += dn.size - sum(invalid)
        if low < negative_below:
            self.negative += int(np.count_nonzero(dn < negative_below)) - sum(
                n for n, value in zip(invalid, band.invalid, strict=True) if value < negative_below
            )
        if high > far_above:
            self.far_above_one += int(np.count_nonzero(dn > far_above)) - sum(
                n for n, value in zip(invalid, band.invalid, strict=True) if value > far_above
            )

    def merge(self, other: ReflectanceCounts) -> None:
        self.valid += other.valid
        self.negative += other.negative
        self.far_above_one += other.far_above_one

    def problem(self) -> str | None:
        """Say what is implausible, or None when the values look like reflectance."""
        if self.valid == 0:
            return None
        if self.negative / self.valid > MOSTLY:
            return f"{self.negative / self.valid:.0%} of valid pixels are negative"
        if self.far_above_one / self.valid > MOSTLY:
            share = self.far_above_one / self.valid
            return f"{share:.0%} of valid pixels are above {FAR_ABOVE_ONE}"
        return None
