"""Tests for madrone.products.render: colours, georeferencing, decimation, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from PIL import Image
from rasterio.io import MemoryFile

from madrone.errors import InputError, ProcessingError
from madrone.products import render
from madrone.products.render import (
    Style,
    adler32_combine,
    colorize,
    colorize_pixels,
    encode_png,
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

    def broken_aux_xml(path, crs):
        with open(path, "w") as f:
            f.write("<PAMDataset>")
        raise OSError("disk full")

    monkeypatch.setattr(render, "_write_aux_xml", broken_aux_xml)
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


def band_by_band_colorize(values: np.ndarray, style: Style) -> np.ndarray:
    """``colorize`` as madrone had it before the one-pass lookup: the reference colours."""
    lut = lookup_table(style.colormap)
    valid = np.isfinite(values)
    scale = np.float32(255 / (style.vmax - style.vmin))
    position = np.where(valid, values, style.vmin).astype(np.float32) - np.float32(style.vmin)
    position *= scale
    index = np.clip(np.rint(position), 0, 255).astype(np.uint8)
    rgba = np.empty((4, *values.shape), dtype=np.uint8)
    for channel in range(4):
        np.take(lut[:, channel], index, out=rgba[channel])
    rgba[:, ~valid] = 0
    return rgba


@pytest.mark.parametrize(
    "style", [NDVI, Style("gray", 3.0, 17.5, "DN"), Style("madrone_snow", -0.3, 1e-4, "x")]
)
def test_colorize_gives_the_band_by_band_colours(style: Style) -> None:
    """Byte for byte, on random values, both sides of every rounding tie (k + 0.5 of 255),
    the range's edges, values beyond it, NaN and infinities, in float32 and float64."""
    span = style.vmax - style.vmin
    spread = np.random.default_rng(7).uniform(style.vmin - span, style.vmax + span, 200_000)
    ties = (style.vmin + (np.arange(-2, 258) + 0.5) / 255 * span).astype(np.float32)
    around = [np.nextafter(ties, np.float32(np.inf)), ties, np.nextafter(ties, -np.inf)]
    extremes = [np.nan, np.inf, -np.inf, style.vmin, style.vmax, 0.0, -0.0, 3e38, -3e38, 1e-45]
    values = np.concatenate([spread.astype(np.float32), *around, np.float32(extremes)])
    values = values.reshape(1, -1)
    wide = values.astype(np.float64)
    wide[0, :3] = [1e300, -1e300, -np.inf]  # beyond float32: the end colours, as before
    with np.errstate(over="ignore"):  # the reference overflows float32 near 3e38
        expected, expected_wide = (band_by_band_colorize(v, style) for v in (values, wide))
    np.testing.assert_array_equal(colorize(values, style), expected)
    np.testing.assert_array_equal(colorize(wide, style), expected_wide)
    assert tuple(expected_wide[:, 0, 0]) == tuple(lookup_table(style.colormap)[255])


def test_colorize_pixels_interleaves_and_writes_into_a_view() -> None:
    values = gradient(40, 30)
    pixels = colorize_pixels(values, NDVI)
    assert pixels.shape == (40, 30, 4) and pixels.flags.c_contiguous
    np.testing.assert_array_equal(pixels.transpose(2, 0, 1), colorize(values, NDVI))
    scanlines = np.full((40, 1 + 30 * 4), 7, dtype=np.uint8)
    colorize_pixels(values, NDVI, out=scanlines[:, 1:].reshape(40, 30, 4))
    np.testing.assert_array_equal(scanlines[:, 1:].reshape(40, 30, 4), pixels)
    assert (scanlines[:, 0] == 7).all()


def test_encode_png_is_one_zlib_stream_of_unfiltered_rows() -> None:
    """The tiles' encoding: signature, IHDR, one IDAT whose zlib stream (checksum included)
    the standard library inflates to the unfiltered rows, IEND; every chunk's CRC right."""
    pixels = colorize_pixels(gradient(256, 256), NDVI)
    scanlines = np.zeros((256, 1 + 256 * 4), dtype=np.uint8)
    scanlines[:, 1:] = pixels.reshape(256, -1)
    png = encode_png(pixels)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(png):
        (length,) = struct.unpack_from(">I", png, at)
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack_from(">I", png, at + 8 + length)
        assert crc == zlib.crc32(kind + data)
        chunks.append((kind, data))
        at += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", 256, 256, 8, 6, 0, 0, 0)
    assert zlib.decompress(chunks[1][1]) == scanlines.tobytes()
    assert len(chunks[1][1]) < scanlines.nbytes / 4  # compressed
    with Image.open(io.BytesIO(png)) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGBA")), pixels)


def test_pieces_deflated_apart_join_into_one_zlib_stream() -> None:
    data = np.random.default_rng(3).integers(0, 4, (1000, 97), dtype=np.uint8)
    pieces = [render._deflate(data[r : r + 300], last=r + 300 >= 1000) for r in (0, 300, 600, 900)]
    stream = b"".join(render._zlib_stream(pieces))
    assert zlib.decompress(stream) == data.tobytes()  # checks the adler32 too
    assert adler32_combine(zlib.adler32(b"ab" * 9000), zlib.adler32(b"\xff" * 70000), 70000) == (
        zlib.adler32(b"ab" * 9000 + b"\xff" * 70000)
    )


@pytest.mark.parametrize("max_size", [None, 600])
def test_render_png_of_many_strips_is_colorize(tmp_path, max_size) -> None:
    """Rasters taller than a strip are compressed in pieces: still colorize's pixels."""
    data = np.random.default_rng(5).uniform(-1.2, 1.2, (1300, 400)).astype(np.float32)
    data[::7, ::5] = np.nan
    raster = write_raster(tmp_path / "ndvi.tif", data)
    info = render_png(raster, str(tmp_path / "ndvi.png"), NDVI, max_size=max_size)
    with rasterio.open(raster) as ds:
        shape = (info["height"], info["width"])
        values = ds.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    assert shape == ((1300, 400) if max_size is None else (600, 185))
    np.testing.assert_array_equal(read_png(tmp_path / "ndvi.png"), colorize(values, NDVI))


@pytest.mark.parametrize(
    ("max_size", "level"),
    [
        (1000, None),
        (770, None),  # GDAL would read the 650 px level, repeating pixels
        (649, 0),
        (650, 0),
        (400, 0),
        (325, 1),
        (200, 1),
        (190, 1),  # GDAL would read the 163 px level
        (163, 2),
        (60, 2),
    ],
)
def test_a_smaller_png_samples_the_coarsest_overview_at_least_its_size(
    tmp_path, max_size, level
) -> None:
    """1300 x 900 px with overviews of 650, 325 and 163 px: a PNG is sampled, strip by strip,
    from the coarsest level at least its size, each pixel the one GDAL's nearest read of
    that level gives (none coarser, even where GDAL's own pick would be)."""
    data = np.random.default_rng(9).uniform(-1.2, 1.2, (900, 1300)).astype(np.float32)
    data[::11, ::3] = np.nan
    raster = write_raster(tmp_path / "ndvi.tif", data, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(raster, "r+") as ds:
        ds.build_overviews([2, 4, 8], rasterio.enums.Resampling.average)
    info = render_png(raster, str(tmp_path / "ndvi.png"), NDVI, max_size=max_size)
    shape = (info["height"], info["width"])
    options = {} if level is None else {"overview_level": level}
    with rasterio.open(raster, **options) as source:
        assert source.width >= shape[1] and source.height >= shape[0]
        level_values = source.read(1)
    # GDAL's nearest read of that level alone (a copy without overviews to pick from)
    profile = {"driver": "MEM", "count": 1, "dtype": "float32", "transform": TRANSFORM}
    with (
        MemoryFile() as memfile,
        memfile.open(height=level_values.shape[0], width=level_values.shape[1], **profile) as copy,
    ):
        copy.write(level_values, 1)
        values = copy.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    np.testing.assert_array_equal(read_png(tmp_path / "ndvi.png"), colorize(values, NDVI))
    if level is not None and level < 2:  # the next level is too small
        with rasterio.open(raster, overview_level=level + 1) as coarser:
            assert coarser.width < shape[1] or coarser.height < shape[0]


def gdal_png(folder, crs, transform) -> dict[str, bytes]:
    """The sidecars GDAL's PNG driver writes (WORLDFILE=YES) for this georeferencing."""
    profile = {"width": 3, "height": 2, "count": 4, "dtype": "uint8", "crs": crs}
    with MemoryFile() as memfile, memfile.open(driver="MEM", transform=transform, **profile) as mem:
        rasterio.shutil.copy(mem, str(folder / "gdal.png"), driver="PNG", WORLDFILE="YES")
    return {name[4:]: (folder / name).read_bytes() for name in os.listdir(folder)}


@pytest.mark.parametrize(
    "crs",
    [
        "EPSG:32633",
        "EPSG:4326",  # latitude first: data axes swapped
        "EPSG:3035",  # northing first
        "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
    ],
)
def test_render_png_writes_the_sidecars_gdal_writes(tmp_path, crs) -> None:
    transform = Affine(0.000123456789, 0.0, 12.3456789, 0.0, -0.000987654321, 48.7654321)
    raster = write_raster(tmp_path / "ndvi.tif", gradient(), transform=transform, crs=crs)
    os.mkdir(tmp_path / "out")
    render_png(raster, str(tmp_path / "out" / "ndvi.png"), NDVI, max_size=350)
    os.mkdir(tmp_path / "gdal")
    with rasterio.open(raster) as ds:  # the raster's CRS, as GeoTIFF keeps it
        expected = gdal_png(tmp_path / "gdal", ds.crs, transform @ Affine.scale(2.0, 2.0))
    assert sorted(expected) == [".png", ".png.aux.xml", ".wld"]
    assert (tmp_path / "out" / "ndvi.pgw").read_bytes() == expected[".wld"]
    assert (tmp_path / "out" / "ndvi.png.aux.xml").read_bytes() == expected[".png.aux.xml"]
    with (
        rasterio.open(tmp_path / "out" / "ndvi.png") as png,
        rasterio.open(tmp_path / "gdal" / "gdal.png") as reference,
    ):
        assert png.crs == reference.crs and png.transform == reference.transform
        assert png.transform.a == pytest.approx(2 * transform.a, abs=1e-10)  # ten decimals


def test_render_png_without_a_crs_writes_no_aux_xml(tmp_path) -> None:
    raster = write_raster(tmp_path / "ndvi.tif", gradient(), crs=None)
    info = render_png(raster, str(tmp_path / "ndvi.png"), NDVI)
    assert info["crs"] is None
    assert sorted(os.listdir(tmp_path)) == ["ndvi.pgw", "ndvi.png", "ndvi.tif"]
