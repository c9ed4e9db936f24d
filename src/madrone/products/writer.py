"""Streaming tile writer: tiles arrive in any order, one COG per index comes out.

Tiles go into a flat float32 file in a staging folder (a memory copy per tile: no encoding,
no read-modify-write of blocks); ``finish`` builds the overviews from it and encodes
everything once, on all cores, into a Cloud-Optimized GeoTIFF. Only one tile's rows are
mapped at a time, so memory stays O(tile), never O(scene).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.enums import Resampling

from madrone.grid import Grid, Tile
from madrone.sources.gdal import GDAL_TYPES

COG_BLOCK = 512


class TileWriter(Protocol):
    """What the run loop needs of a writer, so a collection-of-COGs writer can replace it."""

    def write(self, tile: Tile, arrays: Mapping[str, np.ndarray]) -> None: ...

    def finish(self) -> dict[str, str]: ...

    def abort(self) -> None: ...


def overview_factors(height: int, width: int, block: int = COG_BLOCK) -> list[int]:
    """Overview levels 2, 4, ... until the smallest fits in one block."""
    factors, factor = [], 2
    while max(height, width) / (factor // 2) > block:
        factors.append(factor)
        factor *= 2
    return factors


class CogWriter:
    """Writes each named array of the tiles into its own single-band COG (float32 with NaN
    for nodata, unless ``dtypes`` names another type for that key).

    Args:
        grid: the output grid.
        staging_dir: a private folder for temporary and finished files.
        names: output name per index key (file name without extension).
        tags: per index key, GeoTIFF metadata tags (``index`` is the band description).
        threads: compression threads for the final encode.
        zlevel: DEFLATE level (1 is as small as 6 on float32 indices, and far faster).
        cache_mb: GDAL block cache while encoding, in MiB (bounds this process's memory).
        reuse: keep raw files already in the staging folder (resuming an interrupted run).
        dtypes: per key, ``float32`` (the default) or ``uint16`` (counts; no nodata).
    """

    def __init__(
        self,
        grid: Grid,
        staging_dir: str,
        names: Mapping[str, str],
        tags: Mapping[str, Mapping[str, str]],
        threads: int = 1,
        zlevel: int = 1,
        cache_mb: int = 128,
        reuse: bool = False,
        dtypes: Mapping[str, str] | None = None,
    ) -> None:
        self._grid, self._dir, self._names, self._tags = grid, staging_dir, dict(names), tags
        self._threads, self._zlevel, self._cache_mb = threads, zlevel, cache_mb
        self._dtypes = {key: np.dtype((dtypes or {}).get(key, "float32")) for key in names}
        self._raw: dict[str, str] = {}
        self._fds: dict[str, int] = {}
        for key, name in self._names.items():
            size = grid.height * grid.width * self._dtypes[key].itemsize
            path = os.path.join(staging_dir, f"{name}.raw")
            keep = reuse and os.path.exists(path) and os.path.getsize(path) == size
            flags = os.O_RDWR | os.O_CREAT | (0 if keep else os.O_TRUNC)
            self._fds[key] = os.open(path, flags, 0o644)
            self._raw[key] = path
            os.ftruncate(self._fds[key], size)

    def raw_path(self, key: str) -> str:
        """A GDAL-readable view of the raw data written so far (a VRT)."""
        return self._write_vrt(key)

    def write(self, tile: Tile, arrays: Mapping[str, np.ndarray]) -> None:
        # One positioned write per row: cheaper than mapping fresh pages, and nothing of
        # the scene stays mapped in this process.
        width = self._grid.width
        for key, fd in self._fds.items():
            dtype = self._dtypes[key].newbyteorder("<")
            rows = np.ascontiguousarray(arrays[key], dtype=dtype)
            offset = (tile.row_off * width + tile.col_off) * dtype.itemsize
            for row in rows:
                os.pwrite(fd, row, offset)
                offset += width * dtype.itemsize

    def finish(self) -> dict[str, str]:
        """Build overviews and encode every raw file as a COG; return key -> COG path."""
        self._close_files()
        done = {}
        factors = overview_factors(self._grid.height, self._grid.width)
        for key in self._raw:
            vrt = self._write_vrt(key)
            cog_path = os.path.join(self._dir, f"{self._names[key]}.tif")
            with rasterio.Env(
                COMPRESS_OVERVIEW="NONE",
                GDAL_NUM_THREADS=str(self._threads),
                GDAL_CACHEMAX=self._cache_mb * 1024 * 1024,  # rasterio passes ints as bytes
            ):
                if factors:
                    with rasterio.open(vrt, "r+") as dataset:
                        dataset.build_overviews(factors, Resampling.average)
                rasterio.shutil.copy(
                    vrt,
                    cog_path,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    PREDICTOR="YES",
                    LEVEL=str(self._zlevel),
                    BLOCKSIZE=str(COG_BLOCK),
                    OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE",
                    NUM_THREADS=str(self._threads),
                    BIGTIFF="IF_SAFER",
                )
            done[key] = cog_path
        self.abort()
        return done

    def _close_files(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def abort(self) -> None:
        """Remove the raw files and their VRTs."""
        self._close_files()
        for path in self._raw.values():
            for leftover in (path, f"{path}.vrt", f"{path}.vrt.ovr"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        self._raw = {}

    def _write_vrt(self, key: str) -> str:
        grid, raw = self._grid, self._raw[key]
        tags = self._tags[key]
        metadata = "".join(
            f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in sorted(tags.items())
        )
        geotransform = ", ".join(repr(v) for v in grid.affine.to_gdal())
        dtype = self._dtypes[key]
        nodata = "<NoDataValue>nan</NoDataValue>" if dtype.kind == "f" else ""
        vrt = f"""<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">
  <SRS>{escape(CRS.from_user_input(grid.crs).to_wkt())}</SRS>
  <GeoTransform>{geotransform}</GeoTransform>
  <Metadata>{metadata}</Metadata>
  <VRTRasterBand dataType="{GDAL_TYPES[dtype.name]}" band="1" subClass="VRTRawRasterBand">
    <Description>{escape(tags.get("index", key))}</Description>
    {nodata}
    <SourceFilename relativeToVRT="1">{escape(os.path.basename(raw))}</SourceFilename>
    <ImageOffset>0</ImageOffset>
    <PixelOffset>{dtype.itemsize}</PixelOffset>
    <LineOffset>{grid.width * dtype.itemsize}</LineOffset>
    <ByteOrder>LSB</ByteOrder>
  </VRTRasterBand>
</VRTDataset>
"""
        path = f"{raw}.vrt"
        with open(path, "w") as handle:
            handle.write(vrt)
        return path
