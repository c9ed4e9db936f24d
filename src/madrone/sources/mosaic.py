"""What a mosaic request reads: one GDAL-readable mosaic, a STAC item, or a STAC catalog.

The original system queried one provider's cloud mosaic by two corners. Here the source is
any raster GDAL opens (a local file, an http(s) COG read by ranges, ``s3://``, ``az://``)
with its bands named by descriptions or a band map, or a STAC catalog (static, or an API)
searched for the area. Without a source, the sample mosaic bundled with madrone is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources

from madrone.errors import InputError, SourceError
from madrone.sources.catalog import SearchSpec
from madrone.sources.files import RASTER_SUFFIXES
from madrone.sources.spec import REMOTE_PREFIXES, SourceSpec

SAMPLE_MOSAIC = "data/mosaic/S2A_L2A_T29RKH_20200219_mosaic.tif"
# A 0.1 x 0.1 degree area inside the sample mosaic (a wadi in the Western Sahara).
SAMPLE_CORNERS = (25.08, -11.42, 24.98, -11.32)


def sample_mosaic() -> str:
    """Path of the sample mosaic COG shipped with the package."""
    return str(resources.files("madrone") / SAMPLE_MOSAIC)


def mosaic_source(
    source: str | None,
    *,
    band_map: Mapping[str, int] | None = None,
    bands: Mapping[str, str] | None = None,
    datetime: str | None = None,
    max_cloud: float | None = None,
    collections: Sequence[str] = (),
    limit: int = 500,
) -> SourceSpec | SearchSpec:
    """Recognise a mosaic request's source: a raster (or band files), a STAC item, or a
    catalog to search. Search options on a raster are refused, not ignored."""
    if bands:
        return SourceSpec(bands=dict(bands))
    source = source or sample_mosaic()
    if _kind(source) == "catalog":
        return SearchSpec(source, tuple(collections), datetime, max_cloud, limit)
    ignored = [
        name
        for name, value in (("--max-cloud", max_cloud), ("--collection", collections))
        if value not in (None, (), [])
    ]
    if ignored:
        raise InputError(
            f"{source} is one raster, not a STAC catalog: {', '.join(ignored)} cannot apply"
        )
    return SourceSpec(path=source, band_map=dict(band_map or {}))


def _kind(source: str) -> str:
    """``raster``, ``item`` or ``catalog`` (a static catalog, collection or API)."""
    lowered = source.lower().split("?")[0]
    if lowered.endswith(RASTER_SUFFIXES):
        return "raster"
    remote = lowered.startswith(REMOTE_PREFIXES)
    if lowered.endswith(".json") and not remote:
        return "item" if _json_type(source) == "Feature" else "catalog"
    if remote:
        return "catalog"  # a STAC API root or a remote catalog.json
    if not os.path.exists(source):
        raise SourceError(f"{source}: no such file")
    return "raster"


def _json_type(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise SourceError(f"{path}: cannot read ({error.strerror})") from None
    except ValueError as error:
        raise SourceError(f"{path}: not valid JSON ({error})") from None
    return data.get("type") if isinstance(data, dict) else None
