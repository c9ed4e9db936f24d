"""GDAL's block cache is sized by what the tiles read: small when no source block is read
by two tiles, the setting when neighbouring tiles share blocks it must keep between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.env import get_gdal_config

from madrone.api import build_spec, run
from madrone.config import Settings
from madrone.engine.plan import STREAMED_CACHE_MB, plan, tile_cache_mb

SETTING = 80


def write_band(path: Path, res: float, size: int, **layout) -> str:
    """A uint16 band of ``size`` x ``size`` pixels at ``res`` metres (EPSG:32633)."""
    values = np.random.default_rng(7).integers(500, 5000, (size, size), dtype=np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16",
        crs="EPSG:32633", transform=Affine(res, 0, 500000, 0, -res, 5000000), **layout,
    ) as dataset:  # fmt: skip
        dataset.write(values, 1)
    return str(path)


def tiled_bands(folder: Path, **layout) -> dict[str, str]:
    layout = layout or {"tiled": True, "blockxsize": 256, "blockysize": 256}
    return {
        "B03": write_band(folder / "B03.tif", 10, 1280, **layout),
        "B04": write_band(folder / "B04.tif", 10, 1280, **layout),
        "B08": write_band(folder / "B08.tif", 10, 1280, **layout),
        "B11": write_band(folder / "B11.tif", 20, 640, **layout),
    }


def cache_for(bands: dict[str, str], indices: list[str], **options) -> int:
    checked = plan(build_spec([], indices, bands=bands, **options))
    return tile_cache_mb(checked.context, checked.tiles, SETTING)


def test_tiles_on_the_blocks_edges_need_twice_one_tiles_blocks(tmp_path: Path) -> None:
    bands = tiled_bands(tmp_path)
    ndvi = {key: bands[key] for key in ("B04", "B08")}
    # 512 px tiles of two uint16 bands: 2 MiB of blocks, twice that under the floor.
    assert cache_for(ndvi, ["ndvi"], tile_size=512) == STREAMED_CACHE_MB == 8
    # 1280 px: one tile, 6.25 MiB of blocks; twice that, rounded up.
    assert cache_for(ndvi, ["ndvi"], tile_size=1280) == 13


def test_blocks_across_tile_edges_keep_the_setting(tmp_path: Path, data_dir: Path) -> None:
    bands = tiled_bands(tmp_path)
    ndvi = {key: bands[key] for key in ("B04", "B08")}
    assert cache_for(ndvi, ["ndvi"], tile_size=384) == SETTING  # 256 px blocks cut
    # A bbox whose first pixel is not on a block's edge.
    assert cache_for(ndvi, ["ndvi"], tile_size=512, bbox=(15.0010, 45.10, 15.01, 45.11)) == SETTING
    # The 20 m band is resampled: each of its blocks serves several tiles.
    assert cache_for(bands, ["ndsi"], tile_size=512) == SETTING
    # Striped files (the Sentinel-2 crop in ../shared): a strip spans every tile of a row.
    t18 = data_dir / "L1C_T18SVG_20160112_crop"
    striped = {band: str(t18 / f"{band}.tif") for band in ("B04", "B08")}
    assert cache_for(striped, ["ndvi"], tile_size=512) == SETTING


def test_a_run_uses_the_cache_its_tiles_need(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    bands = tiled_bands(tmp_path / "in")
    seen: list[str] = []

    def progress(done: int, total: int) -> None:
        seen.append(get_gdal_config("GDAL_CACHEMAX"))

    for indices, per_thread in ((["ndvi"], STREAMED_CACHE_MB), (["ndsi"], SETTING)):
        spec = build_spec([], indices, str(tmp_path / "out"), bands=bands, tile_size=512,
                          datetime="2023-08-15")  # fmt: skip
        seen.clear()
        run(spec, workers=2, progress=progress, settings=Settings(gdal_cache_mb=SETTING))
        assert set(seen) == {2 * per_thread * 2**20}, indices  # two tile threads
