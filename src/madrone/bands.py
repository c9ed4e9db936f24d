"""Sentinel-2 band identities and every alias madrone accepts for them.

Canonical ids are the ESA names (``B01`` .. ``B12``, ``B8A``) plus ``SCL`` for the L2A scene
classification. Aliases come from three vocabularies: STAC/earth-search common names
(``red``, ``nir``, ``swir16``), the spectral index catalog's letters (``R``, ``N``, ``S1``),
and loose spellings (``B4``, ``b04``, ``B8``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class BandInfo:
    """One Sentinel-2 MSI band."""

    band_id: str
    common_name: str
    catalog_letter: str | None
    resolution_m: int
    center_nm: float


BANDS: dict[str, BandInfo] = {
    info.band_id: info
    for info in (
        BandInfo("B01", "coastal", "A", 60, 443),
        BandInfo("B02", "blue", "B", 10, 490),
        BandInfo("B03", "green", "G", 10, 560),
        BandInfo("B04", "red", "R", 10, 665),
        BandInfo("B05", "rededge1", "RE1", 20, 705),
        BandInfo("B06", "rededge2", "RE2", 20, 740),
        BandInfo("B07", "rededge3", "RE3", 20, 783),
        BandInfo("B08", "nir", "N", 10, 842),
        BandInfo("B8A", "nir08", "N2", 20, 865),
        BandInfo("B09", "nir09", "WV", 60, 945),
        BandInfo("B10", "cirrus", None, 60, 1375),
        BandInfo("B11", "swir16", "S1", 20, 1610),
        BandInfo("B12", "swir22", "S2", 20, 2190),
        BandInfo("SCL", "scl", None, 20, 0),
    )
}

# Order of bands in ESA product metadata (IMAGE_FILE lists, band_id attributes 0..12).
ESA_ORDER: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)

SPECTRAL_BANDS: tuple[str, ...] = ESA_ORDER

_BY_COMMON = {info.common_name: info.band_id for info in BANDS.values()}
_BY_LETTER = {info.catalog_letter: info.band_id for info in BANDS.values() if info.catalog_letter}
_LOOSE = re.compile(r"^b0?(\d{1,2}|8a)$", re.IGNORECASE)


def normalize_band(name: str) -> str | None:
    """Return the canonical band id for any accepted alias, or None if it is not a band.

    Catalog letters are case-sensitive (``N`` is NIR, ``n`` is not a band); everything else
    is matched case-insensitively.
    """
    if name in _BY_LETTER:
        return _BY_LETTER[name]
    lowered = name.strip().lower()
    if lowered in _BY_COMMON:
        return _BY_COMMON[lowered]
    if lowered == "scl":
        return "SCL"
    match = _LOOSE.match(lowered)
    if match:
        digits = match.group(1).upper()
        band_id = "B8A" if digits == "8A" else f"B{int(digits):02d}"
        return band_id if band_id in BANDS else None
    return None


def catalog_letter_to_band(letter: str) -> str | None:
    """Map a spectral-index-catalog band letter (``N``, ``S1``) to a Sentinel-2 band id."""
    return _BY_LETTER.get(letter)


def band_id_in_filename(filename: str) -> str | None:
    """Find the band id in a band file's name (``B04.tif``, ``T18SVG_..._B04_10m.jp2``).

    The id must stand as its own token, delimited by start/end, ``_``, ``-`` or ``.``.
    """
    stem = filename.rsplit("/", 1)[-1]
    for token in re.split(r"[_.\-]", stem):
        upper = token.upper()
        if upper in BANDS:
            return upper
    return None
