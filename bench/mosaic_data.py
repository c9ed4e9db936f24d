"""Data and bookkeeping for the mosaic benchmark: the synthetic mosaic, the request's grid,
the bytes the request needs from the mosaic, and the bytes an HTTP server handed out.

The synthetic mosaic is what a provider of ready-made mosaics serves: one multi-band uint16
COG in EPSG:4326 at 0.0001 degree (about 11 m north-south, 8 m east-west at 45 degrees),
bands named by their descriptions (B03, B04, B08, B11), tiled 512, DEFLATE with predictor 2,
band-interleaved (so NDVI needs the tiles of two bands out of four), with overviews. Its pixels
come from bench/generate.py's latent fields (parcels, regional variation, texture, noise and a
nodata swath edge), generated square and seeded, so reruns give the same pixels.

    python bench/mosaic_data.py [--quick]     # generate the mosaic if it is missing
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from rasterio.windows import Window, from_bounds
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from generate import STRIP_ROWS, Latents, strip_bands

BENCH = Path(__file__).resolve().parent
STEP_DEG = 0.0001
BANDS = ("B03", "B04", "B08", "B11")
SEED = 20230815
ACQUIRED = "2023-08-15"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Case:
    """One size of the benchmark: the mosaic's extent and the requested box, in degrees."""

    name: str
    mosaic_wsen: tuple[float, float, float, float]
    request_wsen: tuple[float, float, float, float]
    composite_wsen: tuple[float, float, float, float] | None  # None: the catalog's union

    @property
    def mosaic_path(self) -> Path:
        return (
            BENCH
            / "data"
            / f"mosaic-{self.name}"
            / f"S2_L2A_{ACQUIRED.replace('-', '')}_mosaic.tif"
        )


FULL = Case("full", (14.7, 44.7, 15.3, 45.3), (14.8, 44.8, 15.2, 45.2), None)
QUICK = Case(
    "quick", (14.9, 44.9, 15.1, 45.1), (14.95, 44.95, 15.05, 45.05), (15.5, 45.8, 15.9, 46.2)
)


@dataclass(frozen=True)
class OutputGrid:
    """The request's output grid: UTM zone of the box's centre, pixel edges on an anchor plus
    multiples of the resolution, the smallest such grid covering the box (edges followed
    point by point)."""

    crs: str
    left: float
    bottom: float
    right: float
    top: float
    res: float

    @property
    def width(self) -> int:
        return round((self.right - self.left) / self.res)

    @property
    def height(self) -> int:
        return round((self.top - self.bottom) / self.res)

    @property
    def transform(self) -> Affine:
        return from_origin(self.left, self.top, self.res, self.res)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def bounds_arg(self) -> str:
        return ",".join(f"{v:.0f}" for v in (self.left, self.bottom, self.right, self.top))


def output_grid(
    wsen: tuple[float, float, float, float],
    res: float,
    anchor: tuple[float, float] = (0.0, 0.0),
) -> OutputGrid:
    west, south, east, north = wsen
    lon = (west + east) / 2
    zone = min(60, math.floor((lon + 180) / 6) + 1)
    crs = f"EPSG:{(32600 if (south + north) / 2 >= 0 else 32700) + zone}"
    xs, ys = rasterio.warp.transform("EPSG:4326", crs, *_box_outline(wsen))
    eps, (ax, ay) = 1e-6, anchor
    return OutputGrid(
        crs,
        math.floor((min(xs) - ax) / res + eps) * res + ax,
        math.floor((min(ys) - ay) / res + eps) * res + ay,
        math.ceil((max(xs) - ax) / res - eps) * res + ax,
        math.ceil((max(ys) - ay) / res - eps) * res + ay,
        res,
    )


def _box_outline(wsen: tuple[float, float, float, float], steps: int = 32) -> tuple[list, list]:
    west, south, east, north = wsen
    t = [k / steps for k in range(steps + 1)]
    lons = [west + (east - west) * k for k in t] * 2 + [west] * len(t) + [east] * len(t)
    lats = [south] * len(t) + [north] * len(t) + [south + (north - south) * k for k in t] * 2
    return lons, lats


def footprint_wsen(grid: OutputGrid) -> tuple[float, float, float, float]:
    """The output grid's outline in degrees: what a reader must cover in the mosaic."""
    lons, lats = [], []
    steps = 32
    for k in range(steps + 1):
        x = grid.left + (grid.right - grid.left) * k / steps
        y = grid.bottom + (grid.top - grid.bottom) * k / steps
        for px, py in ((x, grid.bottom), (x, grid.top), (grid.left, y), (grid.right, y)):
            lons.append(px)
            lats.append(py)
    lon, lat = rasterio.warp.transform(grid.crs, "EPSG:4326", lons, lats)
    return min(lon), min(lat), max(lon), max(lat)


def write_mosaic(case: Case) -> Path:
    """Generate the case's synthetic mosaic COG unless it exists; return its path."""
    path = case.mosaic_path
    if path.exists():
        return path
    west, south, east, north = case.mosaic_wsen
    size = round((east - west) / STEP_DEG)
    if round((north - south) / STEP_DEG) != size:
        raise ValueError(f"{case.name}: the mosaic must be square, got {case.mosaic_wsen}")
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    latents = Latents.from_seed(size, SEED)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(BANDS),
        "dtype": "uint16",
        "nodata": 0,
        "crs": "EPSG:4326",
        "transform": from_origin(west, north, STEP_DEG, STEP_DEG),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "interleave": "band",
    }
    staging = path.with_name(path.stem + ".staging.tif")
    with rasterio.open(staging, "w", **profile) as dst:
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
        dst.update_tags(ACQUISITION_DATE=ACQUIRED)
        for row0 in range(0, size, STRIP_ROWS):
            n_rows = min(STRIP_ROWS, size - row0)
            bands = strip_bands(latents, row0, n_rows)
            window = Window(0, row0, size, n_rows)
            for i, band in enumerate(BANDS, start=1):
                dst.write(bands[band].astype(np.uint16), i, window=window)
    cog = cog_profiles.get("deflate") | {
        "predictor": 2,
        "blockxsize": 512,
        "blockysize": 512,
        "interleave": "band",
    }
    partial = path.with_name(path.name + ".partial")
    cog_translate(
        staging,
        partial,
        cog,
        overview_resampling="average",
        config={"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_OVR_BLOCKSIZE": "512"},
        quiet=True,
    )
    os.replace(partial, path)
    staging.unlink()
    print(
        f"generated {path.relative_to(BENCH.parent)} ({size} x {size} px, "
        f"{path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return path


def needed_bytes(
    path: Path, wsen: tuple[float, float, float, float], bands: tuple[str, ...]
) -> int:
    """Compressed bytes of the full-resolution tiles of ``bands`` that intersect ``wsen`` (one
    pixel of margin for bilinear resampling), from the COG's tile byte counts."""
    total = 0
    with rasterio.open(path) as src:
        window = from_bounds(*wsen, transform=src.transform)
        block_rows, block_cols = src.block_shapes[0]
        row0 = max(0, math.floor(window.row_off) - 1) // block_rows
        col0 = max(0, math.floor(window.col_off) - 1) // block_cols
        row1 = min(src.height - 1, math.ceil(window.row_off + window.height)) // block_rows
        col1 = min(src.width - 1, math.ceil(window.col_off + window.width)) // block_cols
        for band in bands:
            bidx = src.descriptions.index(band) + 1
            for row in range(row0, row1 + 1):
                for col in range(col0, col1 + 1):
                    size = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=bidx)
                    total += int(size or 0)
    return total


def bytes_served(log_path: Path, directory: Path) -> tuple[int, int]:
    """(bytes, requests) a tests/support/http.py server sent, from its log of paths and
    Range headers: a range as clamped by the server, no range (or one it cannot parse, which
    it answers with the whole file) the whole file, a missing file nothing."""
    total = requests = 0
    if not log_path.exists():
        return 0, 0
    for line in log_path.read_text().splitlines():
        if not line.strip():
            continue
        url_path, _, header = line.partition("\t")
        requests += 1
        local = directory / unquote(urlparse(url_path).path).lstrip("/")
        if not local.is_file():
            continue
        size = local.stat().st_size
        match = _RANGE.match(header)
        if not match:
            total += size
            continue
        first_text, last_text = match.groups()
        first = int(first_text) if first_text else max(0, size - int(last_text))
        last = min(int(last_text), size - 1) if first_text and last_text else size - 1
        total += max(0, last - first + 1)
    return total, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small mosaic only")
    args = parser.parse_args()
    write_mosaic(QUICK if args.quick else FULL)


if __name__ == "__main__":
    main()
