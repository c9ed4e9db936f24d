"""Tests for madrone.products.overviews: block means against numpy, tiling independence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from madrone.grid import Tile
from madrone.products.overviews import (
    halve,
    holds_whole_blocks,
    level_shape,
    overview_factors,
    tile_levels,
)


def block_nanmean(values: np.ndarray) -> np.ndarray:
    """The reference: pad to even with NaN, reshape into 2 x 2 blocks, np.nanmean in float64."""
    height, width = values.shape
    padded = np.full((height + height % 2, width + width % 2), np.nan)
    padded[:height, :width] = values
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an all-NaN block
        return np.nanmean(blocks, axis=(1, 3))


def field(height: int, width: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, (height, width)).astype(np.float32)
    values[rng.uniform(size=values.shape) < 0.3] = np.nan  # scattered nodata
    values[:4, :6] = np.nan  # whole blocks of nodata
    return values


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (1, 5), (33, 2)])
def test_halve_is_the_nan_mean_of_each_block(shape: tuple[int, int]) -> None:
    values = field(*shape)
    out = halve(values)
    expected = block_nanmean(values)
    assert out.dtype == np.float32 and out.shape == expected.shape == level_shape(*shape, 2)
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert np.isnan(out[:2, :3]).all()  # a block with no valid pixel stays nodata


@pytest.mark.parametrize("shape", [(8, 8), (64, 30)])
def test_halve_without_nodata_gives_the_bytes_it_gives_beside_nodata(shape) -> None:
    values = np.random.default_rng(5).uniform(-1, 1, shape).astype(np.float32)
    beside = np.vstack([values, np.full((2, shape[1]), np.nan, np.float32)])
    out = halve(values)  # no NaN: the shortcut; beside NaN: the general way
    assert out.tobytes() == halve(beside)[: shape[0] // 2].tobytes()
    np.testing.assert_allclose(out, block_nanmean(values), rtol=1e-6, atol=1e-7)


def test_halve_of_a_constant_is_the_constant_exactly() -> None:
    values = np.full((6, 6), 0.3, np.float32)
    values[0, 0] = np.nan
    assert (halve(values) == np.float32(0.3)).all()


def test_levels_cascade_and_shapes_round_up() -> None:
    values = field(10980 // 40, 10980 // 40)  # 274 x 274
    factors = overview_factors(*values.shape, block=16)
    assert factors == [2, 4, 8, 16, 32]
    levels = tile_levels(values, factors)
    expected = values
    for factor, level in zip(factors, levels, strict=True):
        expected = block_nanmean(expected).astype(np.float32)
        assert level.shape == level_shape(*values.shape, factor) == expected.shape
        np.testing.assert_allclose(level, expected, rtol=1e-5, atol=1e-6)


def test_levels_of_tiles_equal_the_levels_of_the_whole() -> None:
    values = field(300, 260)
    factors = [2, 4, 8]
    whole = tile_levels(values, factors)
    for tile_size in (64, 128, 8):
        for row in range(0, 300, tile_size):
            for col in range(0, 260, tile_size):
                tile = Tile(row, col, min(tile_size, 300 - row), min(tile_size, 260 - col))
                assert holds_whole_blocks(tile, values.shape, 8)
                parts = tile_levels(values[row : row + tile.height, col : col + tile.width],
                                    factors)  # fmt: skip
                for factor, part, level in zip(factors, parts, whole, strict=True):
                    window = level[row // factor :, col // factor :][
                        : part.shape[0], : part.shape[1]
                    ]
                    assert np.array_equal(part, window, equal_nan=True)


def test_tiles_cutting_blocks_are_recognised() -> None:
    assert not holds_whole_blocks(Tile(0, 0, 100, 100), (300, 300), 8)
    assert not holds_whole_blocks(Tile(100, 0, 100, 100), (300, 300), 8)
    assert holds_whole_blocks(Tile(296, 0, 4, 104), (300, 300), 8)  # the grid's last rows
