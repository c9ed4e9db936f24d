"""The tile cutter: nearest pixels from the right overview, NaN for nodata, None off the
raster, and a cache of open rasters that reopens a replaced file and closes the evicted."""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.warp
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from madrone.web import tilecut
from madrone.web.tilecut import CutterClosed, TileCutter, cutter_for

WMQ = morecantile.tms.get("WebMercatorQuad")
ORIGIN = (500000.0, 4650000.0)  # EPSG:32633, about 15 E 42 N


def write_ramp(path: Path, nodata: float | None = -9999.0) -> None:
    """1024 x 1024 px at 10 m: value = row * 1024 + col (each pixel unique), a nodata
    square in the top-left corner, overviews 2 and 4 by nearest."""
    values = np.arange(1024 * 1024, dtype=np.float32).reshape(1024, 1024)
    if nodata is not None:
        values[:100, :100] = nodata
    profile = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 1, "dtype": "float32",
               "crs": "EPSG:32633", "transform": from_origin(*ORIGIN, 10, 10), "nodata": nodata,
               "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as out:
        out.write(values, 1)
        out.build_overviews([2, 4], Resampling.nearest)


@pytest.fixture
def ramp(tmp_path: Path) -> Path:
    path = tmp_path / "ramp.tif"
    write_ramp(path)
    return path


def tile_over(lon: float, lat: float, zoom: int) -> morecantile.Tile:
    return WMQ.tile(lon, lat, zoom)


def raster_lonlat(path: Path, row: int, col: int) -> tuple[float, float]:
    with rasterio.open(path) as source:
        x, y = source.xy(row, col)
        (lon,), (lat,) = rasterio.warp.transform(source.crs, "EPSG:4326", [x], [y])
    return lon, lat


def level_values(path: Path, level: int) -> set[float]:
    """Every value of a level: 0 full resolution, 1 the first overview, 2 the second."""
    with rasterio.open(path, overview_level=level - 1 if level else None) as source:
        return set(source.read(1).ravel().tolist())


def test_values_are_pixels_of_the_level_the_zoom_needs(ramp: Path) -> None:
    # At about 42 N a tile pixel is 7.1 m on the ground at zoom 14, 14.2 at 13, 28.4 at 12
    # and 56.8 at 11: the ramp's 10 m pixels serve down to zoom 13, its 20 m overview zoom
    # 12, its 40 m overview zoom 11 and everything coarser.
    levels = [level_values(ramp, level) for level in range(3)]
    cutter = TileCutter(str(ramp))
    try:
        lon, lat = raster_lonlat(ramp, 512, 512)
        for zoom, level in [(15, 0), (14, 0), (13, 0), (12, 1), (11, 2), (10, 2)]:
            t = tile_over(lon, lat, zoom)
            values = cutter.tile(t.z, t.x, t.y)
            assert values is not None and values.dtype == np.float32
            found = set(values[np.isfinite(values)].tolist())
            assert len(found) > 100 and found <= levels[level], zoom
            if level < 2:
                assert not found <= levels[level + 1], zoom
    finally:
        cutter.close()


def test_nodata_is_nan_and_off_raster_is_none(ramp: Path) -> None:
    cutter = TileCutter(str(ramp))
    try:
        lon, lat = raster_lonlat(ramp, 100, 100)  # the corner of the nodata square
        t = tile_over(lon, lat, 16)
        values = cutter.tile(t.z, t.x, t.y)
        assert values is not None and np.isnan(values).any() and np.isfinite(values).any()
        assert not (values == -9999.0).any()
        far = tile_over(-120.0, -40.0, 12)
        assert cutter.tile(far.z, far.x, far.y) is None
    finally:
        cutter.close()


def test_cache_reopens_new_versions_and_closes_the_evicted(ramp: Path, tmp_path: Path) -> None:
    tilecut._cache.clear()
    first = cutter_for(str(ramp), "v1")
    assert cutter_for(str(ramp), "v1") is first
    second = cutter_for(str(ramp), "v2")
    assert second is not first
    others = []
    for number in range(16):
        path = tmp_path / f"r{number}.tif"
        write_ramp(path, nodata=None)
        others.append(cutter_for(str(path), "v1"))
    assert first.closed and second.closed  # the two least recently used went
    t = tile_over(*raster_lonlat(ramp, 512, 512), 15)
    with pytest.raises(CutterClosed):
        first.tile(t.z, t.x, t.y)
    assert not others[-1].closed
    tilecut.forget(str(tmp_path / "r15.tif"))
    assert others[-1].closed
    tilecut._cache.clear()
    for cutter in others:
        cutter.close()
