"""Which codec madrone's COG uses: size, encode and decode CPU time of a float32 NDVI
for DEFLATE and ZSTD at several levels, all with the floating-point predictor (3).

    python bench/codec.py [SOURCE] [--ndvi FLOAT32.tif] [--repeat 3]

SOURCE is a folder of Sentinel-2 bands (default: the real T18SVG crop in ../shared), whose
NDVI madrone computes first; ``--ndvi`` takes a finished float32 raster instead (e.g. the
full-scene synthetic NDVI of ``bench/tiles.py``). The array is held in memory, then each
codec writes it as a tiled 512 GeoTIFF on one thread (encode) and reads it back whole
(decode); CPU seconds of this process, the best of ``--repeat`` runs, so other load on the
machine inflates them little. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from madrone import process

DEFAULT = (
    Path(__file__).resolve().parents[1].parent / "shared/data/sentinel2/L1C_T18SVG_20160112_crop"
)
CODECS = (
    ("DEFLATE", 1),
    ("DEFLATE", 6),
    ("ZSTD", 1),
    ("ZSTD", 3),
    ("ZSTD", 9),
)


def read_ndvi(args: argparse.Namespace, scratch: str) -> tuple[np.ndarray, dict, str]:
    """The float32 NDVI to encode, its GeoTIFF profile and where it came from."""
    path, what = args.ndvi, args.ndvi
    if path is None:
        result = process([args.source], ["ndvi"], scratch, products=["cog"], workers=1)
        path, what = result.products["NDVI"].files["cog"], f"NDVI of {args.source}"
    with rasterio.open(path) as src:
        values = src.read(1)
        profile = {"crs": src.crs, "transform": src.transform, "nodata": src.nodata}
    return values, profile, what


def measure(values: np.ndarray, profile: dict, target: str, codec: str, level: int) -> dict:
    """Encode and decode seconds (CPU) and the file size for one codec and level."""
    creation = {"compress": codec, "predictor": 3, "tiled": True, "blockxsize": 512,
                "blockysize": 512, "num_threads": 1}  # fmt: skip
    creation["zstd_level" if codec == "ZSTD" else "zlevel"] = level
    height, width = values.shape
    started = time.process_time()
    with rasterio.open(target, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", **profile, **creation) as dst:  # fmt: skip
        dst.write(values, 1)
    encode = time.process_time() - started
    started = time.process_time()
    with rasterio.open(target) as src:
        decoded = src.read(1)
    decode = time.process_time() - started
    if not np.array_equal(decoded, values, equal_nan=True):
        raise SystemExit(f"{codec} level {level}: the decoded values differ (lossless?)")
    return {"encode": encode, "decode": decode, "size": os.path.getsize(target)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=str(DEFAULT))
    parser.add_argument("--ndvi", help="a float32 raster to encode instead of computing NDVI")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, rasterio.Env(GDAL_NUM_THREADS="1",
                                                                 GDAL_CACHEMAX=512):  # fmt: skip
        values, profile, what = read_ndvi(args, scratch)
        rows = {}
        for codec, level in CODECS:
            runs = [
                measure(values, profile, os.path.join(scratch, "out.tif"), codec, level)
                for _ in range(args.repeat)
            ]
            rows[codec, level] = {
                "encode": min(r["encode"] for r in runs),
                "decode": min(r["decode"] for r in runs),
                "size": runs[0]["size"],
            }
    base = rows["DEFLATE", 1]
    height, width = values.shape
    print(f"{what}: {width} x {height} float32, tiled 512, predictor 3, one thread, "
          f"CPU s best of {args.repeat}; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| codec | level | MiB | size vs DEFLATE 1 | encode s | decode s | encode + decode "
          "vs DEFLATE 1 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (codec, level), row in rows.items():
        both = (row["encode"] + row["decode"]) / (base["encode"] + base["decode"])
        print(f"| {codec} | {level} | {row['size'] / 2**20:.1f} | "
              f"{row['size'] / base['size'] - 1:+.1%} | {row['encode']:.3f} | "
              f"{row['decode']:.3f} | {both:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
