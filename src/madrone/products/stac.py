"""The provenance record of a product: a STAC Item beside the COG, PNG and legend.

The item says where the product lies (footprint in WGS84, projection fields), what it is
(the index: name, formula, bands), what went in (sources and their radiometry), its
statistics and which madrone made it. It holds no wall-clock time, so the same job writes
the same bytes on every run and every executor. Asset hrefs are relative to the item.

An item needs a date: STAC allows ``datetime: null`` only with ``start_datetime`` and
``end_datetime``. A product whose sources state no acquisition date (a user's GeoTIFF, a
cloud mosaic of many days) gets ``datetime: null``, the property
``"madrone:datetime": "unknown"``, and the widest range that is still true: from the launch
of Sentinel-2A (no Sentinel-2 pixel is older) to 9999-12-31T23:59:59Z, the latest time
RFC 3339 can write (an open end).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import rasterio
from rasterio.warp import transform_geom

from madrone.errors import InputError, ProcessingError

# The item is written as plain data, without pystac at run time: importing pystac and
# discovering its extensions' hooks cost a small job 0.15 s. The tests check the item
# equals the one pystac's extension helpers build and passes STAC's core schema.
STAC_VERSION = "1.1.0"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_PNG = "image/png"
_JSON = "application/json"

# Asset key -> (media type, roles, title). The engine's keys (cog, png, json) and STAC's
# usual ones (data, visual, overview, metadata) are both understood.
_ASSET_KINDS: dict[str, tuple[str, list[str], str]] = {
    "data": (_COG, ["data"], "Index values (float32 COG, NaN = nodata)"),
    "cog": (_COG, ["data"], "Index values (float32 COG, NaN = nodata)"),
    "visual": (_PNG, ["visual"], "Coloured rendering (RGBA PNG)"),
    "png": (_PNG, ["visual", "overview"], "Coloured rendering (RGBA PNG)"),
    "overview": (_PNG, ["overview"], "Coloured rendering (RGBA PNG)"),
    "legend": (_PNG, ["legend"], "Legend of the colour scale"),
    "metadata": (_JSON, ["metadata"], "This STAC item"),
    "json": (_JSON, ["metadata"], "This STAC item"),
}
_EXTENSION_TYPES = {".tif": "image/tiff; application=geotiff", ".png": _PNG, ".json": _JSON}
_DATA_KEYS = ("data", "cog")
_EDGE_POINTS = 16  # footprint vertices per edge, so curved edges in lon/lat stay inside
_DECIMALS = 7  # lon/lat decimals in the geometry: about 1 cm
UNKNOWN_DATE_PROPERTY = "madrone:datetime"
UNKNOWN_DATE_START = "2015-06-23T00:00:00Z"  # Sentinel-2A's launch
UNKNOWN_DATE_END = "9999-12-31T23:59:59Z"  # open: nothing is known but the start


def build_item(
    *,
    item_id: str,
    raster_path: str,
    index: dict,
    stats: dict,
    sources: list[dict],
    assets: dict[str, str],
    properties: dict,
) -> dict:
    """Describe a product as a STAC Item and return it as a plain dict.

    Args:
        item_id: the item's id (the product's file stem).
        raster_path: the product's COG; footprint and projection fields are read from it.
        index: the index record (name, formula, bands, ...), kept as ``madrone:index``.
        stats: the result of ``compute_stats``, kept as ``madrone:stats``.
        sources: one dict per input scene (name, href, datetime, radiometry ...).
        assets: asset key -> href relative to the item (a file name).
        properties: more item properties; ``datetime`` here sets the item's datetime.
            Without it and without source dates the date is recorded as unknown (see
            the module's docstring).

    Returns:
        The item as a JSON-able dict.
    """
    from madrone import __version__

    extra = dict(properties)
    moment, start, end = _item_dates(extra.pop("datetime", None), sources)
    if moment is None and start is None:
        start, end = to_datetime(UNKNOWN_DATE_START), to_datetime(UNKNOWN_DATE_END)
        extra[UNKNOWN_DATE_PROPERTY] = "unknown"
    extra = _plain(extra)
    with rasterio.open(raster_path) as ds:
        crs, transform, shape, bounds = ds.crs, ds.transform, ds.shape, ds.bounds
    if crs is None:
        raise InputError(f"{raster_path} has no CRS; cannot place it on the map")
    geometry, bbox = _footprint(crs, bounds)
    fields = {
        "madrone:index": _plain(index),
        "madrone:stats": _plain(stats),
        "madrone:sources": _plain(list(sources)),
        "processing:software": {"madrone": __version__},
    }
    fields.update(extra)
    fields.update(_datetime_fields(moment, start, end))
    fields.update(_projection_fields(crs, transform, shape, bounds))
    item = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROCESSING_SCHEMA, PROJECTION_SCHEMA, RASTER_SCHEMA],
        "id": item_id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": fields,
        "links": [],
        "assets": {key: _asset(key, href) for key, href in assets.items()},
    }
    for key in _DATA_KEYS:
        if key in item["assets"]:
            item["assets"][key]["raster:bands"] = [_raster_band(stats, abs(transform.a))]
    return item


def write_json(path: str, data: dict) -> None:
    """Write deterministic JSON (sorted keys, indent 2, final newline) atomically."""
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    # open(..., "x") under a unique name keeps the usual umask permissions (mkstemp gives 0600).
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".madrone-{uuid.uuid4().hex}.json")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise ProcessingError(f"cannot write {path}: {e}") from e


def _datetime_fields(
    moment: datetime | None, start: datetime | None, end: datetime | None
) -> dict[str, str | None]:
    """STAC's date properties: ``datetime``, and the range when it is null."""
    if moment is not None:
        return {"datetime": _iso(moment)}
    return {"datetime": None, "start_datetime": _iso(start), "end_datetime": _iso(end)}


def _projection_fields(crs: Any, transform: Any, shape: tuple, bounds: Any) -> dict:
    """The projection extension's fields: an EPSG code when the CRS has one, else a null
    code (the extension's way of saying there is none) and the WKT2."""
    epsg = crs.to_epsg()
    place = (
        {"proj:code": f"EPSG:{epsg}"}
        if epsg
        else {"proj:code": None, "proj:wkt2": crs.to_wkt(version="WKT2_2019")}
    )
    return {
        **place,
        "proj:shape": list(shape),
        "proj:transform": list(transform)[:6],
        "proj:bbox": list(bounds),
    }


def _asset(key: str, href: str) -> dict:
    if os.path.isabs(href) or "://" in href or href.startswith(".."):
        raise ValueError(f"asset {key!r} href {href!r} must be relative to the item")
    media_type, roles, title = _ASSET_KINDS.get(
        key, (_EXTENSION_TYPES.get(os.path.splitext(href)[1].lower()), [key], None)
    )
    fields = {"href": href, "title": title, "type": media_type, "roles": list(roles)}
    return {name: value for name, value in fields.items() if value is not None}


def _raster_band(stats: dict, resolution: float) -> dict:
    """The data asset's ``raster:bands`` entry: float32, NaN nodata, statistics, histogram."""
    band: dict[str, Any] = {
        "nodata": "nan",
        "data_type": "float32",
        "spatial_resolution": resolution,
    }
    if stats.get("valid_pixels"):
        band["statistics"] = {
            "minimum": stats["min"],
            "maximum": stats["max"],
            "mean": stats["mean"],
            "stddev": stats["std"],
            "valid_percent": round(100.0 * stats["valid_fraction"], 6),
        }
    if stats.get("histogram"):
        edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
        band["histogram"] = {
            "count": len(counts),
            "min": edges[0],
            "max": edges[-1],
            "buckets": list(counts),
        }
    return band


def _item_dates(
    given: Any, sources: list[dict]
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """Return (datetime, start, end): the given moment, else the sources' time range, else
    three Nones (no date known)."""
    if given:
        return to_datetime(given), None, None
    moments = sorted(to_datetime(s["datetime"]) for s in sources if s.get("datetime"))
    if not moments:
        return None, None, None
    return None, moments[0], moments[-1]


def to_datetime(value: str | datetime) -> datetime:
    """A time as an aware datetime; one without a zone is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:  # ISO 8601 forms Python does not read; dateutil comes with pystac
            from dateutil.parser import isoparse

            moment = isoparse(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    """RFC 3339 as STAC writes it: ``Z`` for UTC, microseconds only when there are some."""
    text = to_datetime(moment).isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def _footprint(crs: rasterio.crs.CRS, bounds: Any) -> tuple[dict, list[float]]:
    """Return the raster's outline in WGS84 (densified edges) and its bbox, rounded outward."""
    left, bottom, right, top = bounds
    steps = [i / _EDGE_POINTS for i in range(_EDGE_POINTS)]
    # Counter-clockwise, as GeoJSON asks: down the west edge, east along the south, ...
    ring = (
        [(left, top + (bottom - top) * t) for t in steps]
        + [(left + (right - left) * t, bottom) for t in steps]
        + [(right, bottom + (top - bottom) * t) for t in steps]
        + [(right + (left - right) * t, top) for t in steps]
    )
    ring.append(ring[0])
    outline = {"type": "Polygon", "coordinates": [ring]}
    geometry = dict(transform_geom(crs, "EPSG:4326", outline))
    bbox = _bbox(geometry)
    return _round_geometry(geometry), bbox


def _bbox(geometry: dict) -> list[float]:
    """Bbox of a polygon, or of the two halves of a footprint cut at the antimeridian."""
    polygons = (
        geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    )
    parts = [[pt for ring in polygon for pt in ring] for polygon in polygons]
    lats = [pt[1] for part in parts for pt in part]
    if len(parts) == 2 and geometry["type"] == "MultiPolygon":
        east, west = sorted(parts, key=lambda p: -max(pt[0] for pt in p))
        lon_min, lon_max = min(pt[0] for pt in east), max(pt[0] for pt in west)
    else:
        lons = [pt[0] for part in parts for pt in part]
        lon_min, lon_max = min(lons), max(lons)
    scale = 10**_DECIMALS
    return [
        math.floor(lon_min * scale) / scale,
        math.floor(min(lats) * scale) / scale,
        math.ceil(lon_max * scale) / scale,
        math.ceil(max(lats) * scale) / scale,
    ]


def _round_geometry(geometry: dict) -> dict:
    def walk(node: Any) -> Any:
        if isinstance(node, (list, tuple)):
            if node and isinstance(node[0], float | int):
                return [round(float(c), _DECIMALS) for c in node]
            return [walk(child) for child in node]
        return node

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}


def _plain(value: Any) -> Any:
    """Copy a value as plain JSON data: tuples become lists, datetimes ISO strings."""

    def default(obj: Any) -> str:
        if isinstance(obj, datetime):
            return _iso(obj)
        raise TypeError(f"{type(obj).__name__} {obj!r} is not JSON data")

    try:
        return json.loads(json.dumps(value, allow_nan=False, default=default))
    except (TypeError, ValueError) as e:
        raise ProcessingError(f"metadata is not plain JSON data: {e}") from e
