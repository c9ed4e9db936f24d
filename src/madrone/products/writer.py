"""Streaming tile writer: tiles arrive in any order, one COG per index comes out.

Tiles go into an uncompressed tiled GeoTIFF in a staging folder (a cheap write per tile,
no re-encoding when tiles straddle blocks); ``finish`` encodes it once, with overviews, into
a Cloud-Optimized GeoTIFF. Memory stays O(tile), never O(scene).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import rasterio
import rasterio.shutil

from madrone.grid import Grid, Tile

COG_BLOCK = 512


class TileWriter(Protocol):
    """What the run loop needs of a writer, so a collection-of-COGs writer can replace it."""

    def write(self, tile: Tile, arrays: Mapping[str, np.ndarray]) -> None: ...

    def finish(self) -> dict[str, str]: ...

    def abort(self) -> None: ...


class CogWriter:
    """Writes each named band of the tiles into its own single-band float32 COG.

    Args:
        grid: the output grid.
        staging_dir: a private folder for temporary and finished files.
        names: output name per index key (file name without extension).
        tags: per index key, GeoTIFF metadata tags and a band description.
        threads: compression threads for the final encode.
        zlevel: DEFLATE level.
    """

    def __init__(
        self,
        grid: Grid,
        staging_dir: str,
        names: Mapping[str, str],
        tags: Mapping[str, Mapping[str, str]],
        threads: int = 1,
        zlevel: int = 6,
    ) -> None:
        self._grid, self._dir, self._names = grid, staging_dir, dict(names)
        self._threads, self._zlevel = threads, zlevel
        self._raw = {}
        for key, name in self._names.items():
            path = os.path.join(staging_dir, f"{name}.raw.tif")
            dataset = rasterio.open(path, "w", **self._raw_profile())
            dataset.update_tags(**tags[key])
            dataset.set_band_description(1, tags[key].get("index", key))
            self._raw[key] = dataset

    def _raw_profile(self) -> dict:
        return {
            "driver": "GTiff",
            "width": self._grid.width,
            "height": self._grid.height,
            "count": 1,
            "dtype": "float32",
            "nodata": float("nan"),
            "crs": self._grid.crs,
            "transform": self._grid.affine,
            "tiled": True,
            "blockxsize": COG_BLOCK,
            "blockysize": COG_BLOCK,
            "compress": "NONE",
            "BIGTIFF": "IF_SAFER",
            "SPARSE_OK": "TRUE",
        }

    def write(self, tile: Tile, arrays: Mapping[str, np.ndarray]) -> None:
        for key, dataset in self._raw.items():
            dataset.write(arrays[key], 1, window=tile.window)

    def finish(self) -> dict[str, str]:
        """Encode every raw file as a COG in the staging folder; return key -> COG path."""
        done = {}
        for key, dataset in self._raw.items():
            raw_path = dataset.name
            dataset.close()
            cog_path = os.path.join(self._dir, f"{self._names[key]}.tif")
            rasterio.shutil.copy(
                raw_path,
                cog_path,
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="YES",
                LEVEL=str(self._zlevel),
                BLOCKSIZE=str(COG_BLOCK),
                OVERVIEW_RESAMPLING="AVERAGE",
                NUM_THREADS=str(self._threads),
                BIGTIFF="IF_SAFER",
            )
            os.remove(raw_path)
            done[key] = cog_path
        self._raw = {}
        return done

    def abort(self) -> None:
        for dataset in self._raw.values():
            dataset.close()
        self._raw = {}
