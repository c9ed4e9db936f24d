"""A STAC item (local file or URL) read as a Scene: its band assets as GDAL paths.

Earth Search is the main supplier, and its items carry a trap: for baseline 04.00+ the COGs
already have the BOA offset removed (``earthsearch:boa_offset_applied: true``) while every
asset's ``raster:bands`` still states ``offset: -0.1``. The flag wins; the sentence in
``Scene.metadata["radiometry"]`` says what was ignored and why.
"""

from __future__ import annotations

import re
from typing import Any

import pystac

from madrone.bands import ESA_ORDER, normalize_band
from madrone.errors import SourceError
from madrone.sources.base import BandRef, Scene
from madrone.sources.gdal import gdal_path
from madrone.sources.reflectance import (
    BOA_OFFSET_FLAGS,
    DEFAULT_QUANTIFICATION,
    expected_offset,
    parse_baseline,
    stac_offset_applied,
)

JP2_SUFFIX = "-jp2"
# Assets with these roles show or describe the scene; they are never a band's pixels.
NON_BAND_ROLES = frozenset({"thumbnail", "overview", "visual", "metadata"})
_BASELINE_IN_NAME = re.compile(r"_N(\d{4})_")


def read_stac_item(item: str | dict[str, Any]) -> Scene:
    """Read a STAC item into a Scene; no pixels are read.

    Args:
        item: an item JSON's local path or http(s) URL, or an item dict with absolute
            asset hrefs (as ``search_items`` returns); a dict is named in messages and
            metadata by its self link, else by its id.

    Raises:
        SourceError: the href cannot be fetched, is not JSON, is not a STAC item, has no
            Sentinel-2 band assets, or an asset has an href GDAL cannot reach.
    """
    if isinstance(item, dict):
        href, stac_item = _item_name(item), _item_from_dict(item)
    else:
        href, stac_item = item, _load_item(item)
    props = stac_item.properties
    applied = stac_offset_applied(props)
    baseline = _baseline_text(stac_item)
    bands: dict[str, BandRef] = {}
    phrases: dict[str, str] = {}
    for band_id, key, asset in _band_assets(stac_item):
        uri = _asset_uri(href, key, asset)
        if band_id == "SCL":
            bands[band_id] = BandRef(uri, 1, scale=1.0, offset=0.0, nodata=0.0)
            continue
        raster = _raster_band(f"{href}: asset {key}", asset)
        bands[band_id], phrases[band_id] = _spectral_ref(uri, raster, props, applied, baseline)
    if not bands:
        raise SourceError(
            f"{href}: STAC item {stac_item.id} has no Sentinel-2 band assets "
            f"(assets: {', '.join(sorted(stac_item.assets)) or 'none'})"
        )
    metadata = {
        "href": href,
        "datetime": _datetime_text(stac_item),
        "platform": props.get("platform") or stac_item.common_metadata.platform,
        "product_type": props.get("s2:product_type"),
        "processing_baseline": baseline,
        "cloud_cover": props.get("eo:cloud_cover"),
        "tile": _mgrs_tile(props),
        "boa_offset_applied": applied,
        "radiometry": _summarise(phrases),
    }
    return Scene(stac_item.id, bands, metadata)


def _load_item(href: str) -> pystac.Item:
    try:
        item = pystac.Item.from_file(href)
    except pystac.STACTypeError as error:
        raise SourceError(f"{href}: not a STAC item ({error})") from error
    except FileNotFoundError as error:
        raise SourceError(f"{href}: no such file") from error
    # pystac reports HTTP failures as a bare Exception and bad JSON as ValueError, among
    # others; every failure here means the same thing to the user: this href is unusable.
    except Exception as error:
        raise SourceError(f"{href}: cannot read a STAC item ({error})") from error
    return item


def _item_name(data: dict[str, Any]) -> str:
    for link in data.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return str(data.get("id") or "STAC item dict")


def _item_from_dict(data: dict[str, Any]) -> pystac.Item:
    try:
        return pystac.Item.from_dict(data)
    except pystac.STACTypeError as error:
        raise SourceError(f"{_item_name(data)}: not a STAC item ({error})") from error
    # A dict missing required fields fails with KeyError, TypeError, ValueError and more.
    except Exception as error:
        raise SourceError(f"{_item_name(data)}: cannot read a STAC item ({error})") from error


def _band_assets(item: pystac.Item) -> list[tuple[str, str, pystac.Asset]]:
    """(band id, asset key, asset) per band; a COG asset wins over its ``-jp2`` twin."""
    chosen: dict[str, tuple[bool, str, pystac.Asset]] = {}
    for key, asset in item.assets.items():
        if NON_BAND_ROLES.intersection(asset.roles or ()):
            continue
        band_id = _band_of(key, asset)
        if band_id is None:
            continue
        is_jp2 = key.endswith(JP2_SUFFIX)
        if band_id not in chosen or (chosen[band_id][0] and not is_jp2):
            chosen[band_id] = (is_jp2, key, asset)
    order = [*ESA_ORDER, "SCL"]
    return [(b, chosen[b][1], chosen[b][2]) for b in sorted(chosen, key=order.index)]


def _band_of(key: str, asset: pystac.Asset) -> str | None:
    band_id = normalize_band(key.removesuffix(JP2_SUFFIX))
    if band_id:
        return band_id
    eo_bands = asset.extra_fields.get("eo:bands") or []
    # A multi-band asset (a true-colour image) is no single band's pixels.
    if len(eo_bands) != 1 or not isinstance(eo_bands[0], dict):
        return None
    for field_name in ("common_name", "name"):
        value = eo_bands[0].get(field_name)
        if isinstance(value, str) and normalize_band(value):
            return normalize_band(value)
    return None


def _asset_uri(href: str, key: str, asset: pystac.Asset) -> str:
    absolute = asset.get_absolute_href()
    if not absolute:
        raise SourceError(f"{href}: asset {key} has no usable href ({asset.href!r})")
    return gdal_path(absolute.removeprefix("file://"))


def _raster_band(label: str, asset: pystac.Asset) -> dict[str, float | None]:
    """Scale, offset (reflectance units) and nodata of ``raster:bands[0]``, checked."""
    raster = (asset.extra_fields.get("raster:bands") or [{}])[0]
    if not isinstance(raster, dict):
        raise SourceError(f"{label}: raster:bands[0] is {raster!r}, not an object")
    values: dict[str, float | None] = {}
    for name, default in (("scale", None), ("offset", 0.0), ("nodata", 0.0)):
        value = raster.get(name, default)
        try:
            # The raster extension writes NaN/inf nodata as strings; float() reads those.
            values[name] = None if value is None else float(value)
        except (TypeError, ValueError):
            raise SourceError(f"{label}: raster:bands {name} is {value!r}, not a number") from None
    if values["scale"] is not None and values["scale"] <= 0:
        raise SourceError(f"{label}: raster:bands scale is {values['scale']:g}, not positive")
    return values


def _spectral_ref(
    uri: str,
    raster: dict[str, float | None],
    props: dict[str, Any],
    applied: bool | None,
    baseline: str | None,
) -> tuple[BandRef, str]:
    """The BandRef of one spectral asset and a phrase saying where its radiometry came from."""
    implied = expected_offset(parse_baseline(baseline))
    if raster["scale"] is not None:
        scale, stated = raster["scale"], raster["offset"] or 0.0
        offset = round(stated / scale, 6)
        origin = "from raster:bands"
    else:
        scale, stated = 1.0 / DEFAULT_QUANTIFICATION, None
        offset = implied
        origin = f"(no raster:bands: default scale, offset implied by baseline {baseline})"
    notes = []
    if applied:
        flag = _flag_name(props)
        if stated:
            notes.append(f"raster:bands offset {stated:g} ignored: {flag} is true")
        elif offset:
            notes.append(f"offset {offset:g} DN not applied: {flag} is true")
        else:
            notes.append(f"{flag} is true")
        offset = 0.0
    elif offset != implied:
        notes.append(f"baseline {baseline} would imply {implied:g} DN")
    phrase = "; ".join([f"offset {offset:g} DN, scale {scale:g} {origin}", *notes])
    return BandRef(uri, 1, scale=scale, offset=offset, nodata=raster["nodata"]), phrase


def _flag_name(props: dict[str, Any]) -> str:
    return next(key for key in BOA_OFFSET_FLAGS if key in props)


def _summarise(phrases: dict[str, str]) -> str:
    """One sentence when every band agrees (the usual case), else one clause per group."""
    groups: dict[str, list[str]] = {}
    for band_id, phrase in phrases.items():
        groups.setdefault(phrase, []).append(band_id)
    if len(groups) <= 1:
        return next(iter(groups), "no spectral bands")
    return ". ".join(f"{', '.join(bands)}: {phrase}" for phrase, bands in groups.items())


def _baseline_text(item: pystac.Item) -> str | None:
    props = item.properties
    for key in ("s2:processing_baseline", "sentinel:processing_baseline"):
        if props.get(key):
            return str(props[key])
    # Older items only name the product, whose Nxxyy token is the baseline.
    for text in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item.id):
        match = _BASELINE_IN_NAME.search(text or "")
        if match:
            return f"{match.group(1)[:2]}.{match.group(1)[2:]}"
    return None


def _datetime_text(item: pystac.Item) -> str | None:
    when = item.datetime or item.common_metadata.start_datetime
    return when.isoformat() if when else None


def _mgrs_tile(props: dict[str, Any]) -> str | None:
    for prefix in ("mgrs:", "sentinel:"):
        zone = props.get(f"{prefix}utm_zone")
        band, square = props.get(f"{prefix}latitude_band"), props.get(f"{prefix}grid_square")
        if zone is not None and band and square:
            return f"{int(zone):02d}{band}{square}"
    code = props.get("grid:code") or ""
    if code.startswith("MGRS-"):
        return code.removeprefix("MGRS-")
    tile = props.get("s2:tile")
    return tile.removeprefix("T") if isinstance(tile, str) else None
