"""Why madrone writes DEFLATE level 1: size and encode time of a real float32 NDVI COG at
each level (and ZSTD for comparison).

    python bench/zlevel.py [../shared/data/sentinel2/L1C_T18SVG_20160112_crop]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import rasterio.shutil

from madrone import process

DEFAULT = (
    Path(__file__).resolve().parents[1].parent / "shared/data/sentinel2/L1C_T18SVG_20160112_crop"
)


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT)
    with tempfile.TemporaryDirectory() as out:
        result = process([source], ["ndvi"], out, products=["cog"], workers=1)
        cog = result.products["NDVI"].files["cog"]
        rows = []
        for compress, level in [("DEFLATE", 1), ("DEFLATE", 6), ("DEFLATE", 9), ("ZSTD", 1)]:
            target = os.path.join(out, f"{compress}{level}.tif")
            started = time.process_time()
            rasterio.shutil.copy(cog, target, driver="COG", COMPRESS=compress, PREDICTOR="YES",
                                 LEVEL=str(level), NUM_THREADS="1")  # fmt: skip
            rows.append((compress, level, os.path.getsize(target), time.process_time() - started))
    base = next(size for c, level, size, _ in rows if (c, level) == ("DEFLATE", 6))
    print(f"NDVI of {source}")
    print("compression  level  KiB      vs DEFLATE 6  CPU s (decode + encode)")
    for compress, level, size, seconds in rows:
        print(
            f"{compress:<12} {level:>5}  {size // 1024:>7}  {size / base - 1:+8.2%}  {seconds:.3f}"
        )


if __name__ == "__main__":
    main()
