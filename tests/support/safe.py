"""Build real mini SAFE products from the tiny 13-band stacks in ../shared (their real product
metadata, their real pixels written losslessly as JPEG 2000 where IMAGE_FILE says)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import rasterio

from madrone.bands import ESA_ORDER

TINY = "L1C_T32UPC_tiny_offsets"


def build_mini_safe(target_dir: Path, data_dir: Path, product: str) -> Path:
    """Write ``<product>.SAFE`` under target_dir and return its path."""
    xml = (data_dir / TINY / f"{product}_MTD.xml").read_bytes()
    safe = target_dir / f"{product}.SAFE"
    safe.mkdir(parents=True)
    (safe / "MTD_MSIL1C.xml").write_bytes(xml)
    image_files = [f.decode() for f in re.findall(rb"<IMAGE_FILE>([^<]+)</IMAGE_FILE>", xml)]
    with rasterio.open(data_dir / TINY / f"{product}.tif") as stack:
        profile = {
            "driver": "JP2OpenJPEG", "width": stack.width, "height": stack.height,
            "count": 1, "dtype": "uint16", "crs": stack.crs, "transform": stack.transform,
            "QUALITY": 100, "REVERSIBLE": "YES",
        }  # fmt: skip
        for index, band_id in enumerate(ESA_ORDER, start=1):
            rel = next(f for f in image_files if f.endswith(f"_{band_id}"))
            target = safe / f"{rel}.jp2"
            target.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(target, "w", **profile) as band:
                band.write(stack.read(index), 1)
    return safe


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip a SAFE folder the way ESA distributes it (the .SAFE folder at the archive root)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return target
