"""Tests for madrone.products.writer: codecs, overviews from the tiles, tiling independence."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from madrone.errors import InputError
from madrone.grid import Grid, Tile, iter_tiles
from madrone.products import cogtiff
from madrone.products.overviews import tile_levels
from madrone.products.writer import CogWriter, check_codec, overview_factors

GRID = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 1300, 1100)
TAGS = {"NDVI": {"index": "NDVI", "formula": "(N - R) / (N + R)"}, "NDVI_count": {}}


def scene(seed: int = 11) -> np.ndarray:
    """An NDVI-like float32 field over GRID with a nodata swath and scattered NaN."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : GRID.height, 0 : GRID.width]
    values = (np.sin(rows / 90.0) * np.cos(cols / 70.0) * 0.8).astype(np.float32)
    values += rng.normal(0, 0.05, values.shape).astype(np.float32)
    values[cols > rows + 600] = np.nan  # a swath edge
    values[rng.uniform(size=values.shape) < 0.01] = np.nan
    return values


def new_writer(folder: Path, **options) -> CogWriter:
    folder.mkdir(parents=True, exist_ok=True)
    return CogWriter(GRID, str(folder), {"NDVI": "ndvi", "NDVI_count": "count"}, TAGS,
                     dtypes={"NDVI_count": "uint16"}, **options)  # fmt: skip


def write_tiles(writer: CogWriter, values: np.ndarray, tiles: list[Tile], written=None) -> None:
    counts = np.where(np.isnan(values), 0, 3).astype(np.uint16)
    for tile in tiles:
        window = np.s_[tile.row_off : tile.row_off + tile.height,
                       tile.col_off : tile.col_off + tile.width]  # fmt: skip
        done = None if written is None else lambda tile=tile: written.append(tile)
        writer.write(tile, {"NDVI": values[window], "NDVI_count": counts[window]}, done)


def write_cog(folder: Path, values: np.ndarray, tile_size: int, **options) -> Path:
    writer = new_writer(folder, **options)
    write_tiles(writer, values, list(reversed(list(iter_tiles(GRID, tile_size)))))  # any order
    cogs = writer.finish()
    assert sorted(p.name for p in folder.iterdir()) == ["count.tif", "ndvi.tif"]  # no leftovers
    return Path(cogs["NDVI"])


def levels_of(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as dataset:
        arrays = [dataset.read(1)]
        for level in range(len(dataset.overviews(1))):
            with rasterio.open(path, overview_level=level) as overview:
                arrays.append(overview.read(1))
    return arrays


def test_default_cog_is_zstd_with_the_float_predictor_and_valid(tmp_path: Path) -> None:
    values = scene()
    path = write_cog(tmp_path, values, 512)
    valid, errors, _ = cog_validate(str(path))
    assert valid, errors
    with rasterio.open(path) as dataset:
        assert dataset.compression.name == "zstd"
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        assert dataset.block_shapes == [(512, 512)]
        assert dataset.overviews(1) == overview_factors(GRID.height, GRID.width) == [2, 4]
        assert np.isnan(dataset.nodata)
        assert dataset.tags()["formula"] == "(N - R) / (N + R)"
        assert dataset.descriptions == ("NDVI",)
        assert dataset.transform == GRID.affine
        assert np.array_equal(dataset.read(1), values, equal_nan=True)


def test_overviews_are_block_means_of_the_values(tmp_path: Path) -> None:
    values = scene()
    arrays = levels_of(write_cog(tmp_path, values, 512))
    expected = values
    for level in arrays[1:]:
        rows, cols = expected.shape
        padded = np.full((rows + rows % 2, cols + cols % 2), np.nan)
        padded[:rows, :cols] = expected
        with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="empty slice"):
            expected = np.nanmean(padded.reshape(padded.shape[0] // 2, 2, -1, 2), axis=(1, 3))
        np.testing.assert_allclose(level, expected, rtol=1e-5, atol=1e-6)
    with rasterio.open(tmp_path / "ndvi.tif", overview_level=0) as overview:
        assert overview.shape == (650, 550)
        assert overview.transform.a == pytest.approx(20.0)


def test_products_are_byte_identical_across_tile_sizes_and_codec_levels(tmp_path: Path) -> None:
    values = scene()
    reference = write_cog(tmp_path / "512", values, 512)
    # 256: tiles hold whole blocks of every level; 100 and 333 cut them, so the levels come
    # from the full-resolution file instead: the same bytes either way.
    for tile_size in (256, 100, 333):
        other = write_cog(tmp_path / str(tile_size), values, tile_size)
        assert other.read_bytes() == reference.read_bytes(), tile_size
    assert (tmp_path / "100" / "count.tif").read_bytes() == (
        tmp_path / "512" / "count.tif"
    ).read_bytes()
    deflate = write_cog(tmp_path / "deflate", values, 100, codec="deflate", zlevel=6)
    for ours, theirs in zip(levels_of(deflate), levels_of(reference), strict=True):
        assert np.array_equal(ours, theirs, equal_nan=True)
    with rasterio.open(deflate) as dataset:
        assert dataset.compression.name == "deflate"


def test_tiles_holding_whole_blocks_need_no_full_resolution_file(tmp_path: Path) -> None:
    values = scene()
    reference = write_cog(tmp_path / "kept", values, 512).read_bytes()
    full = GRID.height * GRID.width * 4  # bytes of the full resolution
    for tile_size in (512, 256):  # 256: each 512 px block is four tiles' parts
        folder = tmp_path / f"not-kept-{tile_size}"
        writer = new_writer(folder, keep_full_resolution=False)
        write_tiles(writer, values, list(iter_tiles(GRID, tile_size)))
        written = (folder / "ndvi.raw").stat().st_blocks * 512
        cogs = writer.finish()
        assert Path(cogs["NDVI"]).read_bytes() == reference, tile_size
        if tile_size == 512:  # every block compressed straight from its tile
            assert written < full // 4, written  # GDAL's header and its first megabyte
        else:
            assert written >= full, written
    with pytest.raises(ValueError, match="cuts blocks of the overviews"):
        write_tiles(new_writer(tmp_path / "cut", keep_full_resolution=False), values,
                    [Tile(0, 0, 101, 101)])  # fmt: skip


@pytest.mark.parametrize("keep", [True, False])
def test_a_resumed_writer_keeps_the_tiles_it_reported_written(tmp_path: Path, keep: bool) -> None:
    values = scene()
    reference = write_cog(tmp_path / "whole", values, 512).read_bytes()
    tiles = list(iter_tiles(GRID, 512))  # each holds whole blocks, compressed at once
    first, written = new_writer(tmp_path / "job", keep_full_resolution=keep), []
    write_tiles(first, values, tiles[:4], written)
    deadline = time.monotonic() + 30
    while len(written) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(written) == set(tiles[:4]) and len(written) == 4
    with open(tmp_path / "job" / "ndvi.blocks.index", "ab") as index:
        index.write(b"\1\0\0")  # a record cut short by a crash
    # The first writer is left as a killed process leaves it: nothing finished or removed.
    second = new_writer(tmp_path / "job", keep_full_resolution=keep, reuse=True)
    write_tiles(second, values, tiles[4:])
    assert Path(second.finish()["NDVI"]).read_bytes() == reference


def test_counts_get_overviews_too(tmp_path: Path) -> None:
    write_cog(tmp_path, scene(), 512)
    with rasterio.open(tmp_path / "count.tif") as dataset:
        assert dataset.dtypes[0] == "uint16" and dataset.overviews(1) == [2, 4]
        assert dataset.compression.name == "zstd"


def test_block_means_from_a_tile_match_the_product(tmp_path: Path) -> None:
    values = scene()
    arrays = levels_of(write_cog(tmp_path, values, 512))
    corner = tile_levels(values[:512, :512], [2, 4])
    assert np.array_equal(arrays[1][:256, :256], corner[0], equal_nan=True)
    assert np.array_equal(arrays[2][:128, :128], corner[1], equal_nan=True)


@pytest.mark.parametrize(
    ("codec", "level", "message"),
    [("lzw", 1, "MADRONE_COG_CODEC='lzw' is not a COG codec"),
     ("deflate", 12, "MADRONE_COG_ZLEVEL=12 is not a DEFLATE level .1 to 9."),
     ("zstd", 0, "MADRONE_COG_ZLEVEL=0 is not a ZSTD level .1 to 22.")],
)  # fmt: skip
def test_unknown_codecs_and_levels_name_the_setting(codec: str, level: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_codec(codec, level)


def test_codec_names_are_case_blind() -> None:
    assert check_codec("ZSTD", 9) == "ZSTD" and check_codec("Deflate", 1) == "DEFLATE"


def test_a_short_write_is_finished_or_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the OS takes only part of (a full disk) is finished, or raises: never half a
    block recorded as whole."""
    calls = []
    real = os.pwrite

    def short(fd, data, offset):  # the OS takes at most 3 bytes at a time
        calls.append(offset)
        return real(fd, bytes(memoryview(data)[:3]), offset)

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    monkeypatch.setattr(os, "pwrite", short)
    cogtiff.write_all(fd, np.arange(4, dtype="<u2"), 5)
    assert calls == [5, 8, 11]
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)  # the disk is full
    with pytest.raises(OSError, match="writing 1 bytes at offset 20"):
        cogtiff.write_all(fd, b"x", 20)
    os.close(fd)
    assert path.read_bytes() == b"\0" * 5 + np.arange(4, dtype="<u2").tobytes()
