"""Build the sample mosaic bundled with the package from the real data in ../shared.

Run once by a developer (`python scripts/make_sample_mosaic.py`); its output is committed under
src/madrone/data/mosaic so that `madrone mosaic --corners ...` without `--source` works on a
fresh clone without ../shared. Reruns write the same bytes.

The sample stands in for an "EarthDaily-style" mosaic: one GDAL-readable, cloud-masked,
multi-band COG in geographic coordinates that madrone warps onto a UTM grid. It is made from
the real L2A tile 29RKH of 2020-02-19 (100 m bands, baseline 02.14, no radiometric offset):
B11 is brought onto the 100 m grid by bilinear resampling, pixels that SCL calls cloud shadow,
cloud or cirrus become nodata in every band, and the stack is warped (bilinear) to EPSG:4326 at
0.001 degree and cropped to fit the package-data size budget.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import from_bounds

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MADRONE_TEST_DATA", ROOT.parent / "shared/data/sentinel2"))
SOURCE = SHARED / "L2A_T29RKH_20200219_100m"
TARGET = ROOT / "src/madrone/data/mosaic"
MOSAIC_NAME = "S2A_L2A_T29RKH_20200219_mosaic.tif"

BANDS = ("B02", "B03", "B04", "B08", "B11")
CLOUD_CLASSES = (3, 8, 9, 10)  # SCL: cloud shadow, cloud medium and high probability, cirrus
STEP_DEG = 0.001
# The northern part of the tile (the whole tile would be about 8 MB), inside its footprint:
# the edge of the cloud field in the north-east, so the mask shows, and the wadis west of it.
# West, south, east, north in degrees, on the 0.001 degree lattice.
CROP_WSEN = (-11.600, 24.680, -10.900, 25.280)
# A 0.1 x 0.1 degree demo area: a wadi (dry river bed) whose sparse shrubs hold the highest
# NDVI of this hyper-arid tile (its STAC item reports 0 % vegetation); no cloud.
DEMO_WSEN = (-11.420, 24.980, -11.320, 25.080)
ACQUIRED = "2020-02-19T11:34:25Z"  # the STAC item's datetime
SIZE_BUDGET = 4 * 1024 * 1024

COG_OPTIONS = {
    "COMPRESS": "DEFLATE",
    "PREDICTOR": "2",
    "LEVEL": "9",
    "BLOCKSIZE": "512",
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "NUM_THREADS": "1",
}


def read_utm_stack() -> tuple[np.ndarray, dict]:
    """The five bands on the 100 m UTM grid of B04, clouds set to 0 in every band."""
    with rasterio.open(SOURCE / "B04.tif") as ref:
        profile = {"crs": ref.crs, "transform": ref.transform, "shape": ref.shape}
    stack = np.zeros((len(BANDS), *profile["shape"]), dtype=np.uint16)
    for i, band in enumerate(BANDS):
        stack[i] = onto_grid(SOURCE / f"{band}.tif", profile, Resampling.bilinear)
    scl = onto_grid(SOURCE / "SCL.tif", profile, Resampling.nearest)
    # One mask for every band: a pixel is valid in all of them or in none.
    invalid = np.isin(scl, CLOUD_CLASSES) | (scl == 0) | (stack == 0).any(axis=0)
    stack[:, invalid] = 0
    return stack, profile


def onto_grid(path: Path, grid: dict, resampling: Resampling) -> np.ndarray:
    """One band file read onto ``grid``; a no-op copy when it is already on it."""
    with rasterio.open(path) as src:
        if src.transform == grid["transform"] and src.shape == grid["shape"]:
            return src.read(1)
        out = np.zeros(grid["shape"], dtype=src.dtypes[0])
        reproject(
            rasterio.band(src, 1),
            out,
            dst_crs=grid["crs"],
            dst_transform=grid["transform"],
            src_nodata=0,
            dst_nodata=0,
            resampling=resampling,
        )
        return out


def warp_to_geographic(stack: np.ndarray, utm: dict) -> tuple[np.ndarray, object]:
    """The stack warped to EPSG:4326 on the CROP_WSEN lattice at STEP_DEG."""
    west, south, east, north = CROP_WSEN
    width = round((east - west) / STEP_DEG)
    height = round((north - south) / STEP_DEG)
    transform = from_origin(west, north, STEP_DEG, STEP_DEG)
    out = np.zeros((len(BANDS), height, width), dtype=np.uint16)
    reproject(
        stack,
        out,
        src_crs=utm["crs"],
        src_transform=utm["transform"],
        dst_crs="EPSG:4326",
        dst_transform=transform,
        src_nodata=0,
        dst_nodata=0,
        resampling=Resampling.bilinear,
        num_threads=1,
    )
    # The bands share one mask, so the warp keeps it; this only guards the rule (valid in
    # all bands or in none) against a band whose interpolated DN rounds to 0.
    out[:, (out == 0).any(axis=0)] = 0
    return out, transform


def write_cog(data: np.ndarray, transform: object, path: Path) -> None:
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": "uint16",
        "crs": "EPSG:4326",
        "transform": transform,
        "nodata": 0,
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as tmp:
            tmp.write(data)
            for i, band in enumerate(BANDS, start=1):
                tmp.set_band_description(i, band)
            tmp.update_tags(
                ACQUISITION_DATE=ACQUIRED[:10],
                TIFFTAG_DATETIME=ACQUIRED[:19].replace("-", ":").replace("T", " "),
                TIFFTAG_COPYRIGHT="Contains modified Copernicus Sentinel data (2020)",
                TIFFTAG_IMAGEDESCRIPTION=(
                    "Sentinel-2A L2A tile 29RKH, 2020-02-19, baseline 02.14 (reflectance = "
                    "DN / 10000); SCL classes 3, 8, 9, 10 masked to nodata 0"
                ),
                SENTINEL2_TILE="29RKH",
                PROCESSING_BASELINE="02.14",
            )
        with memfile.open() as tmp:
            rasterio.shutil.copy(tmp, path, driver="COG", **COG_OPTIONS)


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    stack, utm = read_utm_stack()
    tile_wsen = transform_bounds(
        utm["crs"], "EPSG:4326", *rasterio.transform.array_bounds(*utm["shape"], utm["transform"])
    )
    data, transform = warp_to_geographic(stack, utm)
    path = TARGET / MOSAIC_NAME
    write_cog(data, transform, path)
    shutil.copyfile(SHARED / "licenses/rio-tiler-pds-BSD-3.txt", TARGET / "LICENSE.txt")
    masked = float((data[0] == 0).mean())
    ndvi = demo_ndvi(path)
    (TARGET / "README.md").write_text(readme(data.shape, masked, ndvi))

    size = path.stat().st_size
    print("source tile (W,S,E,N deg):", format_wsen(tile_wsen, 4))
    print(path.relative_to(ROOT))
    print("  bounds (W,S,E,N deg):", format_wsen(CROP_WSEN))
    print(f"  {data.shape[2]} x {data.shape[1]} pixels, {len(BANDS)} bands, nodata {masked:.1%}")
    print(f"  {size} bytes ({size / 2**20:.2f} MiB)")
    print("  demo area NDVI min/median/max:", ", ".join(f"{v:.3f}" for v in ndvi))
    if size > SIZE_BUDGET:
        raise SystemExit(f"{path.name} is over the {SIZE_BUDGET} byte budget: crop further")


def demo_ndvi(path: Path) -> tuple[float, float, float]:
    """NDVI min, median and max over DEMO_WSEN, read back from the written file."""
    with rasterio.open(path) as mosaic:
        window = from_bounds(*DEMO_WSEN, transform=mosaic.transform)
        red, nir = (
            mosaic.read(BANDS.index(b) + 1, window=window).astype("float64") for b in ("B04", "B08")
        )
    valid = (red > 0) & (nir > 0)
    ndvi = (nir[valid] - red[valid]) / (nir[valid] + red[valid])
    return float(ndvi.min()), float(np.median(ndvi)), float(ndvi.max())


def format_wsen(wsen: tuple[float, ...], digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in wsen)


def readme(shape: tuple[int, int, int], masked: float, ndvi: tuple[float, float, float]) -> str:
    west, south, east, north = DEMO_WSEN
    return f"""\
# Sample mosaic

Contains modified Copernicus Sentinel data (2020).

`{MOSAIC_NAME}` is what `madrone mosaic --corners UL_LAT,UL_LNG,LR_LAT,LR_LNG`
reads when no `--source` is given: one cloud-masked, multi-band COG in geographic
coordinates, like the mosaics a provider serves, which madrone warps onto a UTM grid.

| | |
|---|---|
| bounds (W, S, E, N) | {format_wsen(CROP_WSEN)} degrees (EPSG:4326) |
| grid | {shape[2]} x {shape[1]} pixels of {STEP_DEG} degree (about 100 m) |
| bands | {", ".join(BANDS)}, in that order, named by the band descriptions |
| pixels | uint16 DN, reflectance = DN / 10000 (baseline 02.14, no offset); nodata 0 |
| nodata | {masked:.1%} of the pixels: cloud, cirrus and cloud shadow, in the north-east |
| acquired | 2020-02-19 (Sentinel-2A); tags `ACQUISITION_DATE` and `TIFFTAG_DATETIME` |
| layout | COG, 512 x 512 tiles, DEFLATE with predictor 2, internal overviews |

Suggested demo area, 0.1 x 0.1 degree over a wadi (a dry river bed) with sparse shrubs:

    madrone mosaic --corners {north:.2f},{west:.2f},{south:.2f},{east:.2f} --index ndvi

Its NDVI (min / median / max) is {ndvi[0]:.3f} / {ndvi[1]:.3f} / {ndvi[2]:.3f}: the tile
is hyper-arid desert (its STAC item reports 0 % vegetation), so the wadi's drainage lines are
the only green there is, and NDSI is strongly negative everywhere.

## How it was made

`scripts/make_sample_mosaic.py` (deterministic; a rerun writes the same bytes) reads
`../shared/data/sentinel2/L2A_T29RKH_20200219_100m`: the whole Sentinel-2 L2A tile 29RKH
acquired 2020-02-19 (processing baseline 02.14, about 4 % cloud), downsampled to 100 m
(B02, B03, B04, B08) and 200 m (B11, SCL), as shipped by github cogeotiff/rio-tiler-pds at
f8b93f3 (BSD-3-Clause, see LICENSE.txt). The script

1. resamples B11 onto the 100 m grid of B04 by bilinear interpolation and SCL by nearest
   neighbour;
2. sets every band to nodata 0 where SCL is 3 (cloud shadow), 8 or 9 (cloud, medium and high
   probability) or 10 (thin cirrus), so the file behaves like a cloud-free mosaic: a masked
   pixel is missing, not wrong;
3. warps the stack (bilinear, nodata-aware) to EPSG:4326 at {STEP_DEG} degree and crops it to
   the bounds above, the northern part of the tile, to stay under about 4 MB of package data
   (the whole tile would be about 8 MB);
4. writes it with GDAL's COG driver.
"""


if __name__ == "__main__":
    main()
