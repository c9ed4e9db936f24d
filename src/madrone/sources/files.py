"""Band files: a folder recognised by band id in the names, explicit band paths, or a
multi-band GeoTIFF with a band map."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import rasterio
from rasterio.errors import RasterioIOError

from madrone.bands import BANDS, ESA_ORDER, band_id_in_filename, normalize_band
from madrone.errors import InputError, SourceError
from madrone.sources.base import BandRef, Scene
from madrone.sources.gdal import gdal_env, gdal_path

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
BARE_RADIOMETRY = (
    "no product metadata: offset 0 DN and scale 1/10000 assumed "
    "(products of baseline 04.00 or later need --offset -1000)"
)


_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d\d)(0[1-9]|1[0-2])([0-3]\d)(?:T(\d\d)(\d\d)(\d\d))?")


def date_from_names(*names: str) -> str | None:
    """The acquisition date in Sentinel-2 style names (``..._20160112T155032_...``), as ISO."""
    for name in names:
        match = _DATE_IN_NAME.search(os.path.basename(str(name).rstrip("/")))
        if match:
            year, month, day, hh, mm, ss = match.groups()
            return f"{year}-{month}-{day}T{hh or '00'}:{mm or '00'}:{ss or '00'}Z"
    return None


_ISO_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d):(\d\d))?")


def date_from_tags(tags: dict[str, str]) -> str | None:
    """The acquisition time a raster states in an ``ACQUISITION_DATE`` tag (ISO date or
    date and time). ``TIFFTAG_DATETIME`` is not read: by the TIFF standard it is when the
    file was made, not when the ground was seen."""
    match = _ISO_TIME.match(tags.get("ACQUISITION_DATE", "").strip())
    if not match:
        return None
    year, month, day, hh, mm, ss = match.groups()
    return f"{year}-{month}-{day}T{hh or '00'}:{mm or '00'}:{ss or '00'}Z"


def _resolution_of(path: str) -> float:
    try:
        with gdal_env(), rasterio.open(path) as dataset:
            return abs(dataset.transform.a)
    except RasterioIOError as error:
        raise SourceError(f"{path}: cannot open as a raster ({error})") from error


_COMMON_NAMES = {info.common_name: band_id for band_id, info in BANDS.items()}


def band_of_file(filename: str) -> str | None:
    """The band a file holds, by the band id in its name (``T18SVG_..._B04_10m.jp2``) or by
    a common name that is its whole stem (``red.tif``, ``nir.tif``)."""
    stem = os.path.splitext(os.path.basename(filename))[0].lower()
    return band_id_in_filename(filename) or _COMMON_NAMES.get(stem)


def read_band_folder(folder: str) -> Scene:
    """A local folder of single-band files named by band id or common name (``B04.tif``,
    ``red.tif``); the finest file per band wins."""
    found: dict[str, list[str]] = {}
    for root, _dirs, names in os.walk(folder):
        for filename in sorted(names):
            if not filename.lower().endswith(RASTER_SUFFIXES):
                continue
            band_id = band_of_file(filename)
            if band_id:
                found.setdefault(band_id, []).append(os.path.join(root, filename))
    if not found:
        raise SourceError(
            f"{folder}: no band files found (expected names with a band id such as B04.tif "
            "or T18SVG_20160112T155032_B04_10m.jp2, or a common name such as red.tif)"
        )
    bands = {}
    for band_id, paths in sorted(found.items()):
        best = min(paths, key=_resolution_of) if len(paths) > 1 else paths[0]
        bands[band_id] = _bare_ref(best, band_id)
    name = os.path.basename(os.path.normpath(folder))
    metadata = _bare_meta(folder, [folder, *(ref.uri for ref in bands.values())])
    return Scene(name, bands, metadata)


def read_band_files(paths: Mapping[str, str], name: str | None = None) -> Scene:
    """Explicit ``band -> path`` pairs (``--band B04=PATH``); paths may be URLs."""
    bands = {}
    for alias, path in paths.items():
        band_id = normalize_band(alias)
        if band_id is None:
            raise InputError(f"--band {alias}={path}: {alias!r} is not a Sentinel-2 band")
        bands[band_id] = _bare_ref(gdal_path(path), band_id)
    first = next(iter(paths.values()))
    scene_name = name or os.path.splitext(os.path.basename(first))[0]
    metadata = _bare_meta(dict(paths), list(paths.values()))
    return Scene(scene_name, bands, metadata)


def read_multiband(path: str, band_map: Mapping[str, int] | None = None) -> Scene:
    """A multi-band raster: bands from a band map, a sibling product ``_MTD.xml`` (13 bands in
    ESA order, with its offsets), or band descriptions that name bands."""
    uri = gdal_path(path)
    try:
        with gdal_env(), rasterio.open(uri) as dataset:
            count, descriptions = dataset.count, dataset.descriptions
            tagged = date_from_tags(dataset.tags())
    except RasterioIOError as error:
        raise SourceError(f"{path}: cannot open as a raster ({error})") from error
    name = os.path.splitext(os.path.basename(path))[0]
    meta = _bare_meta(path, when=tagged)
    if band_map:
        return Scene(name, _mapped_bands(path, uri, count, band_map), meta)
    from madrone.sources.safe import find_product_metadata

    mtd = find_product_metadata(path)
    if mtd and count == len(ESA_ORDER):
        return _stack_with_metadata(path, uri, mtd)
    by_description = {normalize_band(text): i + 1 for i, text in enumerate(descriptions) if text}
    by_description.pop(None, None)
    if by_description:
        return Scene(name, {b: _bare_ref(uri, b, i) for b, i in by_description.items()}, meta)
    if count == 1 and band_id_in_filename(path):
        return Scene(name, {band_id_in_filename(path): _bare_ref(uri, "")}, meta)
    raise SourceError(
        f"{path}: {count} bands with no band names; give a band map, e.g. --band-map B04=3,B08=4"
    )


def _stack_with_metadata(path: str, uri: str, mtd_path: str) -> Scene:
    from madrone.sources.safe import parse_product_metadata, radiometry

    with open(mtd_path, "rb") as handle:
        meta = parse_product_metadata(handle.read(), mtd_path)
    offsets, scale, sentence = radiometry(meta)
    bands = {
        band_id: BandRef(
            uri,
            i + 1,
            scale=scale,
            offset=offsets.get(band_id, 0.0),
            nodata=meta.nodata,
            saturated=meta.saturated,
        )
        for i, band_id in enumerate(ESA_ORDER)
    }
    metadata = {
        "href": path,
        "radiometry": sentence,
        "processing_baseline": meta.processing_baseline,
        "product_type": meta.product_type,
        "datetime": meta.datetime,
        "platform": meta.platform,
    }
    return Scene(os.path.splitext(os.path.basename(path))[0], bands, metadata)


def _mapped_bands(path: str, uri: str, count: int, band_map: Mapping[str, int]) -> dict:
    bands = {}
    for alias, index in band_map.items():
        band_id = normalize_band(alias)
        if band_id is None:
            raise InputError(f"band map {alias}={index}: {alias!r} is not a Sentinel-2 band")
        if not 1 <= int(index) <= count:
            raise InputError(f"band map {alias}={index}: {path} has bands 1 to {count}")
        bands[band_id] = _bare_ref(uri, band_id, int(index))
    return bands


def _bare_ref(uri: str, band_id: str, band_index: int = 1) -> BandRef:
    if band_id == "SCL":
        return BandRef(uri, band_index, scale=1.0, offset=0.0, nodata=0.0)
    return BandRef(uri, band_index, scale=1e-4, offset=0.0, nodata=0.0, saturated=65535.0)


def _bare_meta(href: str | dict, names: list[str] | None = None, when: str | None = None) -> dict:
    metadata = {"href": href, "radiometry": BARE_RADIOMETRY}
    when = when or date_from_names(*(names or [href]))
    if when:
        metadata["datetime"] = when
    return metadata
