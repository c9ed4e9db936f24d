"""A user's own data as catalog datasets: a GeoTIFF (or any GDAL raster with a CRS), a PNG
or JPEG placed by two corners, GeoJSON, or a point with a description.

Content decides, never the file's name: rasters are opened with GDAL, GeoJSON is parsed.
Files go to storage first (under ``datasets/<id>/`` with a fixed name such as ``data.tif``,
never the uploaded name) and the dataset is registered only once every file is stored and
verified; a failure registers nothing and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.warp import transform_geom
from rasterio.windows import Window

from madrone.area import area_from_corners
from madrone.catalog.datasets import add_dataset, check_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.geojson import GeoJSONSummary, read_json
from madrone.catalog.models import SCOPES, Dataset, new_id
from madrone.errors import InputError, StorageError
from madrone.storage import Storage

RASTER_ASSET = "data.tif"
VECTOR_ASSET = "data.geojson"
IMAGE_ASSETS = {"PNG": ("image.png", "image/png"), "JPEG": ("image.jpg", "image/jpeg")}
MAX_GEOJSON_BYTES = 64 * 2**20
MAX_VERTICES = 1_000_000
STATS_CHUNK_PIXELS = 2**20  # pixels read at a time for statistics: bounds memory
EDGE_POINTS = 21  # points per edge when a raster's bounds are followed into degrees
# Drivers that read other files or URLs named inside the upload: never for user data.
REFUSED_DRIVERS = frozenset({
    "VRT", "GTI", "DERIVED", "GDALG", "WMS", "WMTS", "WCS", "STACIT", "STACTA", "PLMOSAIC",
    "EEDAI", "DAAS", "OGCAPI", "NGW", "ESRIC", "HTTP",
})  # fmt: skip
_DATE_TAGS = ("ACQUISITION_DATE", "TIFFTAG_DATETIME")


def add_file(
    catalog: Catalog,
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    name: str,
    description: str = "",
    owner: str,
    scope: str = "local",
    corners: Sequence[float] | str | None = None,
) -> Dataset:
    """Register a file by what it holds: GeoJSON, a PNG/JPEG placed by ``corners``, or a
    raster with a CRS. ``corners`` are upper-left lat, lon then lower-right lat, lon."""
    path = _existing_file(path)
    common = {"name": name, "description": description, "owner": owner, "scope": scope}
    if looks_like_json(path):
        if corners is not None:
            raise InputError(f"{path}: GeoJSON carries its own coordinates; give no corners")
        return add_geojson(catalog, storage, path, **common)
    with open_raster(path) as dataset:
        driver, has_crs = dataset.driver, dataset.crs is not None
    if driver in IMAGE_ASSETS and (corners is not None or not has_crs):
        return add_image(catalog, storage, path, corners=corners, **common)
    if corners is not None and has_crs:
        raise InputError(f"{path}: the raster is placed by its own CRS; give no corners")
    return add_raster(catalog, storage, path, corners=corners, **common)


# -- rasters ------------------------------------------------------------------------------


def add_raster(
    catalog: Catalog,
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    name: str,
    description: str = "",
    owner: str,
    scope: str = "local",
    corners: Sequence[float] | str | None = None,
) -> Dataset:
    """Register a raster with a CRS (kind ``geotiff``), stored as a Cloud Optimized GeoTIFF.

    A raster without a CRS is placed by ``corners`` (upper-left lat, lon then lower-right
    lat, lon) in EPSG:4326, north up. The footprint is the raster's bounds followed into
    degrees (edges densified, cut at the antimeridian); stats are band 1's min, max and mean
    without nodata, read by blocks.
    """
    about = _about(name, description, owner, scope)
    path = _existing_file(path)
    with tempfile.TemporaryDirectory(prefix="madrone-ingest-") as work:
        with open_raster(path) as source:
            if source.crs is None and corners is None:
                raise InputError(
                    f"{path}: the raster has no CRS, so its place is unknown; give its corners "
                    "(upper-left lat,lon and lower-right lat,lon)"
                )
            if source.crs is None:
                placed = _place_by_corners(source, corners, os.path.join(work, "placed.tif"))
            else:
                placed = None
        with open_raster(placed or path) as source:
            fields = _raster_fields(source, path)
        if placed:
            fields["properties"]["placed_by_corners"] = True
        path = placed or path
        cog, converted = _as_cog(path, fields["properties"]["driver"], work)
        fields["properties"]["converted_to_cog"] = converted
        dataset = _new_dataset("geotiff", about, **fields)
        return _store_and_register(catalog, storage, dataset, {RASTER_ASSET: cog})


def _place_by_corners(source: Any, corners: Sequence[float] | str, target: str) -> str:
    """A GeoTIFF copy of an unplaced raster, stretched north-up over ``corners`` in
    EPSG:4326 (the pixels unchanged)."""
    from rasterio.transform import from_bounds

    west, south, east, north = area_from_corners(corners).bbox
    if west > east:
        raise InputError("corners across the antimeridian cannot place a raster; split it")
    with _quiet_gdal():
        rasterio.shutil.copy(source, target, driver="GTiff", TILED="YES", COMPRESS="DEFLATE")
        with rasterio.open(target, "r+") as placed:
            placed.crs = "EPSG:4326"
            placed.transform = from_bounds(west, south, east, north, placed.width, placed.height)
    return target


def _raster_fields(source: Any, path: str) -> dict[str, Any]:
    """Footprint, bbox, CRS, resolution, date, stats and properties of an open raster."""
    footprint = _footprint(source)
    west, south, east, north = _bounds_of(footprint)
    when = _acquisition_date(source.tags())
    crs_text = _crs_text(source.crs)
    x_res, y_res = (abs(v) for v in source.res)
    properties = {
        "driver": source.driver,
        "width": source.width,
        "height": source.height,
        "bands": source.count,
        "dtype": source.dtypes[0],
        "nodata": _json_number(source.nodata),
        "resolution_xy": [x_res, y_res],
    }
    if not crs_text.startswith("EPSG:"):
        properties["crs_wkt"] = source.crs.to_wkt()
    return {
        "footprint": footprint,
        "bbox": (west, south, east, north),
        "crs": crs_text if len(crs_text) <= 200 else None,
        "resolution": x_res,
        "date_start": when,
        "date_end": when,
        "stats": band_stats(source, 1, path),
        "properties": properties,
    }


def _footprint(source: Any) -> dict[str, Any]:
    """The raster's bounds in EPSG:4326: each edge densified, then cut at the antimeridian."""
    left, bottom, right, top = source.bounds
    corners = [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
    ring = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        ring += [
            [x0 + (x1 - x0) * k / EDGE_POINTS, y0 + (y1 - y0) * k / EDGE_POINTS]
            for k in range(EDGE_POINTS)
        ]
    ring.append(ring[0])
    polygon = {"type": "Polygon", "coordinates": [ring]}
    try:
        geometry = transform_geom(source.crs, "EPSG:4326", polygon, precision=9)
    except Exception as error:
        raise InputError(f"{source.name}: its bounds cannot be put in degrees ({error})") from None
    points = [p for part in _polygon_rings(geometry) for ring in part for p in ring]
    if not points or not all(math.isfinite(v) for p in points for v in p[:2]):
        raise InputError(f"{source.name}: its bounds cannot be put in degrees")
    return json.loads(json.dumps(geometry))  # plain lists, as the catalog stores it


def band_stats(source: Any, band: int, path: str = "") -> dict[str, Any]:
    """Min, max and mean of a band without nodata (masked or non-finite pixels), read in
    block-aligned windows of about ``STATS_CHUNK_PIXELS`` so memory stays bounded."""
    low, high, total, count = math.inf, -math.inf, 0.0, 0
    try:
        for window in _stat_windows(source, band):
            data = source.read(band, window=window, masked=True)
            values = data.compressed()
            if values.dtype.kind == "f":
                values = values[np.isfinite(values)]
            if values.size:
                low = min(low, float(values.min()))
                high = max(high, float(values.max()))
                total += float(values.sum(dtype=np.float64))
                count += int(values.size)
    except RasterioIOError as error:
        raise InputError(f"{path or source.name}: cannot read band {band} ({error})") from None
    if not count:
        return {"min": None, "max": None, "mean": None, "valid_pixels": 0}
    return {"min": low, "max": high, "mean": total / count, "valid_pixels": count}


def _stat_windows(source: Any, band: int) -> Iterator[Window]:
    block_rows, _ = source.block_shapes[band - 1]
    width, height = source.width, source.height
    cols = min(width, STATS_CHUNK_PIXELS)
    rows = max(1, STATS_CHUNK_PIXELS // cols)
    if block_rows <= rows:
        rows -= rows % block_rows  # whole blocks: none is decoded twice
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def _as_cog(path: str, driver: str, work: str) -> tuple[str, bool]:
    """The file itself when it is already a valid COG, else a COG written in ``work``."""
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    if driver in ("GTiff", "COG"):
        valid, _errors, _warnings = cog_validate(path, quiet=True)
        if valid:
            return path, False
    target = os.path.join(work, RASTER_ASSET)
    profile = cog_profiles.get("deflate")
    profile["BIGTIFF"] = "IF_SAFER"
    try:
        with _quiet_gdal():
            cog_translate(path, target, profile, in_memory=False, quiet=True)
    except Exception as error:
        raise InputError(f"{path}: cannot be written as a COG ({error})") from None
    return target, True


def _acquisition_date(tags: dict[str, str]) -> datetime | None:
    """The date a tag states (ACQUISITION_DATE first, then TIFFTAG_DATETIME), in UTC."""
    for tag in _DATE_TAGS:
        text = (tags.get(tag) or "").strip()
        if not text:
            continue
        for parse in (
            lambda t: datetime.strptime(t, "%Y:%m:%d %H:%M:%S"),
            lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")),
        ):
            try:
                moment = parse(text)
            except ValueError:
                continue
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return None


def _crs_text(crs: Any) -> str:
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    authority = crs.to_authority()
    return ":".join(authority) if authority else crs.to_wkt()


# -- images placed by corners -------------------------------------------------------------


def add_image(
    catalog: Catalog,
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    corners: Sequence[float] | str | None,
    name: str,
    description: str = "",
    owner: str,
    scope: str = "local",
) -> Dataset:
    """Register a PNG or JPEG placed by two corners (kind ``image``), stored as it is.

    ``corners``: upper-left lat, lon then lower-right lat, lon (a sequence or ``"a,b,c,d"``);
    they are kept in the properties, the footprint is their rectangle.
    """
    about = _about(name, description, owner, scope)
    path = _existing_file(path)
    if corners is None:
        raise InputError(
            f"{path}: an image needs its corners (upper-left lat,lon and lower-right lat,lon)"
        )
    with open_raster(path) as source:
        driver, width, height, bands = source.driver, source.width, source.height, source.count
    if driver not in IMAGE_ASSETS:
        raise InputError(
            f"{path}: only PNG or JPEG images are placed by corners; this is {driver} "
            "(a GeoTIFF needs a CRS instead)"
        )
    area = area_from_corners(corners)
    west, south, east, north = area.bbox
    footprint, bbox = _box_footprint(west, south, east, north)
    asset, media = IMAGE_ASSETS[driver]
    properties = {
        "corners": {"upper_left": [north, west], "lower_right": [south, east]},
        "driver": driver,
        "width": width,
        "height": height,
        "bands": bands,
    }
    dataset = _new_dataset("image", about, footprint=footprint, bbox=bbox, properties=properties)
    return _store_and_register(catalog, storage, dataset, {asset: path}, {asset: media})


def _box_footprint(
    west: float, south: float, east: float, north: float
) -> tuple[dict[str, Any], tuple[float, float, float, float]]:
    """A box's polygon and catalog bbox; across the antimeridian, two boxes and the full
    width (the catalog's bbox never wraps; the footprint stays exact)."""
    if west <= east:
        return _polygon(west, south, east, north), (west, south, east, north)
    parts = [_polygon(west, south, 180.0, north), _polygon(-180.0, south, east, north)]
    multi = {"type": "MultiPolygon", "coordinates": [p["coordinates"] for p in parts]}
    return multi, (-180.0, south, 180.0, north)


# -- GeoJSON ------------------------------------------------------------------------------


def add_geojson(
    catalog: Catalog,
    storage: Storage,
    path: str | os.PathLike[str],
    *,
    name: str,
    description: str = "",
    owner: str,
    scope: str = "local",
    max_bytes: int = MAX_GEOJSON_BYTES,
    max_vertices: int = MAX_VERTICES,
) -> Dataset:
    """Register GeoJSON (a Feature, a FeatureCollection or a bare geometry; kind ``vector``),
    validated by RFC 7946 and stored as it is; the footprint is the box of all its
    coordinates."""
    about = _about(name, description, owner, scope)
    path = _existing_file(path)
    document = read_json(path, max_bytes)
    summary = GeoJSONSummary(path)
    summary.walk_object(document)
    if summary.vertices > max_vertices:
        raise InputError(
            f"{path}: {summary.vertices:,} vertices, over the limit of {max_vertices:,}; "
            "simplify the geometry or split the file"
        )
    if not summary.vertices:
        raise InputError(f"{path}: the GeoJSON holds no coordinates to place it on the map")
    west, south, east, north = summary.bbox
    properties = {
        "features": summary.features,
        "vertices": summary.vertices,
        "geometry_types": sorted(summary.types),
    }
    footprint = _extent_geometry(west, south, east, north)
    dataset = _new_dataset(
        "vector",
        about,
        footprint=footprint,
        bbox=summary.bbox,
        properties=properties,
        crs="EPSG:4326",
    )
    return _store_and_register(catalog, storage, dataset, {VECTOR_ASSET: path})


def _extent_geometry(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    """The box of some coordinates; a point or a line where it has no area."""
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}
    if west == east or south == north:
        return {"type": "LineString", "coordinates": [[west, south], [east, north]]}
    return _polygon(west, south, east, north)


# -- points -------------------------------------------------------------------------------


def add_point(
    catalog: Catalog,
    *,
    lat: float,
    lon: float,
    name: str,
    description: str,
    owner: str,
    scope: str = "local",
) -> Dataset:
    """Register a point with a description (kind ``point``; no files)."""
    lat_value = _coordinate(lat, "latitude", 90)
    lon_value = _coordinate(lon, "longitude", 180)
    about = _about(name, description, owner, scope)
    footprint = {"type": "Point", "coordinates": [lon_value, lat_value]}
    bbox = (lon_value, lat_value, lon_value, lat_value)
    dataset = _new_dataset("point", about, footprint=footprint, bbox=bbox, crs="EPSG:4326")
    check_dataset(dataset)
    return add_dataset(catalog, dataset)


def _coordinate(value: Any, label: str, limit: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"point {label} {value!r} is not a number") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise InputError(f"point {label} {number:g} is out of range [{-limit:g}, {limit:g}]")
    return number


# -- shared steps -------------------------------------------------------------------------


def _about(name: str, description: str, owner: str, scope: str) -> dict[str, str]:
    """The caller's text fields, checked before any work is done."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InputError(f"dataset name {name!r}: give 1 to 200 characters")
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 80:
        raise InputError(f"dataset owner {owner!r}: give 1 to 80 characters")
    if not isinstance(description, str):
        raise InputError("dataset description must be text")
    if scope not in SCOPES:
        raise InputError(f"dataset scope {scope!r} is not local or shared")
    return {"name": name, "description": description, "owner": owner, "scope": scope}


def _new_dataset(
    kind: str,
    about: dict[str, str],
    *,
    footprint: dict[str, Any],
    bbox: tuple[float, float, float, float],
    **fields: Any,
) -> Dataset:
    """A dataset row, not yet registered (``fields`` are further columns)."""
    west, south, east, north = bbox
    return Dataset(
        id=new_id(), kind=kind, footprint=footprint, west=west, south=south, east=east,
        north=north, assets={}, stats=fields.pop("stats", {}),
        properties=fields.pop("properties", {}), **about, **fields,
    )  # fmt: skip


def _store_and_register(
    catalog: Catalog,
    storage: Storage,
    dataset: Dataset,
    files: dict[str, str],
    media_types: dict[str, str] | None = None,
) -> Dataset:
    """Store the files (all verified), then register the dataset pointing at them; if the
    registration fails, the stored files are removed again."""
    check_dataset(dataset)
    stored = storage.put_files(files, f"datasets/{dataset.id}")
    dataset.assets = {
        os.path.splitext(asset.key)[0]: {
            "href": asset.url,
            "size": asset.size,
            "sha256": asset.sha256,
            "type": (media_types or {}).get(asset.key, asset.media_type),
        }
        for asset in stored
    }
    try:
        return add_dataset(catalog, dataset)
    except BaseException as error:
        try:
            storage.remove([asset.url for asset in stored])
        except StorageError as cleanup:
            error.add_note(f"and its stored files could not be removed: {cleanup}")
        raise


def _existing_file(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise InputError(f"{text}: no such file")
    return text


def looks_like_json(path: str) -> bool:
    """Whether the file starts like a JSON object or array (after a BOM and blanks)."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


@contextlib.contextmanager
def open_raster(path: str) -> Iterator[Any]:
    """Open a file as a raster, refusing formats that pull in other files or URLs."""
    try:
        with _quiet_gdal(), rasterio.open(path) as source:
            folder = os.path.dirname(os.path.realpath(path))
            outside = [f for f in source.files if os.path.dirname(os.path.realpath(f)) != folder]
            if source.driver in REFUSED_DRIVERS or outside:
                raise InputError(
                    f"{path}: {source.driver} files that refer to other files or URLs are "
                    "not accepted; upload the data itself (a GeoTIFF)"
                )
            yield source
    except RasterioIOError:
        raise InputError(
            f"{path}: not a raster GDAL can read (a GeoTIFF, PNG or JPEG) nor GeoJSON"
        ) from None


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    """A PNG or JPEG without georeferencing is expected here, not worth a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _polygon(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _polygon_rings(geometry: dict[str, Any]) -> list[Any]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    return list(geometry["coordinates"])


def _bounds_of(footprint: dict[str, Any]) -> tuple[float, float, float, float]:
    points = [p for part in _polygon_rings(footprint) for ring in part for p in ring]
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return (min(lons), min(lats), max(lons), max(lats))


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # nan and inf are not JSON
