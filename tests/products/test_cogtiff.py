"""Tests for madrone.products.cogtiff: blocks compressed as GDAL does, laid out as a COG."""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from madrone.products import cogtiff

TRANSFORM = from_origin(500000.0, 5000000.0, 10.0, 10.0)


def gdal_block(tmp_path: Path, values: np.ndarray, compress: str) -> bytes:
    """The first block of a tiled GeoTIFF GDAL writes, decompressed but still predicted."""
    path = tmp_path / f"gdal-{compress}.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
        dtype=values.dtype.name, crs="EPSG:32633", transform=TRANSFORM, tiled=True,
        blockxsize=512, blockysize=512, compress=compress,
        predictor=cogtiff.predictor_for(values.dtype),
    ) as dataset:  # fmt: skip
        dataset.write(values, 1)
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    stored = path.read_bytes()[offset : offset + size]
    return (
        imagecodecs.zstd_decode(stored) if compress == "ZSTD" else imagecodecs.zlib_decode(stored)
    )


def field(seed: int, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint16":
        return rng.integers(0, 40, (512, 512)).astype(np.uint16)
    values = rng.normal(0.3, 0.2, (512, 512)).astype(np.float32)
    values[rng.uniform(size=values.shape) < 0.05] = np.nan
    return values


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
@pytest.mark.parametrize("compress", ["ZSTD", "DEFLATE"])
def test_blocks_are_predicted_exactly_as_gdal_predicts_them(
    tmp_path: Path, dtype: str, compress: str
) -> None:
    values = field(3, dtype)
    ours = cogtiff.encode_block(values, compress, 1)
    decoded = imagecodecs.zstd_decode(ours) if compress == "ZSTD" else imagecodecs.zlib_decode(ours)
    assert decoded == gdal_block(tmp_path, values, compress)


def cog_of(tmp_path: Path, levels: list[np.ndarray], dtype: str, compress: str,
           bigtiff: bool | None = None) -> Path:  # fmt: skip
    """A COG of the given levels (each one block at most 512 px), via write_cog."""
    blocks_path = tmp_path / "blocks"
    fd = os.open(blocks_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    placed, end = [], 0
    for values in levels:
        padded = np.zeros((512, 512), values.dtype)
        padded[: values.shape[0], : values.shape[1]] = values
        payload = cogtiff.encode_block(padded, compress, 1)
        os.pwrite(fd, payload, end)
        placed.append(cogtiff.Level(*values.shape, [(fd, end, len(payload))]))
        end += len(payload)
    template = tmp_path / "template.tif"
    with rasterio.open(
        template, "w", driver="GTiff", width=levels[0].shape[1], height=levels[0].shape[0],
        count=1, dtype=dtype, crs="EPSG:32633", transform=TRANSFORM, tiled=True,
        nodata=float("nan") if dtype == "float32" else None, SPARSE_OK="TRUE",
    ) as dataset:  # fmt: skip
        dataset.update_tags(index="NDVI", formula="(N - R) / (N + R)")
        dataset.set_band_description(1, "NDVI")
    path = tmp_path / "out.tif"
    cogtiff.write_cog(str(path), placed, np.dtype(dtype), compress, 512,
                      cogtiff.template_tags(str(template)), bigtiff=bigtiff)  # fmt: skip
    os.close(fd)
    return path


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize(("dtype", "compress"), [("float32", "ZSTD"), ("uint16", "DEFLATE")])
def test_the_layout_is_a_valid_cog_gdal_reads_back_exactly(
    tmp_path: Path, dtype: str, compress: str, bigtiff: bool
) -> None:
    full = field(5, dtype)[:500, :300]
    overview = field(6, dtype)[:250, :150]
    path = cog_of(tmp_path, [full, overview], dtype, compress, bigtiff)
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    assert path.read_bytes()[:4] == (b"II+\0" if bigtiff else b"II*\0")
    with rasterio.open(path) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dataset.compression.name == compress.lower()
        assert dataset.crs.to_epsg() == 32633 and dataset.transform == TRANSFORM
        assert dataset.tags()["formula"] == "(N - R) / (N + R)"
        assert dataset.descriptions == ("NDVI",)
        assert dataset.overviews(1) == [2]
        assert (dataset.nodata is None) == (dtype == "uint16")
        assert np.array_equal(dataset.read(1), full, equal_nan=True)
    with rasterio.open(path, overview_level=0) as level:
        assert np.array_equal(level.read(1), overview, equal_nan=True)


def test_each_block_carries_its_size_before_and_its_last_bytes_after(tmp_path: Path) -> None:
    path = cog_of(tmp_path, [field(7, "float32")], "float32", "ZSTD")
    data = path.read_bytes()
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    assert int.from_bytes(data[offset - 4 : offset], "little") == size
    assert data[offset + size : offset + size + 4] == data[offset + size - 4 : offset + size]
