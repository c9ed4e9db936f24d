"""Tests for madrone.products.render: colours, georeferencing, decimation, atomic writes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from madrone.errors import InputError, ProcessingError
from madrone.products.render import (
    Style,
    colorize,
    lookup_table,
    render_legend,
    render_png,
    sample_colormap,
    style_for,
)
from tests.support.rasters import TRANSFORM, write_raster

NDVI = Style("RdYlGn", -1.0, 1.0, "NDVI")
RED_END = (165, 0, 38, 255)  # RdYlGn at 0.0
GREEN_END = (0, 104, 55, 255)  # RdYlGn at 1.0


def gradient(height: int = 500, width: int = 700) -> np.ndarray:
    """NDVI-like west-to-east ramp from -1 to 1 with a NaN hole."""
    data = np.tile(np.linspace(-1.0, 1.0, width, dtype=np.float32), (height, 1))
    data[100:150, 200:260] = np.nan
    return data


def read_png(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def png_header(path) -> tuple[int, int, int, int]:
    """Return (width, height, bit depth, colour type) from the PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[24], head[25]


def test_style_for_picks_fixed_styles():
    assert style_for("NDVI", "vegetation") == Style("RdYlGn", -1.0, 1.0, "NDVI")
    assert style_for("ndvi", None).colormap == "RdYlGn"
    assert style_for("NDSI", None).colormap == "madrone_snow"
    assert style_for("MNDWI", None).colormap == "madrone_water"
    assert style_for("AWEInsh", "water").colormap == "madrone_water"
    assert style_for("NBR", None).colormap == "inferno"
    assert style_for("EVI", "Vegetation").colormap == "RdYlGn"
    other = style_for("NDBI", "urban")
    assert (other.colormap, other.vmin, other.vmax) == ("viridis", -1.0, 1.0)


def test_style_rejects_bad_values():
    with pytest.raises(InputError, match="vmin < vmax"):
        Style("viridis", 1.0, -1.0, "x")
    with pytest.raises(InputError, match="no_such_map"):
        Style("no_such_map", -1.0, 1.0, "x")


def test_snow_colormap_runs_brown_white_light_blue():
    lut = lookup_table("madrone_snow")
    low, threshold, high = lut[0], lut[round(0.7 * 255)], lut[255]
    assert low[0] > low[2]  # brown: more red than blue
    assert threshold[:3].min() >= 250  # white at NDSI 0.4
    assert high[2] > high[0]  # light blue


def test_colorize_maps_values_and_masks_non_finite():
    values = np.array([[-1.0, 1.0, -7.0, 7.0, np.nan, np.inf, 0.0]], dtype=np.float32)
    rgba = colorize(values, NDVI)
    assert rgba.shape == (4, 1, 7) and rgba.dtype == np.uint8
    lut = lookup_table("RdYlGn")
    assert tuple(rgba[:, 0, 0]) == RED_END == tuple(lut[0])
    assert tuple(rgba[:, 0, 1]) == GREEN_END == tuple(lut[255])
    assert tuple(rgba[:, 0, 2]) == RED_END  # below vmin clips to the first colour
    assert tuple(rgba[:, 0, 3]) == GREEN_END  # above vmax clips to the last
    assert tuple(rgba[:, 0, 4]) == (0, 0, 0, 0)
    assert tuple(rgba[:, 0, 5]) == (0, 0, 0, 0)
    assert tuple(rgba[:, 0, 6]) == tuple(lut[128])  # 0.0 -> 127.5 rounds to even 128


def test_render_png_colours_at_known_values(tmp_path):
    data = gradient()
    data[0, 0], data[0, 1], data[0, 2] = -1.0, 1.0, np.nan
    raster = write_raster(tmp_path / "ndvi.tif", data)
    info = render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    assert info["path"] == str(tmp_path / "ndvi.png")
    assert (info["width"], info["height"]) == (700, 500)
    rgba = read_png(tmp_path / "ndvi.png")
    assert tuple(rgba[:, 0, 0]) == RED_END
    assert tuple(rgba[:, 0, 1]) == GREEN_END
    assert rgba[3, 0, 2] == 0
    assert (rgba[3, 100:150, 200:260] == 0).all()
    assert (rgba[3, 200:, :] == 255).all()
    assert tuple(rgba[:, 300, 699]) == GREEN_END


def test_render_png_is_8bit_rgba(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    assert png_header(tmp_path / "ndvi.png") == (700, 500, 8, 6)  # colour type 6 = RGBA


def test_render_png_georeferencing_round_trips(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    info = render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    assert info["transform"] == list(TRANSFORM)[:6]
    assert info["crs"] == "EPSG:32633"
    names = ["ndvi.pgw", "ndvi.png", "ndvi.png.aux.xml", "ndvi.tif"]
    assert sorted(os.listdir(tmp_path)) == names
    with rasterio.open(tmp_path / "ndvi.png") as ds:
        assert ds.transform == TRANSFORM
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633)
        assert ds.count == 4 and ds.dtypes == ("uint8",) * 4
    world = (tmp_path / "ndvi.pgw").read_text().split()
    assert [float(v) for v in world] == [10.0, 0.0, 0.0, -10.0, 500005.0, 4999995.0]


def test_render_png_is_north_up(tmp_path):
    data = np.full((500, 700), -1.0, dtype=np.float32)
    data[:100] = 1.0  # the northern rows are high
    raster = write_raster(tmp_path / "ndvi.tif", data)
    render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    rgba = read_png(tmp_path / "ndvi.png")
    assert (rgba[:, :100].reshape(4, -1).T == GREEN_END).all()
    assert (rgba[:, 100:].reshape(4, -1).T == RED_END).all()


def test_render_png_refuses_rasters_that_are_not_north_up(tmp_path):
    south_up = Affine(10.0, 0.0, 500000.0, 0.0, 10.0, 4995000.0)
    raster = write_raster(tmp_path / "flip.tif", gradient(), transform=south_up)
    with pytest.raises(InputError, match="north-up"):
        render_png(raster, str(tmp_path / "flip.png"), NDVI)
    assert sorted(os.listdir(tmp_path)) == ["flip.tif"]


def test_render_png_masks_a_numeric_nodata_value(tmp_path):
    data = gradient()
    data[np.isnan(data)] = -9999.0
    raster = write_raster(tmp_path / "ndvi.tif", data, nodata=-9999.0)
    render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    rgba = read_png(tmp_path / "ndvi.png")
    assert (rgba[3, 100:150, 200:260] == 0).all()
    assert rgba[3, 99, 200] == 255


def test_render_png_decimates_large_rasters_keeping_bounds(tmp_path):
    data = gradient()
    data[:, :10], data[:, -10:] = -1.0, 1.0
    raster = write_raster(tmp_path / "ndvi.tif", data, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(raster, "r+") as ds:
        ds.build_overviews([2, 4, 8])
        bounds = ds.bounds
    info = render_png(raster, str(tmp_path / "small.png"), NDVI, max_size=100)
    assert (info["width"], info["height"]) == (100, 71)
    with rasterio.open(tmp_path / "small.png") as ds:
        assert ds.shape == (71, 100)
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633)
        for got, want in zip(ds.bounds, bounds, strict=True):
            assert got == pytest.approx(want, abs=1e-6)
        rgba = ds.read()
    assert tuple(rgba[:, 60, 0]) == RED_END
    assert tuple(rgba[:, 60, 99]) == GREEN_END
    assert rgba[3, 17, 33] == 0  # inside the NaN hole (rows 100-150, cols 200-260 at 7x)


def test_render_png_keeps_small_rasters_full_size(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    assert render_png(raster, str(tmp_path / "a.png"), NDVI, max_size=700)["width"] == 700
    assert render_png(raster, str(tmp_path / "b.png"), NDVI, max_size=None)["height"] == 500


def test_render_png_bytes_are_deterministic(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    for name in ("one", "two"):
        os.mkdir(tmp_path / name)
        render_png(raster, str(tmp_path / name / "ndvi.png"), NDVI)
    for suffix in (".png", ".pgw", ".png.aux.xml"):
        one = (tmp_path / "one" / f"ndvi{suffix}").read_bytes()
        assert one == (tmp_path / "two" / f"ndvi{suffix}").read_bytes()


def test_render_png_leaves_nothing_when_the_target_is_unwritable(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    os.mkdir(tmp_path / "taken.png")  # a folder where the PNG should go
    with pytest.raises(ProcessingError, match=r"taken\.png"):
        render_png(raster, str(tmp_path / "taken.png"), NDVI)
    assert sorted(os.listdir(tmp_path)) == ["ndvi.tif", "taken.png"]
    assert os.listdir(tmp_path / "taken.png") == []


def test_render_png_leaves_nothing_when_writing_fails(tmp_path, monkeypatch):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())

    def broken_copy(src, dst, **options):
        with open(dst, "wb") as f:
            f.write(b"\x89PNG half")
        raise rasterio.errors.RasterioIOError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    with pytest.raises(ProcessingError, match="disk full"):
        render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    assert sorted(os.listdir(tmp_path)) == ["ndvi.tif"]


def test_render_png_into_a_missing_folder_fails_clearly(tmp_path):
    raster = write_raster(tmp_path / "ndvi.tif", gradient())
    with pytest.raises(ProcessingError, match="missing"):
        render_png(raster, str(tmp_path / "missing" / "ndvi.png"), NDVI)
    assert sorted(os.listdir(tmp_path)) == ["ndvi.tif"]


def test_render_legend_writes_a_deterministic_png(tmp_path):
    style = style_for("NDSI", "snow")
    first = render_legend(str(tmp_path / "a.png"), style, "NDSI (Normalized Difference Snow)")
    render_legend(str(tmp_path / "b.png"), style, "NDSI (Normalized Difference Snow)")
    assert first == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert png_header(first)[:2] == (400, 100)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]
    assert b"Software" not in (tmp_path / "a.png").read_bytes()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_render_legend_shows_the_colormap(tmp_path):
    path = render_legend(str(tmp_path / "legend.png"), NDVI, "NDVI")
    with rasterio.open(path) as ds:
        pixels = ds.read()[:3].reshape(3, -1).T
    colours = {tuple(int(c) for c in p) for p in pixels}
    assert RED_END[:3] in colours and GREEN_END[:3] in colours


def test_render_legend_leaves_nothing_on_failure(tmp_path):
    os.mkdir(tmp_path / "legend.png")
    with pytest.raises(ProcessingError, match=r"legend\.png"):
        render_legend(str(tmp_path / "legend.png"), NDVI, "NDVI")
    assert sorted(os.listdir(tmp_path)) == ["legend.png"]


def test_a_jobs_products_load_no_matplotlib(data_dir, tmp_path) -> None:
    """Planning, the pool's worker module, the lookup tables and the legend of madrone's own
    colormaps need no matplotlib (it cost more than a small job's pixels); another colormap
    (the web app's grey) loads it."""
    probe = (
        "import sys; from madrone.api import build_spec; from madrone.engine.plan import plan; "
        "import madrone.executors.local; "
        "from madrone.products.render import lookup_table, render_legend, style_for; "
        f"plan(build_spec([{str(data_dir / 'L1C_T18SVG_20160112_crop')!r}], "
        "['ndvi', 'ndsi', 'ndwi', 'nbr', 'evi'])); "
        "tables = [lookup_table(style_for(i, None).colormap) for i in ('NDVI', 'NDSI', 'NDWI', "
        "'NBR', 'EVI')]; "
        f"render_legend({str(tmp_path / 'legend.png')!r}, style_for('NDVI', None), 'NDVI'); "
        "before = 'matplotlib' in sys.modules; grey = lookup_table('gray'); "
        "print(before, 'matplotlib' in sys.modules, tables[0][0].tolist(), grey[-1].tolist())"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=2) == [
        "False",
        "True",
        f"{list(RED_END)} [255, 255, 255, 255]\n",
    ]


@pytest.mark.parametrize("name", ["RdYlGn", "inferno", "viridis", "madrone_snow", "madrone_water"])
def test_stored_lookup_tables_are_matplotlibs(name: str) -> None:
    stored = lookup_table(name)
    assert stored.shape == (256, 4) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, sample_colormap(name))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_the_legend_draws_the_bar_ticks_and_text_in_place(tmp_path) -> None:
    style = style_for("myexpr", None)  # viridis, with a label below the ticks
    path = render_legend(str(tmp_path / "legend.png"), style, "MYEXPR")
    with rasterio.open(path) as ds:
        rgba = ds.read().transpose(1, 2, 0).astype(int)
    lut = lookup_table("viridis")
    assert rgba[0, 0].tolist() == [255, 255, 255, 255], "white, opaque background"
    middle = rgba[47, 200]  # the bar's centre row, value 0.0
    assert np.abs(middle[:3] - lut[128, :3]).max() <= 4
    assert rgba[47, 30].tolist() == lut[0].tolist(), "the low end's triangle"
    assert rgba[47, 370].tolist() == lut[255].tolist(), "the high end's triangle"
    dark = (rgba[..., :3].sum(axis=2) < 200).nonzero()[0]
    rows = set(dark.tolist())
    assert rows & set(range(10, 30)), "the title above the bar"
    assert rows & set(range(62, 78)), "the tick labels"
    assert rows & set(range(82, 96)), "the label below them"
