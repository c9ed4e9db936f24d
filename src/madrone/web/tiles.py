"""XYZ map tiles and point values of raster datasets, rendered on the fly from their COGs
in storage, registered at ``/tiles``.

- ``GET /tiles/<id>/<z>/<x>/<y>.png``: a 256 px WebMercatorQuad tile as RGBA PNG. An index
  dataset is coloured exactly as its product PNG (``style_for`` and ``colorize`` from
  ``products/render.py``: same colormap, same fixed range, nearest resampling); a GeoTIFF
  dataset shows band 1 on a grey ramp stretched over its catalog stats min and max.
  Nodata and NaN pixels are transparent. A tile wholly outside the dataset's bounds is
  ``204 No Content`` (no body: a map client just draws nothing). Other kinds are 404.
- ``GET /tiles/<id>/point?lon=..&lat=..``: band 1's value at a WGS84 point, JSON, with
  ``null`` for nodata; 404 outside the bounds, 400 for a missing or bad coordinate.

Reads need the viewer role. Nothing is cached: every request opens its COG again (a local
file open, or for S3 and Azure a few ranged GETs of the header plus the blocks the tile
needs); that per-request cost is what a later benchmark should measure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import rasterio
from flask import Blueprint, Response, jsonify, request
from rio_tiler.errors import PointOutsideBounds
from rio_tiler.io import Reader

from madrone.catalog.models import Dataset
from madrone.errors import InputError, NotFoundError, UnknownIndexError
from madrone.indices import resolve_index
from madrone.products.render import (
    Style,
    colorize_pixels,
    encode_png,
    lookup_table,
    style_for,
)
from madrone.storage import Storage
from madrone.web.app import app_settings, find_dataset, require
from madrone.web.tilecut import CutterClosed, cutter_for

blueprint = Blueprint("tiles", __name__)

TILE_SIZE = 256
MAX_ZOOM = 24
LEGEND_STOPS = 11
# The asset holding each raster kind's pixels (``catalog/register.py``, ``catalog/ingest.py``).
_RASTER_ASSETS = {"index": "cog", "geotiff": "data"}


@blueprint.get("/<dataset_id>/<int:z>/<int:x>/<int:y>.png")
def tile(dataset_id: str, z: int, x: int, y: int) -> Response:
    """One XYZ tile of a raster dataset as RGBA PNG; 204 when it misses the dataset."""
    require("viewer")
    _check_tile(z, x, y)
    dataset, central = find_dataset(dataset_id)
    style = dataset_style(dataset)
    values = _cut_tile(dataset, central, z, x, y)
    if values is None:
        return Response(status=204)
    pixels = colorize_pixels(values, style, _colour_table(style.colormap))
    return Response(encode_png(pixels), mimetype="image/png")


@functools.cache
def _colour_table(colormap: str) -> np.ndarray:
    """The colormap's lookup table, made once per process (matplotlib takes milliseconds)."""
    return lookup_table(colormap)


def _cut_tile(dataset: Dataset, central: bool, z: int, x: int, y: int) -> np.ndarray | None:
    """The tile's values from the dataset's cached ``TileCutter`` (``tilecut.py``)."""
    path, env = _raster_location(dataset, central)
    version = dataset.updated_at.isoformat() if dataset.updated_at else ""
    try:
        return cutter_for(path, version, env).tile(z, x, y)
    except CutterClosed:
        return cutter_for(path, version, env).tile(z, x, y)


@blueprint.get("/<dataset_id>/legend")
def legend(dataset_id: str) -> Response:
    """The colours of a raster dataset's tiles: ``colors`` are 11 stops from ``min`` to
    ``max`` (values outside are clamped to the ends), as a map legend draws them."""
    require("viewer")
    dataset, _ = find_dataset(dataset_id)
    if dataset.kind not in _RASTER_ASSETS:
        raise NotFoundError(f"dataset {dataset_id!r} ({dataset.kind}) is not a raster: no legend")
    style = dataset_style(dataset)
    table = _colour_table(style.colormap)
    stops = np.rint(np.linspace(0, len(table) - 1, LEGEND_STOPS)).astype(int)
    return jsonify({
        "label": style.label,
        "colormap": style.colormap,
        "min": style.vmin,
        "max": style.vmax,
        "colors": ["#{:02x}{:02x}{:02x}".format(*table[stop, :3]) for stop in stops],
    })  # fmt: skip


@blueprint.get("/<dataset_id>/point")
def point(dataset_id: str) -> Response:
    """Band 1's value at ``lon``, ``lat`` (WGS84); ``value`` is null for nodata."""
    require("viewer")
    lon = query_coordinate("lon", 180.0)
    lat = query_coordinate("lat", 90.0)
    dataset, central = find_dataset(dataset_id)
    try:
        value = _read_point(dataset, central, lon, lat)
    except PointOutsideBounds:
        raise NotFoundError(f"lon={lon}, lat={lat} is outside dataset {dataset_id!r}") from None
    date = dataset.date_start.isoformat() if dataset.date_start else None
    return jsonify({
        "dataset": dataset.id,
        "index": dataset.index_name,
        "value": value,
        "lon": lon,
        "lat": lat,
        "date": date,
    })  # fmt: skip


def point_value(dataset: Dataset, from_central: bool, lon: float, lat: float) -> float | None:
    """Band 1's value of a raster dataset at a WGS84 point; None for nodata, a non-finite
    value or a point outside the dataset (``/api/values`` asks many datasets at once)."""
    try:
        return _read_point(dataset, from_central, lon, lat)
    except PointOutsideBounds:
        return None


def _read_point(dataset: Dataset, from_central: bool, lon: float, lat: float) -> float | None:
    """Band 1's value at a point, None for nodata; PointOutsideBounds outside."""
    with _open_reader(dataset, from_central) as reader:
        found = reader.point(lon, lat, indexes=1)
    if np.ma.is_masked(found.array[0]):
        return None
    value = float(found.array[0])
    return value if math.isfinite(value) else None


def dataset_style(dataset: Dataset) -> Style:
    """The colours of a dataset's tiles: its product's style for an index, else grey over
    band 1's catalog min and max (a flat or empty band gets a unit range)."""
    if dataset.kind == "index":
        return style_for(dataset.index_name or "", _index_domain(dataset.index_name))
    low = dataset.stats.get("min")
    high = dataset.stats.get("max")
    low = float(low) if low is not None else 0.0
    high = float(high) if high is not None and float(high) > low else low + 1.0
    return Style("gray", low, high, dataset.name)


def masked_to_nan(band: np.ma.MaskedArray) -> np.ndarray:
    """Band values as float32 with masked (nodata) and non-finite pixels as NaN."""
    values = np.ma.filled(band.astype(np.float32), np.nan)
    return np.where(np.isfinite(values), values, np.float32(np.nan))


def _index_domain(index_name: str | None) -> str | None:
    """The catalog domain of a named index, as the engine used it; None for user names."""
    try:
        return resolve_index(index_name or "").domain
    except UnknownIndexError:
        return None


@contextmanager
def _open_reader(dataset: Dataset, central: bool = False) -> Iterator[Reader]:
    """A rio-tiler Reader on the dataset's raster in storage (the central storage for a
    dataset of the central catalog, or one shared into the app's), with GDAL's credentials."""
    path, env = _raster_location(dataset, central)
    with rasterio.Env(**env), Reader(path) as reader:
        yield reader


def _raster_location(dataset: Dataset, central: bool) -> tuple[str, dict[str, str]]:
    """What GDAL opens for the dataset's raster, and the options it needs (credentials)."""
    key = _RASTER_ASSETS.get(dataset.kind)
    asset = dataset.assets.get(key) if key else None
    if not asset:
        raise NotFoundError(
            f"dataset {dataset.id!r} ({dataset.kind}) has no raster to tile; "
            f"tiles are for {' and '.join(_RASTER_ASSETS)} datasets"
        )
    shared = central or dataset.scope == "shared"
    with Storage.from_settings(app_settings(), central=shared) as storage:
        return storage.gdal_path(asset["href"]), storage.gdal_env()


def _check_tile(z: int, x: int, y: int) -> None:
    if z > MAX_ZOOM:
        raise InputError(f"zoom {z} is above the largest served, {MAX_ZOOM}")
    if x >= 2**z or y >= 2**z:
        raise InputError(f"tile x={x}, y={y} does not exist at zoom {z} (0 to {2**z - 1})")


def query_coordinate(name: str, limit: float) -> float:
    """A required query argument in [-limit, limit]; the error names it."""
    text = request.args.get(name)
    if text is None or not text.strip():
        raise InputError(f"{name} is required (decimal degrees)")
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise InputError(f"{name}={text} is outside [-{limit:g}, {limit:g}]")
    return value
