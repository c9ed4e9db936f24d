"""A lower bound for the NDVI job: pure decode time plus pure encode time, over the cores.

1. decode: read every block window of the red and NIR bands once (single-threaded GDAL)
   into one reused block buffer, keeping nothing but a copy in a preallocated scene array
   whose memory is faulted in before the clock starts;
2. (untimed) compute NDVI for the whole scene in memory;
3. encode: write that float32 array as a tiled 512 PREDICTOR=3 GeoTIFF in the codec and
   level madrone writes (``--codec``, ``--level``), single-threaded.

No tool can do the job in less than (decode + encode) / cores of wall time, give or take
the arithmetic, which is cheap next to decompression. The parts are counted in CPU seconds
of this process, so a busy machine does not inflate them. Prints one JSON line with them.

    python bench/peers/lower_bound.py RED NIR OUT [--cores 2] [--codec zstd] [--level 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rasterio

QUANTIFICATION = 10000.0


def scene_array(path: str) -> np.ndarray:
    """The band's whole array, its pages touched: faulting in 240 MB of fresh memory is
    not decoding (about 1 CPU s per band on this project's machine)."""
    with rasterio.open(path) as src:
        scene = np.empty((src.height, src.width), dtype=src.dtypes[0])
    scene.fill(0)
    return scene


def decode(path: str, scene: np.ndarray) -> None:
    """Decode every block into one reused buffer, then copy it into ``scene``: a new array
    per block would add a page fault per 4 KiB to the decode."""
    with rasterio.open(path) as src:
        height, width = src.block_shapes[0]
        buffer = np.empty((height, width), dtype=src.dtypes[0])
        for _, window in src.block_windows(1):
            rows, cols = window.toslices()
            block = buffer[: window.height, : window.width]
            src.read(1, window=window, out=block)
            scene[rows, cols] = block


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("red")
    parser.add_argument("nir")
    parser.add_argument("out")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--codec", default="deflate")
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()

    with rasterio.Env(GDAL_NUM_THREADS="1", GDAL_CACHEMAX=64):
        red_dn, nir_dn = scene_array(args.red), scene_array(args.nir)
        wall0, cpu0 = clock()
        decode(args.red, red_dn)
        decode(args.nir, nir_dn)
        wall1, cpu1 = clock()

        red = red_dn.astype(np.float32) / QUANTIFICATION
        nir = nir_dn.astype(np.float32) / QUANTIFICATION
        with np.errstate(divide="ignore", invalid="ignore"):
            ndvi = (nir - red) / (nir + red)
        ndvi[(red_dn == 0) | (nir_dn == 0)] = np.nan
        del red, nir

        with rasterio.open(args.red) as src:
            profile = src.profile
        profile.update(
            driver="GTiff",
            dtype="float32",
            nodata=np.nan,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            predictor=3,
            compress=args.codec.upper(),  # the codec and level madrone writes (see README)
            **{"zstd_level" if args.codec.lower() == "zstd" else "zlevel": args.level},
        )
        wall2, cpu2 = clock()
        with rasterio.open(args.out, "w", **profile) as dst:
            dst.write(ndvi, 1)
        wall3, cpu3 = clock()

    decode_s, encode_s = wall1 - wall0, wall3 - wall2
    print(
        json.dumps(
            {
                "decode_s": round(decode_s, 3),
                "decode_cpu_s": round(cpu1 - cpu0, 3),
                "encode_s": round(encode_s, 3),
                "encode_cpu_s": round(cpu3 - cpu2, 3),
                "cores": args.cores,
                "codec": f"{args.codec.upper()} level {args.level}",
                "bound_s": round((cpu1 - cpu0 + cpu3 - cpu2) / args.cores, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
