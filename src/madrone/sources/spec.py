"""SourceSpec: what the user named, as plain data; ``open_source`` turns it into a Scene."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from madrone.errors import SourceError
from madrone.sources.base import Scene
from madrone.sources.files import RASTER_SUFFIXES, read_band_files, read_band_folder, read_multiband

REMOTE_PREFIXES = ("http://", "https://", "s3://", "az://", "gs://", "/vsi")


@dataclass(frozen=True)
class SourceSpec:
    """One source as the user gave it. JSON-serialisable, so a queue can carry it.

    Attributes:
        path: folder of band files, SAFE folder or .zip, STAC item JSON, or a raster (local
            path or URL). Empty when ``bands`` lists the files.
        bands: explicit band -> path pairs (``--band B04=PATH``).
        band_map: band -> 1-based index for a multi-band raster (``--band-map B04=3``).
        offset: DN offset overriding the metadata (``--offset``).
        scale: reflectance per DN overriding the metadata (``--scale``).
        item: a whole STAC item (absolute hrefs), as a catalog search returns it, so the
            item is read the same way on every machine without its catalog.
    """

    path: str = ""
    bands: dict[str, str] = field(default_factory=dict)
    band_map: dict[str, int] = field(default_factory=dict)
    offset: float | None = None
    scale: float | None = None
    item: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceSpec:
        return cls(**data)

    @property
    def label(self) -> str:
        if self.item is not None:
            return str(self.item.get("id", "STAC item"))
        return self.path or ", ".join(f"{b}={p}" for b, p in self.bands.items())


def open_source(spec: SourceSpec) -> Scene:
    """Recognise the kind of source and read its metadata (no pixels are read)."""
    scene = _open_kind(spec)
    return scene.with_radiometry(spec.offset, spec.scale)


def _open_kind(spec: SourceSpec) -> Scene:
    if spec.item is not None:
        from madrone.sources.stac import read_stac_item

        return read_stac_item(spec.item)
    if spec.bands:
        return read_band_files(spec.bands)
    path = spec.path
    if not path:
        raise SourceError("a source needs a path or --band pairs")
    lowered = path.lower().rstrip("/")
    remote = lowered.startswith(REMOTE_PREFIXES)
    if lowered.endswith(".json"):
        from madrone.sources.stac import read_stac_item

        return read_stac_item(path)
    if lowered.endswith((".safe", ".zip")) or _has_product_metadata(path):
        from madrone.sources.safe import read_safe

        return read_safe(path)
    if not remote and os.path.isdir(path):
        return read_band_folder(path)
    if remote or lowered.endswith(RASTER_SUFFIXES):
        if not remote and not os.path.exists(path):
            raise SourceError(f"{path}: no such file or folder")
        return read_multiband(path, spec.band_map or None)
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file or folder")
    raise SourceError(
        f"{path}: not a recognised source (a folder of band files, a SAFE folder or .zip, "
        "a STAC item .json, or a raster file)"
    )


def _has_product_metadata(path: str) -> bool:
    return os.path.isdir(path) and any(
        name.startswith("MTD_MSIL") and name.endswith(".xml") for name in os.listdir(path)
    )
