"""Areas: corners, boxes and polygons checked before any pixel is read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pyproj import Transformer

from madrone.area import (
    Area,
    area_from_bbox,
    area_from_corners,
    area_from_geojson,
    area_grid,
    geometry_in,
    utm_crs,
)
from madrone.errors import InputError


def test_corners_are_the_north_west_and_south_east_ones() -> None:
    area = area_from_corners("45.9,15.0,45.5,15.4")
    assert area.bbox == (15.0, 45.5, 15.4, 45.9)
    assert utm_crs(area) == "EPSG:32633"


@pytest.mark.parametrize(
    ("corners", "words"),
    [
        ("45.5,15.0,45.9,15.4", ["upper-left latitude 45.5", "south of", "45.9", "swapped"]),
        ("45.9,15.4,45.5,15.0", ["upper-left longitude 15.4", "east of", "15", "swapped"]),
        ("95,15.0,45.5,15.4", ["upper-left latitude 95", "[-90, 90]"]),
        ("45.9,15.0,-91,15.4", ["lower-right latitude -91", "[-90, 90]"]),
        ("45.9,-181,45.5,15.4", ["upper-left longitude -181", "[-180, 180]"]),
        ("45.9,15.0,45.5,181", ["lower-right longitude 181", "[-180, 180]"]),
        ("45.9,15.0,45.9,15.4", ["empty area"]),
        ("45.9,15.0,45.5,15.0", ["empty area"]),
        ("45.9,15.0,45.5", ["4 numbers"]),
        ("45.9,15.0,north,15.4", ["4 numbers"]),
        ("nan,15.0,45.5,15.4", ["4 numbers"]),
    ],
)
def test_bad_corners_are_named(corners: str, words: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        area_from_corners(corners)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    ("bbox", "words"),
    [
        ((15.4, 45.5, 15.0, 45.9), ["west 15.4", "east of east 15"]),
        ((15.0, 45.9, 15.4, 45.5), ["south 45.9", "north of north 45.5"]),
        ((15.0, 45.5, 15.0, 45.9), ["empty area"]),
        ((15.0, -95, 15.4, 45.9), ["bbox south -95"]),
    ],
)
def test_bad_boxes_are_named(bbox: tuple, words: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        area_from_bbox(bbox)
    for word in words:
        assert word in str(caught.value)


def test_a_box_across_the_antimeridian_gets_one_continuous_utm_grid() -> None:
    area = area_from_bbox((179.8, -17.0, -179.8, -16.8))
    assert area.crosses_antimeridian
    assert area.centre == pytest.approx((-180.0, -16.9))
    assert utm_crs(area) == "EPSG:32701"  # south, zone 1
    grid = area_grid(area, utm_crs(area), 20)
    # 0.4 degree of longitude at 17 S is about 42.6 km; 0.2 degree of latitude 22.1 km.
    assert grid.width * 20 == pytest.approx(42_600, rel=0.02)
    # 3 degrees from zone 1's central meridian, north-south lines lean: a taller box.
    assert 22_100 <= grid.height * 20 <= 23_500
    expected = area_from_bbox((-180.0, -17.0, -179.6, -16.8)).area_km2()
    assert area.area_km2() == pytest.approx(expected, rel=1e-6)
    corners = area_from_corners("-16.8,179.8,-17.0,-179.8")  # the same box by two corners
    assert corners.bbox == area.bbox and corners.crosses_antimeridian
    # West of the antimeridian, zone 60 (north) for a box in the northern hemisphere.
    assert utm_crs(area_from_corners("52,179.0,51,179.5")) == "EPSG:32660"


def test_grid_covers_the_area_on_whole_multiples_of_the_resolution() -> None:
    area = area_from_corners("45.9,15.0,45.5,15.4")
    grid = area_grid(area, "EPSG:32633", 10)
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    left, bottom, right, top = grid.bounds
    for lon in (15.0, 15.2, 15.4):
        for lat in (45.5, 45.7, 45.9):
            x, y = to_utm.transform(lon, lat)
            assert left <= x <= right and bottom <= y <= top
    assert left % 10 == 0 and top % 10 == 0
    # About 14 million pixels: the benchmark's 0.4 x 0.4 degree request.
    assert 13e6 < grid.width * grid.height < 15e6


def test_area_limit_gives_both_numbers() -> None:
    area = area_from_corners("45.9,15.0,45.5,15.4")
    assert area.area_km2() == pytest.approx(31.1 * 44.5, rel=0.01)
    area.check_size(2000)
    with pytest.raises(InputError, match=r"1,38\d km2, over the limit of 1,000 km2"):
        area.check_size(1000)
    area.check_size(0)  # 0: no limit


def test_polygon_from_a_feature_collection_file(tmp_path: Path) -> None:
    triangle = [[15.0, 45.0], [15.2, 45.0], [15.0, 45.2], [15.0, 45.0]]
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {},
                      "geometry": {"type": "Polygon", "coordinates": [triangle]}}],
    }  # fmt: skip
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(collection))
    area = area_from_geojson(str(path))
    assert area.bbox == (15.0, 45.0, 15.2, 45.2)
    box = area_from_bbox(area.bbox).area_km2()
    assert area.area_km2() == pytest.approx(box / 2, rel=0.01)
    projected = geometry_in(area, "EPSG:32633")
    ring = projected["coordinates"][0][0]
    assert len(ring) > 4  # edges densified
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(15.2, 45.0)
    assert min(math.dist(p, (x, y)) for p in ring) < 1e-6
    assert Area.from_dict(json.loads(json.dumps(area.to_dict()))) == area


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"type": "Point", "coordinates": [15, 45]}', ["Polygon or MultiPolygon", "Point"]),
        ('{"type": "Polygon", "coordinates": [[[15, 45], [15.1, 45], [15, 45]]]}', ["4 or more"]),
        ('{"type": "Polygon", "coordinates": [[[15, 45], [15.1, 95], [15, 45.1], [15, 45]]]}',
         ["latitude 95"]),
        ('{"type": "FeatureCollection", "features": []}', ["no features"]),
        ("{not json", ["not valid JSON"]),
        ('{"type": "Polygon", "coordinates": [[[15, 45], [15.1, 45], [15.2, 45], [15, 45]]]}',
         ["no area"]),
    ],
)  # fmt: skip
def test_bad_polygons_are_named(text: str, words: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        area_from_geojson(text)
    for word in words:
        assert word in str(caught.value)


def test_missing_geojson_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.geojson: cannot read"):
        area_from_geojson(str(tmp_path / "nowhere.geojson"))
