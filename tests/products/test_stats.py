"""Tests for madrone.products.stats: values against numpy, block-layout independence."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import rasterio

from madrone.errors import InputError
from madrone.products.stats import (
    compute_stats,
    histogram_edges,
    window_partials,
    window_stats,
)
from tests.support.rasters import write_raster


def noisy_ndvi(seed: int = 7) -> np.ndarray:
    """A 700 x 500 NDVI-like field: a ramp plus noise, a NaN hole and a few outliers."""
    rng = np.random.default_rng(seed)
    ramp = np.tile(np.linspace(-0.8, 0.9, 700), (500, 1))
    data = (ramp + rng.normal(0.0, 0.15, ramp.shape)).astype(np.float32)
    data[100:150, 200:260] = np.nan
    data[0, :5] = [-3.0, 2.5, 1.0, -1.0, 7.0]
    return data


def test_stats_equal_numpy(tmp_path):
    data = noisy_ndvi()
    stats = compute_stats(write_raster(tmp_path / "ndvi.tif", data), (-1.0, 1.0), bins=50)
    as64 = data.astype(np.float64)
    assert stats["min"] == pytest.approx(float(np.nanmin(data)), rel=1e-6)
    assert stats["max"] == pytest.approx(float(np.nanmax(data)), rel=1e-6)
    assert stats["mean"] == pytest.approx(float(np.nanmean(as64)), rel=1e-6)
    assert stats["std"] == pytest.approx(float(np.nanstd(as64)), rel=1e-6)
    valid = int(np.isfinite(data).sum())
    assert stats["valid_pixels"] == valid == 350_000 - 50 * 60
    assert stats["total_pixels"] == 350_000
    assert stats["valid_fraction"] == pytest.approx(valid / 350_000, rel=1e-9)


def test_histogram_matches_numpy_and_folds_outliers(tmp_path):
    data = noisy_ndvi()
    stats = compute_stats(write_raster(tmp_path / "ndvi.tif", data), (-1.0, 1.0), bins=20)
    hist = stats["histogram"]
    finite = data[np.isfinite(data)].astype(np.float64)
    counts, edges = np.histogram(np.clip(finite, -1.0, 1.0), bins=20, range=(-1.0, 1.0))
    assert hist["counts"] == counts.tolist()
    assert hist["edges"] == pytest.approx(edges.tolist(), abs=1e-12)
    assert len(hist["edges"]) == 21
    assert sum(hist["counts"]) == stats["valid_pixels"]
    assert hist["below_range"] == int((finite < -1.0).sum()) >= 1
    assert hist["above_range"] == int((finite > 1.0).sum()) >= 2
    assert "first or last bin" in hist["note"]


def test_values_on_bin_edges_follow_numpy(tmp_path):
    edges = np.linspace(-1.0, 1.0, 51)
    data = np.repeat(edges.astype(np.float32)[None, :], 3, axis=0)
    stats = compute_stats(write_raster(tmp_path / "edges.tif", data), (-1.0, 1.0), bins=50)
    counts, _ = np.histogram(data.astype(np.float64), bins=50, range=(-1.0, 1.0))
    assert stats["histogram"]["counts"] == counts.tolist()


def test_values_a_hair_from_bin_edges_follow_numpy(tmp_path):
    edges = np.linspace(-1.0, 1.0, 51).astype(np.float32)
    near = [np.nextafter(edges, np.float32(-2)), edges, np.nextafter(edges, np.float32(2))]
    data = np.vstack(near * 2)
    stats = compute_stats(write_raster(tmp_path / "near.tif", data), (-1.0, 1.0), bins=50)
    counts, _ = np.histogram(data.astype(np.float64), bins=50, range=(-1.0, 1.0))
    counts[0] += np.count_nonzero(data < -1.0)  # folded into the end bins
    counts[-1] += np.count_nonzero(data > 1.0)
    assert stats["histogram"]["counts"] == counts.tolist()
    assert stats["histogram"]["below_range"] == stats["histogram"]["above_range"] == 2


@pytest.mark.parametrize(
    "layout",
    [
        {"tiled": True, "blockxsize": 512, "blockysize": 512},
        {"tiled": False},
        {"tiled": True, "blockxsize": 128, "blockysize": 256, "compress": "deflate"},
    ],
)
def test_same_result_for_any_block_layout(tmp_path, layout):
    data = noisy_ndvi(seed=11)
    tiles_256 = {"tiled": True, "blockxsize": 256, "blockysize": 256}
    reference = compute_stats(write_raster(tmp_path / "a.tif", data, **tiles_256), (-1.0, 1.0))
    other = compute_stats(write_raster(tmp_path / "b.tif", data, **layout), (-1.0, 1.0))
    assert other == reference
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert len(list(ds.block_windows(1))) > 1


def test_std_is_exact_where_float_sums_cancel(tmp_path):
    # Large offset, tiny spread: sum(x²)/n - mean² in float64 loses most digits here.
    rng = np.random.default_rng(3)
    data = (1000.0 + rng.normal(0.0, 1e-3, (300, 400))).astype(np.float32)
    stats = compute_stats(write_raster(tmp_path / "flat.tif", data), (-1.0, 1.0))
    as64 = data.astype(np.float64)
    assert stats["mean"] == pytest.approx(float(as64.mean()), rel=1e-9)
    assert stats["std"] == pytest.approx(float(as64.std()), rel=1e-6)
    assert stats["histogram"]["above_range"] == data.size


def test_all_nan_raster(tmp_path):
    data = np.full((40, 60), np.nan, dtype=np.float32)
    stats = compute_stats(write_raster(tmp_path / "empty.tif", data), (-1.0, 1.0), bins=4)
    assert (stats["min"], stats["max"], stats["mean"], stats["std"]) == (None,) * 4
    assert stats["valid_fraction"] == 0.0
    assert stats["valid_pixels"] == 0 and stats["total_pixels"] == 2400
    assert stats["histogram"]["counts"] == [0, 0, 0, 0]


def test_numeric_nodata_and_infinities_are_not_counted(tmp_path):
    data = np.array([[0.5, -9999.0, np.inf], [-0.5, np.nan, 0.25]], dtype=np.float32)
    stats = compute_stats(write_raster(tmp_path / "nd.tif", data, nodata=-9999.0), (-1.0, 1.0))
    assert stats["valid_pixels"] == 3
    assert (stats["min"], stats["max"]) == (-0.5, 0.5)
    assert stats["mean"] == pytest.approx(0.25 / 3, rel=1e-9)


def test_result_is_plain_json(tmp_path):
    stats = compute_stats(write_raster(tmp_path / "ndvi.tif", noisy_ndvi()), (-1.0, 1.0))
    assert json.loads(json.dumps(stats)) == stats
    for key in ("min", "max", "mean", "std", "valid_fraction"):
        assert type(stats[key]) is float
    assert type(stats["valid_pixels"]) is int
    assert all(type(c) is int for c in stats["histogram"]["counts"])
    assert all(type(e) is float for e in stats["histogram"]["edges"])


@pytest.mark.parametrize(("value_range", "bins"), [((1.0, -1.0), 10), ((0, 1), 0)])
def test_bad_histogram_arguments(tmp_path, value_range, bins):
    raster = write_raster(tmp_path / "ndvi.tif", noisy_ndvi())
    with pytest.raises(InputError, match="histogram"):
        compute_stats(raster, value_range, bins)


def test_window_partials_are_the_windows_own_stats_and_follow_numpy():
    # A tile at (512, 0) reaching the bottom and right of a 1300 x 1100 grid: the windows
    # cut by the grid's edge are its own; NaN, infinities, values on edges.
    rng = np.random.default_rng(5)
    tile = rng.normal(0.2, 0.5, (788, 1100)).astype(np.float32)
    tile[rng.random(tile.shape) < 0.03] = np.nan
    tile[0, :3] = [np.inf, -np.inf, 1.0]
    tile[1, :51] = np.linspace(-1.0, 1.0, 51).astype(np.float32)
    edges = histogram_edges((-1.0, 1.0))
    partials = window_partials(tile, 512, 0, (1300, 1100), edges)
    assert sorted(partials) == [(r, c) for r in (512, 1024) for c in (0, 512, 1024)]
    taller = window_partials(tile, 512, 0, (1400, 1100), edges)
    assert sorted(taller) == [(512, 0), (512, 512), (512, 1024)]
    for (row, col), part in partials.items():
        window = tile[row - 512 : row, col : col + 512]
        alone = window_stats(np.ascontiguousarray(window), edges, np.nan)  # as read back
        assert dataclasses.astuple(part)[:-1] == dataclasses.astuple(alone)[:-1]
        assert part.counts.tolist() == alone.counts.tolist()
        finite = window[np.isfinite(window)].astype(np.float64)
        counts, _ = np.histogram(np.clip(finite, -1.0, 1.0), bins=edges)
        assert part.counts.tolist() == counts.tolist()
        assert (part.count, part.minimum, part.maximum) == (finite.size, finite.min(), finite.max())
        assert (part.below, part.above) == ((finite < -1).sum(), (finite > 1).sum())
        assert part.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert part.m2 == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-7)
