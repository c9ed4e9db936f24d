"""What drawing an index's PNG costs, stage by stage, against how madrone drew it before.

    python bench/png.py RASTER [--max-size 4096] [--repeat 2]

RASTER is a float32 index raster with overviews (an NDVI COG of a 10980 px scene, say:
``madrone process bench/data/10980/gtiff -i ndvi -o OUT --products cog``). Stages, best of
``--repeat`` runs, wall and CPU seconds of this process:

- read: the decimated read through the overviews, GDAL decoding on one or on two threads;
- colour: band by band (before) and in one lookup of whole pixels (``colorize_pixels``);
- encode: GDAL's PNG driver at ZLEVEL=1 with its row filters (before), ``encode_png`` (one
  zlib stream), and the pieces ``render_png`` compresses on two threads;
- render_png: the whole product, sidecars included.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from madrone.products import render
from madrone.products.render import colorize_pixels, encode_png, lookup_table, style_for


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, function: Callable[[], object], repeat: int) -> object:
    """Run ``function`` ``repeat`` times; print the best wall and CPU seconds."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, used = time.perf_counter(), cpu()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu() - used)
    print(f"{label:<44} wall {min(walls):6.3f} s   cpu {min(cpus):6.3f} s")
    return result


def band_by_band(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The colouring madrone used before ``colorize_pixels`` (NDVI's range, [-1, 1])."""
    valid = np.isfinite(values)
    position = np.where(valid, values, -1.0).astype(np.float32) + np.float32(1.0)
    position *= np.float32(127.5)
    index = np.clip(np.rint(position), 0, 255).astype(np.uint8)
    rgba = np.empty((4, *values.shape), dtype=np.uint8)
    for channel in range(4):
        np.take(lut[:, channel], index, out=rgba[channel])
    rgba[:, ~valid] = 0
    return rgba


def gdal_png(rgba: np.ndarray, path: str, georeferencing: dict) -> int:
    """The PNG as GDAL's driver wrote it before, sidecars too; its size in bytes."""
    profile = {"width": rgba.shape[2], "height": rgba.shape[1], "count": 4, "dtype": "uint8"}
    with MemoryFile() as memfile, memfile.open(driver="MEM", **profile, **georeferencing) as mem:
        mem.write(rgba)
        rasterio.shutil.copy(mem, path, driver="PNG", WORLDFILE="YES", ZLEVEL="1")
    return os.path.getsize(path)


def pieces_on_two_threads(pixels: np.ndarray) -> int:
    """``render_png``'s compression: strips deflated apart on two threads; size in bytes."""
    rows, cols, _ = pixels.shape

    def piece(row_off: int) -> render._Piece:
        strip = pixels[row_off : row_off + render._STRIP_ROWS]
        scanlines = render._scanlines(strip.shape[0], cols)
        scanlines[:, 1:] = strip.reshape(strip.shape[0], -1)
        return render._deflate(scanlines, row_off + strip.shape[0] == rows)

    with ThreadPoolExecutor(2) as pool:
        stream = render._zlib_stream(pool.map(piece, range(0, rows, render._STRIP_ROWS)))
    return sum(map(len, render._png_chunks(cols, rows, stream)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raster")
    parser.add_argument("--max-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    style, repeat = style_for("NDVI", None), args.repeat
    lut = lookup_table(style.colormap)
    with rasterio.open(args.raster) as ds:
        width, height = render._output_shape(ds.width, ds.height, args.max_size)
        scale = Affine.scale(ds.width / width, ds.height / height)
        georeferencing = {"crs": ds.crs, "transform": ds.transform @ scale}
    print(f"{args.raster}: drawn at {width} x {height}")

    def read(threads: int) -> np.ndarray:
        with rasterio.Env(GDAL_NUM_THREADS=str(threads)), rasterio.open(args.raster) as ds:
            return ds.read(1, out_shape=(height, width), resampling=Resampling.nearest)

    timed("read, GDAL on 1 thread (before)", lambda: read(1), repeat)
    values = timed("read, GDAL on 2 threads", lambda: read(2), repeat)
    rgba = timed("colour band by band (before)", lambda: band_by_band(values, lut), repeat)
    pixels = timed("colour whole pixels", lambda: colorize_pixels(values, style, lut), repeat)
    assert np.array_equal(rgba, pixels.transpose(2, 0, 1))
    with tempfile.TemporaryDirectory(prefix="madrone-png-") as folder:
        before = os.path.join(folder, "gdal.png")
        size = timed(
            "encode, GDAL PNG driver (before)",
            lambda: gdal_png(rgba, before, georeferencing),
            repeat,
        )
        print(f"{'':<44} {size / 1e6:.1f} MB")
        size = timed("encode, one stream", lambda: len(encode_png(pixels)), repeat)
        print(f"{'':<44} {size / 1e6:.1f} MB")
        size = timed("encode, pieces on 2 threads", lambda: pieces_on_two_threads(pixels), repeat)
        print(f"{'':<44} {size / 1e6:.1f} MB")
        after = os.path.join(folder, "ndvi.png")
        timed("render_png", lambda: render.render_png(args.raster, after, style), repeat)


if __name__ == "__main__":
    main()
