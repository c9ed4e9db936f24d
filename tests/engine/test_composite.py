"""Per-pixel compositing of day layers: first valid, median, max-ndvi; pure arrays."""

from __future__ import annotations

import numpy as np
import pytest

from madrone.engine.composite import Layer, combine, composite_groups
from madrone.grid import Grid
from madrone.sources.base import Scene

nan = np.nan


def layer(ndvi: list, ndsi: list, origin: list) -> Layer:
    return Layer(
        {"NDVI": np.array([ndvi], np.float32), "NDSI": np.array([ndsi], np.float32)},
        np.array([origin], np.int16),
    )


LAYERS = [
    layer([0.1, nan, 0.5, nan], [-0.1, nan, -0.5, nan], [0, -1, 1, -1]),
    layer([0.3, 0.2, nan, nan], [-0.3, -0.2, nan, nan], [2, 2, -1, -1]),
    layer([0.2, 0.4, 0.9, nan], [-0.2, -0.4, -0.9, nan], [3, 3, 4, -1]),
]


def test_first_takes_each_pixel_from_the_first_valid_day() -> None:
    result = combine(LAYERS, ["NDVI", "NDSI"], "first")
    np.testing.assert_allclose(result.values["NDVI"][0], [0.1, 0.2, 0.5, nan])
    np.testing.assert_allclose(result.values["NDSI"][0], [-0.1, -0.2, -0.5, nan])
    np.testing.assert_array_equal(result.counts["NDVI"][0], [3, 2, 2, 0])
    assert result.contributions == {0: 1, 2: 1, 1: 1}


def test_median_of_the_valid_days() -> None:
    result = combine(LAYERS, ["NDVI", "NDSI"], "median")
    np.testing.assert_allclose(result.values["NDVI"][0], [0.2, 0.3, 0.7, nan])
    np.testing.assert_allclose(result.values["NDSI"][0], [-0.2, -0.3, -0.7, nan])
    assert result.values["NDVI"].dtype == np.float32
    # Every valid observation counts as given.
    assert result.contributions == {0: 1, 1: 1, 2: 2, 3: 2, 4: 1}


def test_max_ndvi_takes_every_index_from_the_greenest_day() -> None:
    result = combine(LAYERS, ["NDSI"], "max-ndvi", ranking="NDVI")
    np.testing.assert_allclose(result.values["NDSI"][0], [-0.3, -0.4, -0.9, nan])
    np.testing.assert_array_equal(result.counts["NDSI"][0], [3, 2, 2, 0])


def test_days_group_by_solar_day_in_order_of_their_first_scene() -> None:
    grid = Grid("EPSG:32633", (120.0, 0.0, 500000.0, 0.0, -120.0, 5100000.0), 100, 100)

    def scene(name: str, when: str | None) -> Scene:
        return Scene(name, {}, {"datetime": when} if when else {})

    scenes = [
        scene("TWL_0815", "2023-08-15T09:56:00Z"),
        scene("TWM_0818", "2023-08-18T10:06:00Z"),
        scene("undated", None),
        scene("TWM_0815", "2023-08-15T09:56:10Z"),
        scene("TWL_0818", "2023-08-18T10:06:05Z"),
    ]
    assert composite_groups(scenes, grid) == ((0, 3), (1, 4), (2,))


def test_first_takes_each_index_from_its_own_first_valid_day() -> None:
    # Snow: NDVI masks it on day 1, NDSI keeps it; NDSI must not wait for NDVI's day.
    layers = [layer([nan], [0.8], [0]), layer([0.4], [-0.2], [1])]
    result = combine(layers, ["NDVI", "NDSI"], "first")
    np.testing.assert_allclose(result.values["NDVI"][0], [0.4])
    np.testing.assert_allclose(result.values["NDSI"][0], [0.8])
    assert result.contributions == {1: 1}  # the primary index's source


@pytest.mark.parametrize("method", ["first", "median", "max-ndvi"])
def test_no_valid_day_stays_nodata(method: str) -> None:
    empty = [layer([nan], [nan], [-1]), layer([nan], [nan], [-1])]
    result = combine(empty, ["NDVI", "NDSI"], method, ranking="NDVI")
    assert np.isnan(result.values["NDVI"]).all()
    assert result.counts["NDVI"][0, 0] == 0
    assert result.contributions == {}
