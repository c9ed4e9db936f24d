"""GeoJSON checked by RFC 7946 without trusting it: size and nesting limits, every position
a number pair in range, rings closed, and a JSON path in every error message. Used for the
files users add to the catalog (and for what the web app accepts)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, NoReturn

from madrone.errors import InputError


def read_json(path: str, max_bytes: int) -> Any:
    """Parse a JSON file of at most ``max_bytes``; NaN/Infinity and deep nesting refused."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise InputError(
            f"{path}: {size / 2**20:.1f} MiB, over the GeoJSON limit of {max_bytes / 2**20:g} MiB"
        )
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"{path}: the JSON is nested too deeply") from None
    except ValueError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
MAX_COLLECTION_NESTING = 8


class GeoJSONSummary:
    """Walks a GeoJSON document, checking it by RFC 7946 and counting as it goes; every
    error names the JSON path of what is wrong (``features[2].geometry.coordinates[0]``)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.features = 0
        self.vertices = 0
        self.types: set[str] = set()
        self._west = self._south = math.inf
        self._east = self._north = -math.inf

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (self._west, self._south, self._east, self._north)

    def fail(self, where: str, what: str) -> InputError:
        return InputError(f"{self.label}: {where or 'the document'}: {what}")

    def walk_object(self, value: Any) -> None:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "FeatureCollection":
            features = value.get("features")
            if not isinstance(features, list):
                raise self.fail("features", "a FeatureCollection needs a 'features' array")
            for n, feature in enumerate(features):
                if not isinstance(feature, dict) or feature.get("type") != "Feature":
                    raise self.fail(f"features[{n}]", "is not a Feature")
                self.walk_feature(feature, f"features[{n}]")
        elif kind == "Feature":
            self.walk_feature(value, "")
        elif kind in GEOMETRY_TYPES or kind == "GeometryCollection":
            self.walk_geometry(value, "", 0)
        else:
            raise self.fail(
                "", f"type {kind!r} is not a GeoJSON Feature, FeatureCollection or geometry"
            )

    def walk_feature(self, feature: dict[str, Any], where: str) -> None:
        self.features += 1
        prefix = f"{where}." if where else ""
        if "geometry" not in feature:
            raise self.fail(f"{prefix}geometry", "a Feature needs a 'geometry' (or null)")
        properties = feature.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise self.fail(f"{prefix}properties", "must be an object or null")
        if feature["geometry"] is not None:
            self.walk_geometry(feature["geometry"], f"{prefix}geometry", 0)

    def walk_geometry(self, geometry: Any, where: str, nesting: int) -> None:
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        prefix = f"{where}." if where else ""
        if kind == "GeometryCollection":
            if nesting >= MAX_COLLECTION_NESTING:
                raise self.fail(where, "GeometryCollections nested too deeply")
            members = geometry.get("geometries")
            if not isinstance(members, list):
                raise self.fail(f"{prefix}geometries", "must be an array of geometries")
            self.types.add(kind)
            for n, member in enumerate(members):
                self.walk_geometry(member, f"{prefix}geometries[{n}]", nesting + 1)
            return
        if kind not in GEOMETRY_TYPES:
            raise self.fail(where or "type", f"{kind!r} is not a GeoJSON geometry type")
        self.types.add(kind)
        self.walk_coordinates(geometry.get("coordinates"), kind, f"{prefix}coordinates")

    def walk_coordinates(self, value: Any, kind: str, where: str) -> None:
        """Positions of one geometry at its fixed nesting depth, with its shape rules."""
        if kind == "Point":
            self.positions([value], where, single=True)
            return
        if not isinstance(value, list):
            raise self.fail(where, f"{kind} coordinates must be an array")
        if kind == "LineString" and len(value) < 2:
            raise self.fail(where, "a LineString needs 2 or more positions")
        if kind in ("MultiPoint", "LineString"):
            self.positions(value, where)
            return
        for n, part in enumerate(value):
            if kind == "Polygon":
                self.ring(part, f"{where}[{n}]")
            else:
                self.walk_coordinates(part, _PART_OF[kind], f"{where}[{n}]")

    def ring(self, ring: Any, where: str) -> None:
        if not isinstance(ring, list) or len(ring) < 4:
            raise self.fail(where, "a polygon ring needs 4 or more positions")
        self.positions(ring, where)
        if ring[0] != ring[-1]:
            raise self.fail(
                where, f"the ring is not closed: first position {ring[0]} != last {ring[-1]}"
            )

    def positions(self, values: list[Any], where: str, single: bool = False) -> None:
        """Check positions and widen the box; one tight loop (a million is common)."""
        west, south, east, north = self.bbox
        for n, value in enumerate(values):
            if not (
                type(value) is list
                and 2 <= len(value) <= 3
                and type(value[0]) in _NUMBERS
                and type(value[1]) in _NUMBERS
                and (len(value) == 2 or type(value[2]) in _NUMBERS)
            ):
                self._refuse_position(value, where if single else f"{where}[{n}]")
            lon, lat = value[0], value[1]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                self._refuse_position(value, where if single else f"{where}[{n}]")
            if lon < west:
                west = lon
            if lon > east:
                east = lon
            if lat < south:
                south = lat
            if lat > north:
                north = lat
        self._west, self._south, self._east, self._north = west, south, east, north
        self.vertices += len(values)

    def _refuse_position(self, value: Any, where: str) -> NoReturn:
        if type(value) is not list or not all(type(v) in _NUMBERS for v in value[:3]):
            raise self.fail(where, f"{_short(value)} is not a position [longitude, latitude]")
        if not 2 <= len(value) <= 3:
            raise self.fail(where, f"{_short(value)} is not a position [longitude, latitude]")
        lon, lat = value[0], value[1]
        if not -180 <= lon <= 180:
            raise self.fail(where, f"longitude {lon:g} is out of range [-180, 180]")
        raise self.fail(where, f"latitude {lat:g} is out of range [-90, 90]")


_NUMBERS = (int, float)  # exact types: a JSON true is not a coordinate
_PART_OF = {"MultiLineString": "LineString", "MultiPolygon": "Polygon"}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
