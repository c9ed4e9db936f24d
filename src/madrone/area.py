"""Areas of interest: two corners, a bounding box or a GeoJSON polygon, in WGS84 degrees.

An ``Area`` is plain data (a request queue stores it). Every check that needs no pixels is
here: coordinate ranges, swapped corners, empty areas, the antimeridian and the area limit.
A box whose west edge is east of its east edge crosses the antimeridian when that reading
spans less than half the globe (``179.8`` to ``-179.8``); otherwise the corners are taken
to be swapped and refused, since no one asks for a box around the rest of the planet.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from madrone.errors import InputError
from madrone.grid import Grid, snap_grid

if TYPE_CHECKING:
    from pyproj import Geod, Transformer

_EDGE_STEPS = 16  # points per edge when an edge in degrees is followed into a projection


@dataclass(frozen=True)
class Area:
    """A requested area.

    Attributes:
        bbox: west, south, east, north in degrees; west > east crosses the antimeridian.
        geometry: a GeoJSON Polygon or MultiPolygon (WGS84) when pixels outside it are to be
            nodata; None for the whole box.
    """

    bbox: tuple[float, float, float, float]
    geometry: dict[str, Any] | None = None

    @property
    def crosses_antimeridian(self) -> bool:
        return self.bbox[0] > self.bbox[2]

    @property
    def centre(self) -> tuple[float, float]:
        """(lon, lat) of the box's centre, longitude in [-180, 180)."""
        west, south, east, north = self.bbox
        span = _span(west, east)
        return (_wrap(west + span / 2), (south + north) / 2)

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": list(self.bbox), "geometry": self.geometry}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Area:
        return cls(tuple(float(v) for v in data["bbox"]), data.get("geometry"))

    def area_km2(self) -> float:
        """Geodesic area on the WGS84 ellipsoid (the polygon's, else the box's)."""
        rings = _polygons(self.geometry) if self.geometry else [[_box_ring(self.bbox)]]
        total = 0.0
        for polygon in rings:
            for position, ring in enumerate(polygon):
                lons, lats = zip(*_unwrapped(ring), strict=True)
                area = abs(_geod().polygon_area_perimeter(lons, lats)[0])
                total += area if position == 0 else -area
        return total / 1e6

    def check_size(self, max_km2: float) -> None:
        """Refuse an area over the configured limit, giving both numbers."""
        size = self.area_km2()
        if max_km2 > 0 and size > max_km2:
            raise InputError(
                f"the area is {size:,.0f} km2, over the limit of {max_km2:,.0f} km2 "
                "(MADRONE_MAX_AREA_KM2); ask for a smaller area or raise the limit"
            )


def area_from_corners(corners: Sequence[float]) -> Area:
    """Two corners as the original system took them: upper-left lat, lng, lower-right lat, lng."""
    values = _numbers(corners, 4, "corners need 4 numbers UL_LAT,UL_LNG,LR_LAT,LR_LNG")
    ul_lat, ul_lng, lr_lat, lr_lng = values
    _check_lat(ul_lat, "upper-left latitude")
    _check_lat(lr_lat, "lower-right latitude")
    _check_lng(ul_lng, "upper-left longitude")
    _check_lng(lr_lng, "lower-right longitude")
    if ul_lat == lr_lat or ul_lng == lr_lng:
        raise InputError(f"corners {_text(values)} make an empty area (a line or a point)")
    if ul_lat < lr_lat:
        raise InputError(
            f"upper-left latitude {ul_lat:g} is south of lower-right latitude {lr_lat:g}: "
            "the corners look swapped (the upper-left corner is the north-west one)"
        )
    if ul_lng > lr_lng and not _is_crossing(ul_lng, lr_lng):
        raise InputError(
            f"upper-left longitude {ul_lng:g} is east of lower-right longitude {lr_lng:g}: "
            "the corners look swapped (the upper-left corner is the north-west one)"
        )
    return Area((ul_lng, lr_lat, lr_lng, ul_lat))


def area_from_bbox(bbox: Sequence[float]) -> Area:
    """A box west, south, east, north in degrees (west > east: across the antimeridian)."""
    values = _numbers(bbox, 4, "bbox needs 4 numbers W,S,E,N")
    west, south, east, north = values
    _check_lng(west, "bbox west")
    _check_lng(east, "bbox east")
    _check_lat(south, "bbox south")
    _check_lat(north, "bbox north")
    if west == east or south == north:
        raise InputError(f"bbox {_text(values)} is an empty area (a line or a point)")
    if south > north:
        raise InputError(f"bbox south {south:g} is north of north {north:g}: swapped?")
    if west > east and not _is_crossing(west, east):
        raise InputError(f"bbox west {west:g} is east of east {east:g}: swapped?")
    return Area((west, south, east, north))


def area_from_geojson(source: str | dict[str, Any]) -> Area:
    """A GeoJSON Polygon or MultiPolygon (or a Feature/FeatureCollection of them), given as
    a dict, a JSON text or a file path; pixels outside it will be nodata."""
    label = "GeoJSON"
    if isinstance(source, str):
        label, source = _load_geojson(source)
    geometry = _polygon_geometry(source, label)
    points = [pt for polygon in _polygons(geometry) for ring in polygon for pt in ring]
    for lon, lat in points:
        _check_lng(lon, f"{label}: longitude")
        _check_lat(lat, f"{label}: latitude")
    lons = [lon for lon, _ in points]
    lats = [lat for _, lat in points]
    west, east = min(lons), max(lons)
    if east - west > 180:  # parts on both sides of the antimeridian
        shifted = [lon + 360 if lon < 0 else lon for lon in lons]
        west, east = min(shifted), _wrap(max(shifted))
    area = Area((west, min(lats), east, max(lats)), geometry)
    # Points along one line enclose (almost) nothing: a geodesic sliver of the box.
    box_km2 = Area(area.bbox).area_km2()
    if box_km2 <= 0 or area.area_km2() <= 1e-3 * box_km2:
        raise InputError(f"{label}: the polygon encloses no area")
    return area


def utm_crs(area: Area) -> str:
    """The UTM zone of the area's centre, north or south: ``EPSG:326zz`` / ``EPSG:327zz``."""
    lon, lat = area.centre
    zone = min(60, max(1, math.floor((lon + 180) / 6) + 1))
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def area_grid(
    area: Area, crs: str, resolution: float, anchor: tuple[float, float] = (0.0, 0.0)
) -> Grid:
    """The grid in ``crs`` that covers the area, its pixel edges on ``anchor`` plus
    multiples of the resolution (by default multiples alone, where Sentinel-2's 10, 20 and
    60 m pixels lie, so they are read unresampled)."""
    transformer = _to_crs(crs)
    xs, ys = transformer.transform(*zip(*_unwrapped(_dense(_box_ring(area.bbox))), strict=True))
    if not all(math.isfinite(v) for v in (*xs, *ys)):
        raise InputError(f"the area {_text(area.bbox)} cannot be projected to {crs}")
    bounds = (min(xs), min(ys), max(xs), max(ys))
    return snap_grid(crs, bounds, resolution, resolution, *anchor)


def geometry_in(area: Area, crs: str) -> dict[str, Any] | None:
    """The area's polygon in ``crs`` (edges densified, so they stay where they were), as
    plain GeoJSON coordinates; None when the area is its whole box."""
    if area.geometry is None:
        return None
    transformer = _to_crs(crs)
    polygons = []
    for polygon in _polygons(area.geometry):
        rings = []
        for ring in polygon:
            xs, ys = transformer.transform(*zip(*_unwrapped(_dense(ring)), strict=True))
            rings.append([[x, y] for x, y in zip(xs, ys, strict=True)])
        polygons.append(rings)
    return {"type": "MultiPolygon", "coordinates": polygons}


def _to_crs(crs: str) -> Transformer:
    from pyproj import Transformer  # imported when an area is used: 0.1 s for every job

    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


@functools.cache
def _geod() -> Geod:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def _span(west: float, east: float) -> float:
    return east - west if east >= west else east + 360 - west


def _is_crossing(west: float, east: float) -> bool:
    return west > 0 > east and _span(west, east) <= 180


def _wrap(lon: float) -> float:
    return (lon + 180) % 360 - 180


def _box_ring(bbox: Sequence[float]) -> list[list[float]]:
    west, south, east, north = bbox
    east = east + 360 if east < west else east
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def _dense(ring: list[list[float]]) -> list[list[float]]:
    out = []
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        x1 = x1 + 360 if x1 - x0 < -180 else x1 - 360 if x1 - x0 > 180 else x1
        out += [[x0 + (x1 - x0) * k / _EDGE_STEPS, y0 + (y1 - y0) * k / _EDGE_STEPS]
                for k in range(_EDGE_STEPS)]  # fmt: skip
    return [*out, ring[-1]]


def _unwrapped(ring: list[list[float]]) -> Iterator[tuple[float, float]]:
    """Longitudes made continuous along the ring (179.9 then 180.1, not -179.9)."""
    previous = None
    for lon, lat in ring:
        if previous is not None:
            while lon - previous > 180:
                lon -= 360
            while lon - previous < -180:
                lon += 360
        previous = lon
        yield lon, lat


def _polygons(geometry: dict[str, Any]) -> list[list[list[list[float]]]]:
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    return geometry["coordinates"]


def _load_geojson(text: str) -> tuple[str, Any]:
    if text.lstrip().startswith("{"):
        label = "GeoJSON"
    else:
        label = text
        try:
            with open(text) as handle:
                text = handle.read()
        except OSError as error:
            raise InputError(f"{label}: cannot read the GeoJSON file ({error.strerror})") from None
    try:
        return label, json.loads(text)
    except ValueError as error:
        raise InputError(f"{label}: not valid JSON ({error})") from None


def _polygon_geometry(data: Any, label: str) -> dict[str, Any]:
    """One Polygon or MultiPolygon from a geometry, Feature or FeatureCollection."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        parts = [_polygon_geometry(f, label) for f in data.get("features") or []]
        if not parts:
            raise InputError(f"{label}: the FeatureCollection has no features")
        polygons = [polygon for part in parts for polygon in _polygons(part)]
        return {"type": "MultiPolygon", "coordinates": polygons}
    if kind == "Feature":
        return _polygon_geometry(data.get("geometry"), label)
    if kind not in ("Polygon", "MultiPolygon"):
        raise InputError(f"{label}: a Polygon or MultiPolygon is needed, not {kind or data!r}")
    geometry = {"type": kind, "coordinates": data.get("coordinates")}
    try:
        for polygon in _polygons(geometry):
            for ring in polygon:
                _check_ring(ring, label)
    except (TypeError, ValueError, IndexError) as error:
        raise InputError(f"{label}: malformed {kind} coordinates ({error})") from None
    return geometry


def _check_ring(ring: list, label: str) -> None:
    if len(ring) < 4 or [float(v) for v in ring[0]] != [float(v) for v in ring[-1]]:
        raise InputError(f"{label}: a polygon ring needs 4 or more positions, first = last")
    for position in ring:
        if len(position) < 2 or not all(math.isfinite(float(v)) for v in position[:2]):
            raise InputError(f"{label}: position {position} is not a longitude, latitude pair")


def _numbers(values: Sequence[float] | str, count: int, message: str) -> tuple[float, ...]:
    if isinstance(values, str):
        values = values.split(",")
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{message}, got {values!r}") from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{message}, got {_text(numbers)}")
    return numbers


def _check_lat(value: float, label: str) -> None:
    if not -90 <= value <= 90:
        raise InputError(f"{label} {value:g} is out of range [-90, 90]")


def _check_lng(value: float, label: str) -> None:
    if not -180 <= value <= 180:
        raise InputError(f"{label} {value:g} is out of range [-180, 180]")


def _text(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def describe(area: Area) -> str:
    """A short description for messages: the box, and whether a polygon clips it."""
    text = f"bbox {_text(area.bbox)}"
    return f"{text} (polygon)" if area.geometry else text
