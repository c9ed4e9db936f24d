"""Write synthetic full-size Sentinel-2 band files for the benchmark.

The scene is built from two latent fields, vegetation ``v`` and soil brightness ``s`` (both in
0..1), each a mix of agricultural parcels (piecewise constant, about 400 m), smooth regional
variation (about 6 km), medium texture (about 80 m) and per-pixel sensor noise. Bands are
plausible functions of the latents, so NDVI spans about -0.3..0.9 and the files compress like
real imagery rather than like white noise or flat colour. A slanted swath edge on the left is
nodata (0) in every band.

Generation runs in strips of ``STRIP_ROWS`` rows, so memory stays at a few hundred MB for a
10980 x 10980 scene; every random draw is seeded by (seed, strip), so output is deterministic.
GeoTIFFs are always written (they are the source of the JPEG 2000 encode). Existing files are
kept: delete a file to regenerate it.

    python bench/generate.py --out bench/data/10980 --size 10980 --formats gtiff,jp2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

TILE_ID = "T33TWM"
SENSING = "20230815T100000"
CRS = "EPSG:32633"
X0, Y0 = 399960.0, 5200020.0
STRIP_ROWS = 512  # fixed, so the noise of a strip does not depend on the scene size
BANDS_10M = ("B03", "B04", "B08")
BANDS_20M = ("B11",)
FIELD_PX, REGION_PX, TEXTURE_PX = 40, 640, 8
URBAN_FRACTION = 0.05
SKEW = 0.12  # parcels are sheared a little, so their edges are not all axis-aligned

GTIFF_OPTIONS = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    "predictor": 2,
}
# Like ESA's products: lossless (reversible 5/3 wavelet), 1024 x 1024 tiles, 6 resolutions.
JP2_OPTIONS = {
    "QUALITY": "100",
    "REVERSIBLE": "YES",
    "BLOCKXSIZE": "1024",
    "BLOCKYSIZE": "1024",
    "RESOLUTIONS": "6",
}


def band_filename(band: str, fmt: str) -> str:
    """File name of one band, ``T33TWM_20230815T100000_B04_10m.tif`` style."""
    resolution = "10m" if band in BANDS_10M else "20m"
    extension = "tif" if fmt == "gtiff" else "jp2"
    return f"{TILE_ID}_{SENSING}_{band}_{resolution}.{extension}"


@dataclass(frozen=True)
class Latents:
    """The scene-wide low-resolution grids every strip is interpolated from."""

    size: int
    seed: int
    field_v: np.ndarray
    field_s: np.ndarray
    field_cover: np.ndarray
    region_v: np.ndarray
    region_s: np.ndarray
    texture: np.ndarray

    @classmethod
    def from_seed(cls, size: int, seed: int) -> Latents:
        rng = np.random.default_rng([seed, 0])
        n_field = int(size * (1 + SKEW) / FIELD_PX) + 2
        n_region = size // REGION_PX + 2
        n_texture = size // TEXTURE_PX + 2
        field_s = rng.beta(2.0, 2.0, (n_field, n_field)).astype(np.float32)
        # A few parcels are built-up or bare rock: bright and almost without vegetation.
        built_up = rng.random((n_field, n_field)) < URBAN_FRACTION
        field_s[built_up] = 1.0
        return cls(
            size=size,
            seed=seed,
            field_v=rng.beta(1.6, 1.1, (n_field, n_field)).astype(np.float32),
            field_s=field_s,
            field_cover=np.where(built_up, 0.05, 1.0).astype(np.float32),
            region_v=rng.random((n_region, n_region), dtype=np.float32),
            region_s=rng.random((n_region, n_region), dtype=np.float32),
            texture=rng.random((n_texture, n_texture), dtype=np.float32),
        )


def upsample_bilinear(grid: np.ndarray, cell_px: int, row_px: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples of a coarse grid (one value per ``cell_px`` pixels) at pixel rows."""

    def weights(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.clip((px + 0.5) / cell_px - 0.5, 0, None)
        index = np.floor(pos).astype(np.intp)
        return index, (pos - index).astype(np.float32)

    row_index, row_frac = weights(row_px)
    col_index, col_frac = weights(np.arange(size))
    rows = grid[row_index] * (1 - row_frac[:, None]) + grid[row_index + 1] * row_frac[:, None]
    return rows[:, col_index] * (1 - col_frac) + rows[:, col_index + 1] * col_frac


def strip_bands(latents: Latents, row0: int, n_rows: int) -> dict[str, np.ndarray]:
    """The 10 m bands (float32 DN, 0 = nodata) of rows ``row0 .. row0 + n_rows``."""
    size = latents.size
    rng = np.random.default_rng([latents.seed, 1, row0])
    row_px = np.arange(row0, row0 + n_rows)
    col_px = np.arange(size)
    field_row = ((row_px[:, None] + SKEW * col_px) // FIELD_PX).astype(np.intp)
    field_col = ((col_px - SKEW * row_px[:, None] + SKEW * size) // FIELD_PX).astype(np.intp)
    texture = upsample_bilinear(latents.texture, TEXTURE_PX, row_px, size) - 0.5
    texture += rng.normal(0, 0.04, texture.shape).astype(np.float32)
    v = 0.55 * latents.field_v[field_row, field_col]
    v += 0.35 * upsample_bilinear(latents.region_v, REGION_PX, row_px, size)
    v += 0.25 * texture
    v *= latents.field_cover[field_row, field_col]
    np.clip(v, 0, 1, out=v)
    s = 0.6 * latents.field_s[field_row, field_col]
    s += 0.4 * upsample_bilinear(latents.region_s, REGION_PX, row_px, size)
    s += 0.15 * texture
    np.clip(s, 0, 1, out=s)
    del field_row, field_col, texture
    bands = {
        "B03": 300 + 2200 * (0.15 + 0.55 * s) * (1 - 0.45 * v),
        "B04": 200 + 2800 * (1 - v) * (0.5 + 0.5 * s),
        "B08": 1500 + 3500 * v * (0.6 + 0.4 * s),
        "B11": 800 + 3200 * (0.55 * s + 0.45 * (1 - v)),
    }
    # A swath edge: everything left of a slanted line is outside the orbit's footprint.
    edge = size * 0.12 - row_px * 0.1
    outside = col_px[None, :] < edge[:, None]
    for dn in bands.values():
        dn *= 1 + rng.normal(0, 0.015, dn.shape).astype(np.float32)
        np.clip(np.rint(dn), 1, 65534, out=dn)
        dn[outside] = 0
    return bands


def downsample_20m(dn: np.ndarray) -> np.ndarray:
    """2 x 2 mean of 10 m DN; a 20 m pixel touching nodata is nodata."""
    rows, cols = dn.shape[0] // 2, dn.shape[1] // 2
    blocks = dn[: rows * 2, : cols * 2].reshape(rows, 2, cols, 2)
    mean = np.rint(blocks.mean(axis=(1, 3)))
    mean[(blocks == 0).any(axis=(1, 3))] = 0
    return mean


def strips(size: int) -> Iterator[tuple[int, int]]:
    for row0 in range(0, size, STRIP_ROWS):
        yield row0, min(STRIP_ROWS, size - row0)


def write_gtiff(folder: Path, size: int, seed: int) -> None:
    """Write the missing GeoTIFF bands in one strip-by-strip pass."""
    targets = {b: folder / band_filename(b, "gtiff") for b in BANDS_10M + BANDS_20M}
    missing = {b: p for b, p in targets.items() if not p.exists()}
    if not missing:
        print(f"gtiff: all {len(targets)} bands exist in {folder}, skipped")
        return
    if size % 2:
        sys.exit(f"--size must be even (the 20 m band is size / 2), got {size}")
    folder.mkdir(parents=True, exist_ok=True)
    latents = Latents.from_seed(size, seed)
    started = time.perf_counter()
    outputs = {}
    try:
        for band, path in missing.items():
            pixel_m = 10 if band in BANDS_10M else 20
            n = size if band in BANDS_10M else size // 2
            outputs[band] = rasterio.open(
                path.with_name(path.name + ".partial"),
                "w",
                width=n,
                height=n,
                count=1,
                dtype="uint16",
                nodata=0,
                crs=CRS,
                transform=from_origin(X0, Y0, pixel_m, pixel_m),
                **GTIFF_OPTIONS,
            )
        for row0, n_rows in strips(size):
            bands = strip_bands(latents, row0, n_rows)
            for band, dst in outputs.items():
                if band in BANDS_10M:
                    window, data = Window(0, row0, size, n_rows), bands[band]
                else:
                    data = downsample_20m(bands[band])
                    window = Window(0, row0 // 2, size // 2, data.shape[0])
                dst.write(data.astype(np.uint16), 1, window=window)
            done = row0 + n_rows
            print(
                f"\rgtiff: {done / size:4.0%} ({time.perf_counter() - started:.0f} s)",
                end="",
                flush=True,
            )
        print()
    finally:
        for dst in outputs.values():
            dst.close()
    for path in missing.values():
        os.replace(path.with_name(path.name + ".partial"), path)
    print(f"gtiff: wrote {', '.join(missing)} in {time.perf_counter() - started:.1f} s")


def write_jp2(gtiff_folder: Path, folder: Path) -> None:
    """Encode each GeoTIFF band as JPEG 2000 (slow: prints one line per band)."""
    folder.mkdir(parents=True, exist_ok=True)
    for band in BANDS_10M + BANDS_20M:
        path = folder / band_filename(band, "jp2")
        if path.exists():
            print(f"jp2: {path.name} exists, skipped")
            continue
        source = gtiff_folder / band_filename(band, "gtiff")
        partial = path.with_name(path.stem + ".partial.jp2")
        print(f"jp2: encoding {path.name} ...", end="", flush=True)
        started = time.perf_counter()
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
            rasterio.shutil.copy(source, partial, driver="JP2OpenJPEG", **JP2_OPTIONS)
        for sidecar in partial.parent.glob(partial.name + ".aux.xml"):
            os.replace(sidecar, path.with_name(path.name + ".aux.xml"))
        os.replace(partial, path)
        print(f" {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder (default: bench/data/<size>)")
    parser.add_argument("--size", type=int, default=10980, help="10 m pixels per side")
    parser.add_argument("--formats", default="gtiff,jp2", help="comma list: gtiff, jp2")
    parser.add_argument("--seed", type=int, default=20230815)
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = set(formats) - {"gtiff", "jp2"}
    if unknown:
        parser.error(f"unknown format(s): {', '.join(sorted(unknown))}")
    out = args.out or Path(__file__).resolve().parent / "data" / str(args.size)
    write_gtiff(out / "gtiff", args.size, args.seed)
    if "jp2" in formats:
        write_jp2(out / "gtiff", out / "jp2")


if __name__ == "__main__":
    main()
