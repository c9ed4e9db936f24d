"""Sentinel-2 SAFE products (a ``.SAFE`` folder or its ``.zip``) read as a Scene.

The product metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) says where each band's image
is and how its digital numbers become reflectance. No pixels are read here: band images are
named by GDAL paths (``/vsizip/`` inside a zip) that workers open themselves.
"""

from __future__ import annotations

import os
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from madrone.bands import ESA_ORDER, band_id_in_filename
from madrone.errors import SourceError
from madrone.sources.base import BandRef, Scene
from madrone.sources.reflectance import DEFAULT_QUANTIFICATION, expected_offset, parse_baseline

MTD_NAMES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")
IMAGE_SUFFIXES = (".jp2", ".tif", ".tiff")

_ROOTS = {"Level-1C_User_Product": "L1C", "Level-2A_User_Product": "L2A"}
_OFFSET_TAG = {"L1C": "RADIO_ADD_OFFSET", "L2A": "BOA_ADD_OFFSET"}
_QUANTIFICATION_TAG = {"L1C": "QUANTIFICATION_VALUE", "L2A": "BOA_QUANTIFICATION_VALUE"}
_TILE = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")
_RESOLUTION = re.compile(r"(?:^|[/_])R?(\d{2,3})m(?:$|[/_.])")


@dataclass(frozen=True)
class ProductMetadata:
    """What a SAFE product metadata file says, as plain values.

    Attributes:
        source: the file name or path the XML came from (used in messages).
        product_uri: ``PRODUCT_URI`` (``S2B_MSIL1C_..._T32UPC_....SAFE``), if present.
        product_type: ``S2MSI1C`` or ``S2MSI2A``.
        level: ``L1C`` or ``L2A``.
        processing_baseline: e.g. ``04.00``, or None when absent.
        quantification: QUANTIFICATION_VALUE (L1C) or BOA_QUANTIFICATION_VALUE (L2A).
        offsets: band id -> DN offset (RADIO_ADD_OFFSET / BOA_ADD_OFFSET); empty when absent.
        nodata: the NODATA special value.
        saturated: the SATURATED special value.
        datetime: product start (sensing) time, ISO 8601.
        spacecraft: ``Sentinel-2A`` ...
        tile_id: MGRS tile such as ``32UPC``, when the product name or granule says it.
        image_files: band id -> image path relative to the product folder, no extension.
    """

    source: str
    product_uri: str | None
    product_type: str
    level: str
    processing_baseline: str | None
    quantification: float | None
    offsets: Mapping[str, float] = field(default_factory=dict)
    nodata: float | None = None
    saturated: float | None = None
    datetime: str | None = None
    spacecraft: str | None = None
    tile_id: str | None = None
    image_files: Mapping[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> str | None:
        """The spacecraft as STAC spells it (``sentinel-2a``), so both sources agree."""
        return self.spacecraft.lower() if self.spacecraft else None


def parse_product_metadata(xml: bytes, name: str) -> ProductMetadata:
    """Parse ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` bytes; ``name`` is used in errors.

    Raises:
        SourceError: the XML is malformed, is not product-level metadata, or holds values
            that are not numbers where numbers belong.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise SourceError(f"{name}: not valid XML ({error})") from error
    level = _level_of(root, name)
    image_files = _image_files(root)
    product_uri = _text(root, "PRODUCT_URI")
    granules = [g.get("granuleIdentifier", "") for g in root.iterfind(".//{*}Granule")]
    return ProductMetadata(
        source=name,
        product_uri=product_uri,
        product_type=_text(root, "PRODUCT_TYPE") or f"S2MSI{level[1:]}",
        level=level,
        processing_baseline=_text(root, "PROCESSING_BASELINE"),
        quantification=_number(root, _QUANTIFICATION_TAG[level], name),
        offsets=_offsets(root, _OFFSET_TAG[level], name),
        nodata=_special_value(root, "NODATA", name),
        saturated=_special_value(root, "SATURATED", name),
        datetime=_iso(_text(root, "PRODUCT_START_TIME") or _text(root, "DATATAKE_SENSING_START")),
        spacecraft=_text(root, "SPACECRAFT_NAME"),
        tile_id=_tile_of([product_uri or "", *granules, *image_files.values()]),
        image_files=image_files,
    )


def radiometry(meta: ProductMetadata) -> tuple[dict[str, float], float, str]:
    """Offsets per band (DN), the scale, and a sentence saying where both came from.

    The offsets come from the metadata's offset list; a product of baseline 04.00 or later
    without one gets the offset the baseline implies, and the sentence says so.
    """
    tag = _OFFSET_TAG[meta.level]
    source = posixpath.basename(meta.source.replace(os.sep, "/"))
    baseline = meta.processing_baseline or "unknown"
    implied = expected_offset(parse_baseline(meta.processing_baseline))
    offsets = {band_id: meta.offsets.get(band_id, implied) for band_id in ESA_ORDER}
    if meta.offsets:
        origin = f"from {tag} in {source} (baseline {baseline})"
        unlisted = [band_id for band_id in ESA_ORDER if band_id not in meta.offsets]
        if unlisted:
            origin += f"; {', '.join(unlisted)} not listed, {implied:g} implied by the baseline"
    elif implied:
        origin = f"implied by baseline {baseline} ({source} has no {tag} list)"
    else:
        origin = f"({source} has no {tag} list; baseline {baseline} predates offsets)"
    quantification = meta.quantification or DEFAULT_QUANTIFICATION
    scale_text = f"scale 1/{quantification:g}"
    if meta.quantification is None:
        tag_q = _QUANTIFICATION_TAG[meta.level]
        scale_text += f" (default: {source} has no {tag_q})"
    sentence = f"{_describe_offsets(offsets)} {origin}, {scale_text}"
    return offsets, 1.0 / quantification, sentence


def read_safe(path: str) -> Scene:
    """Read a SAFE product: a ``.SAFE`` folder, a folder holding its MTD file, or a ``.zip``.

    Raises:
        SourceError: the path is missing, holds no product metadata, the zip is unreadable,
            or no band image is found; the message names the path.
    """
    layout = _open_layout(path)
    meta = parse_product_metadata(layout.mtd_bytes, layout.mtd_label)
    files = _band_files(meta, layout.files)
    if not files:
        raise SourceError(
            f"{path}: no band images found (neither the IMAGE_FILE list of {layout.mtd_label} "
            "nor GRANULE/*/IMG_DATA/ names any existing .jp2/.tif file)"
        )
    offsets, scale, sentence = radiometry(meta)
    # Sentinel-2 products always use 0 for NODATA; the metadata normally says so too.
    nodata = meta.nodata if meta.nodata is not None else 0.0
    bands: dict[str, BandRef] = {}
    for band_id, rel in files.items():
        uri = layout.uri_prefix + rel
        if band_id == "SCL":
            bands[band_id] = BandRef(uri, 1, scale=1.0, offset=0.0, nodata=0.0)
        else:
            bands[band_id] = BandRef(uri, 1, scale, offsets[band_id], nodata, meta.saturated)
    name = (meta.product_uri or layout.folder_name).removesuffix(".SAFE")
    metadata = {
        "href": path,
        "datetime": meta.datetime,
        "platform": meta.platform,
        "product_type": meta.product_type,
        "level": meta.level,
        "processing_baseline": meta.processing_baseline,
        "tile": meta.tile_id,
        "radiometry": sentence,
    }
    return Scene(name, bands, metadata)


def find_product_metadata(tif_path: str) -> str | None:
    """For a multi-band stack ``X.tif``, the sibling ``X_MTD.xml`` if it exists, else None."""
    stem, suffix = os.path.splitext(tif_path)
    if suffix.lower() not in (".tif", ".tiff"):
        return None
    candidate = stem + "_MTD.xml"
    return candidate if os.path.isfile(candidate) else None


# --- XML helpers -----------------------------------------------------------------------------


def _level_of(root: ET.Element, name: str) -> str:
    tag = root.tag.rsplit("}", 1)[-1]
    if tag in _ROOTS:
        return _ROOTS[tag]
    if tag.endswith("_Tile_ID"):
        raise SourceError(
            f"{name}: this is tile-level metadata ({tag}, the content of a granule's "
            "MTD_TL.xml), not product metadata: it has no image file list, quantification "
            "or offsets. The product's own MTD_MSIL1C.xml / MTD_MSIL2A.xml is needed."
        )
    raise SourceError(
        f"{name}: not Sentinel-2 product metadata (root element {tag}; expected "
        "Level-1C_User_Product or Level-2A_User_Product)"
    )


def _text(root: ET.Element, tag: str) -> str | None:
    element = root.find(f".//{{*}}{tag}")
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _to_float(text: str | None, what: str, name: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise SourceError(f"{name}: {what} is {text!r}, not a number") from None


def _number(root: ET.Element, tag: str, name: str) -> float | None:
    return _to_float(_text(root, tag), tag, name)


def _offsets(root: ET.Element, tag: str, name: str) -> dict[str, float]:
    offsets = {}
    for element in root.iterfind(f".//{{*}}{tag}"):
        index = element.get("band_id", "")
        if not index.isdigit() or int(index) >= len(ESA_ORDER):
            raise SourceError(f"{name}: {tag} has band_id {index!r}, expected 0 to 12")
        offsets[ESA_ORDER[int(index)]] = _to_float(element.text, tag, name)
    return offsets


def _special_value(root: ET.Element, kind: str, name: str) -> float | None:
    for element in root.iterfind(".//{*}Special_Values"):
        if _text(element, "SPECIAL_VALUE_TEXT") == kind:
            return _number(element, "SPECIAL_VALUE_INDEX", name)
    return None


def _image_files(root: ET.Element) -> dict[str, str]:
    candidates = []
    for element in root.iterfind(".//{*}IMAGE_FILE"):
        rel = (element.text or "").strip()
        band_id = band_id_in_filename(rel)
        if band_id:
            candidates.append((band_id, rel))
    return _finest(candidates)


def _finest(candidates: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Keep one path per band: the finest resolution (L2A lists 10, 20 and 60 m versions)."""
    best: dict[str, tuple[int, str]] = {}
    for band_id, rel in candidates:
        match = _RESOLUTION.search(rel)
        # L1C names carry no resolution: each band exists once, at its native resolution.
        resolution = int(match.group(1)) if match else 0
        if band_id not in best or resolution < best[band_id][0]:
            best[band_id] = (resolution, rel)
    order = [*ESA_ORDER, "SCL"]
    return {b: best[b][1] for b in sorted(best, key=order.index)}


def _tile_of(names: Iterable[str]) -> str | None:
    for text in names:
        match = _TILE.search(posixpath.basename(text.removesuffix(".SAFE")))
        if match:
            return match.group(1)
    return None


def _iso(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text


def _describe_offsets(offsets: Mapping[str, float]) -> str:
    values = set(offsets.values())
    if len(values) == 1:
        return f"offset {values.pop():g} DN"
    return "offsets " + ", ".join(f"{b} {v:g}" for b, v in offsets.items()) + " DN"


# --- where the files are: a folder or a zip --------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """A product's metadata bytes, its file list, and how GDAL names those files."""

    mtd_label: str
    mtd_bytes: bytes
    files: frozenset[str]
    uri_prefix: str
    folder_name: str


def _open_layout(path: str) -> _Layout:
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file or folder")
    if os.path.isfile(path) and os.path.basename(path) in MTD_NAMES:
        path = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return _folder_layout(path)
    if zipfile.is_zipfile(path) or path.lower().endswith(".zip"):
        return _zip_layout(path)
    raise SourceError(f"{path}: not a SAFE product (expected a .SAFE folder or a .zip)")


def _folder_layout(path: str) -> _Layout:
    root = os.path.abspath(path)
    mtd = next((n for n in MTD_NAMES if os.path.isfile(os.path.join(root, n))), None)
    if mtd is None:
        raise SourceError(f"{path}: no {' or '.join(MTD_NAMES)} in this folder")
    mtd_path = os.path.join(root, mtd)
    try:
        with open(mtd_path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise SourceError(f"{mtd_path}: cannot read ({error})") from error
    files = set()
    for folder, _dirs, names in os.walk(os.path.join(root, "GRANULE")):
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        files.update(f"{rel_folder}/{n}" for n in names)
    return _Layout(mtd_path, data, frozenset(files), root + "/", os.path.basename(root))


def _zip_layout(path: str) -> _Layout:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            mtd = _shallowest_mtd(names)
            if mtd is None:
                raise SourceError(f"{path}: no {' or '.join(MTD_NAMES)} in this zip")
            data = archive.read(mtd)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise SourceError(f"{path}: cannot read as a zip ({error})") from error
    prefix = mtd[: -len(posixpath.basename(mtd))]
    files = frozenset(
        n[len(prefix) :] for n in names if n.startswith(prefix) and not n.endswith("/")
    )
    zip_abs = os.path.abspath(path).replace(os.sep, "/")
    folder = prefix.rstrip("/") or os.path.splitext(os.path.basename(path))[0]
    return _Layout(f"{path}/{mtd}", data, files, f"/vsizip/{zip_abs}/{prefix}", folder)


def _shallowest_mtd(names: Iterable[str]) -> str | None:
    # The product MTD sits at the top of the SAFE folder, itself at the top of the zip.
    found = [n for n in names if posixpath.basename(n) in MTD_NAMES and n.count("/") <= 1]
    return min(found, key=lambda n: n.count("/"), default=None)


def _band_files(meta: ProductMetadata, files: frozenset[str]) -> dict[str, str]:
    """Band id -> existing image path: the IMAGE_FILE list first, then IMG_DATA names."""
    by_stem = {}
    for rel in sorted(files):
        stem, suffix = posixpath.splitext(rel)
        if suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(stem, rel)
    found = {b: by_stem[stem] for b, stem in meta.image_files.items() if stem in by_stem}
    in_img_data = [
        (band_id, rel)
        for rel in by_stem.values()
        if rel.startswith("GRANULE/")
        and "/IMG_DATA/" in rel
        and (band_id := band_id_in_filename(posixpath.basename(rel)))
    ]
    for band_id, rel in _finest(in_img_data).items():
        found.setdefault(band_id, rel)
    order = [*ESA_ORDER, "SCL"]
    return {b: found[b] for b in sorted(found, key=order.index)}
