"""Copy the browser libraries madrone serves from npm's ``node_modules`` into the package.

Run after ``npm install`` when package.json changes a version; the copies are committed, so
users need neither npm nor a build step. Leaflet itself comes from PyPI (xstatic-leaflet).

    python scripts/vendor_web.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "madrone" / "web" / "static" / "vendor"
# npm package -> (folder under static/vendor, files to copy from the package).
PACKAGES = {
    "@geoman-io/leaflet-geoman-free": (
        "leaflet-geoman",
        ["dist/leaflet-geoman.min.js", "dist/leaflet-geoman.css", "LICENSE"],
    ),
}


def vendor(package: str, folder: str, files: list[str]) -> str:
    source = ROOT / "node_modules" / package
    if not source.is_dir():
        sys.exit(f"vendor_web: {source} is missing; run `npm install` first")
    version = json.loads((source / "package.json").read_text())["version"]
    destination = TARGET / folder
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for name in files:
        shutil.copy2(source / name, destination / Path(name).name)
    (destination / "VERSION").write_text(f"{package} {version} (npm)\n")
    return version


def main() -> None:
    for package, (folder, files) in PACKAGES.items():
        print(f"{package} {vendor(package, folder, files)} -> {TARGET / folder}")


if __name__ == "__main__":
    main()
