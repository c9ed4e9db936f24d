"""The sample mosaic bundled with the package (made by scripts/make_sample_mosaic.py)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate

from madrone.sources.files import read_multiband

MOSAIC = resources.files("madrone") / "data/mosaic/S2A_L2A_T29RKH_20200219_mosaic.tif"
DEMO_WSEN = (-11.42, 24.98, -11.32, 25.08)  # the README's suggested demo area


def test_sample_mosaic_is_a_small_valid_cog() -> None:
    is_valid, errors, _warnings = cog_validate(str(MOSAIC))
    assert is_valid, errors
    assert MOSAIC.stat().st_size < 4 * 1024 * 1024
    with rasterio.open(MOSAIC) as mosaic:
        assert mosaic.crs.to_epsg() == 4326
        assert mosaic.res == pytest.approx((0.001, 0.001))
        assert tuple(mosaic.bounds) == pytest.approx((-11.6, 24.68, -10.9, 25.28))
        assert mosaic.dtypes[0] == "uint16" and mosaic.nodata == 0
        assert mosaic.tags()["ACQUISITION_DATE"] == "2020-02-19"
        assert "Copernicus Sentinel" in mosaic.tags()["TIFFTAG_COPYRIGHT"]


def test_sample_mosaic_bands_are_named_for_the_reader() -> None:
    scene = read_multiband(str(MOSAIC))
    assert {band: ref.band_index for band, ref in scene.bands.items()} == {
        "B02": 1,
        "B03": 2,
        "B04": 3,
        "B08": 4,
        "B11": 5,
    }
    assert scene.metadata["datetime"].startswith("2020-02-19")


def test_sample_mosaic_clouds_are_nodata_in_every_band() -> None:
    with rasterio.open(MOSAIC) as mosaic:
        data = mosaic.read()
    empty = data == 0
    assert (empty.all(axis=0) == empty.any(axis=0)).all()
    assert 0.05 < empty[0].mean() < 0.15  # the cloud field in the north-east


def test_sample_mosaic_demo_area_is_clear_desert_with_a_wadi() -> None:
    with rasterio.open(MOSAIC) as mosaic:
        window = from_bounds(*DEMO_WSEN, transform=mosaic.transform)
        red, nir = (mosaic.read(i, window=window).astype("float64") for i in (3, 4))
    assert (red > 0).all()
    ndvi = (nir - red) / (nir + red)
    assert 0.0 < ndvi.min() < 0.06
    assert np.median(ndvi) == pytest.approx(0.081, abs=0.005)
    assert 0.12 < ndvi.max() < 0.2
