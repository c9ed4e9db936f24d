"""What every source kind resolves to: a Scene of BandRefs that workers can read by URI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from madrone.errors import BandMissingError


@dataclass(frozen=True)
class BandRef:
    """Where one band's pixels are and how its digital numbers become reflectance.

    Reflectance = (DN + offset) * scale, with ``offset`` in DN units (0 before processing
    baseline 04.00, -1000 from it on) and ``scale`` = 1 / QUANTIFICATION_VALUE.

    Attributes:
        uri: a path GDAL opens: local file, ``/vsicurl/``, ``/vsis3/``, ``/vsizip/`` ...
        band_index: 1-based band of that file.
        scale: reflectance per DN.
        offset: DN added before scaling.
        nodata: DN that means "no data" (Sentinel-2's NODATA special value is 0).
        saturated: DN that means saturated (65535 in Sentinel-2 products), masked too.
    """

    uri: str
    band_index: int = 1
    scale: float = 1e-4
    offset: float = 0.0
    nodata: float | None = 0.0
    saturated: float | None = None


@dataclass(frozen=True)
class Scene:
    """One source product: its bands by canonical id and what its metadata says.

    Attributes:
        name: the product or file name, used in messages and provenance.
        bands: canonical band id (``B04``, ``SCL``) -> BandRef.
        metadata: plain JSON-able facts: ``datetime``, ``platform``, ``product_type``,
            ``processing_baseline``, ``radiometry`` (a sentence saying where the offset and
            scale came from), ``href`` (what the user gave).
    """

    name: str
    bands: Mapping[str, BandRef]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def band(self, band_id: str) -> BandRef:
        """Return one band, or fail naming the source and listing the bands it has."""
        try:
            return self.bands[band_id]
        except KeyError:
            have = ", ".join(sorted(self.bands)) or "none"
            raise BandMissingError(
                f"{self.name}: band {band_id} is needed but the source has only: {have}"
            ) from None

    def with_radiometry(self, offset: float | None, scale: float | None) -> Scene:
        """Return a copy whose spectral bands use the given offset and/or scale (overrides)."""
        if offset is None and scale is None:
            return self
        bands = {}
        for band_id, ref in self.bands.items():
            if band_id == "SCL":
                bands[band_id] = ref
                continue
            bands[band_id] = replace(
                ref,
                offset=ref.offset if offset is None else float(offset),
                scale=ref.scale if scale is None else float(scale),
            )
        metadata = dict(self.metadata)
        metadata["radiometry"] = (
            f"overridden by the user: offset {offset if offset is not None else 'unchanged'}, "
            f"scale {scale if scale is not None else 'unchanged'} "
            f"(metadata said: {self.metadata.get('radiometry', 'nothing')})"
        )
        return Scene(self.name, bands, metadata)
