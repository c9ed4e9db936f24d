"""Turn a finished float32 index raster into an 8-bit RGBA PNG and a legend.

Every index gets a fixed value range and colormap, so two products of the same index look
alike and can be compared by eye (no per-scene stretching):

    index (name, else catalog domain)  colormap       range    reading
    ---------------------------------  -------------  -------  -----------------------------
    NDVI, domain "vegetation"          RdYlGn         [-1, 1]  red bare, green dense canopy
    NDSI, domain "snow"                madrone_snow   [-1, 1]  brown ground, white at the 0.4
                                                               snow threshold, light blue
    NDWI, MNDWI, domain "water"        madrone_water  [-1, 1]  brown dry land, blue water
    NBR, NBR2, domain "burn"           inferno        [-1, 1]  dark burned, bright intact
    anything else                      viridis        [-1, 1]  perceptual, low to high

Values outside the range take the end colours; NaN (and any non-finite value or the
raster's own nodata value) becomes fully transparent. Colours come from a 256-entry lookup
table, so mapping a 10980 x 10980 raster is a few vectorised numpy passes. The tables of the
colormaps madrone picks are stored in ``data/colormaps`` (matplotlib's, checked by the tests)
and the legend is drawn with Pillow: a product needs no matplotlib, whose import cost more
than a small job's pixels (bench/startup.py).

Outputs are written under a temporary name beside the target and renamed into place only
when complete, and are byte-identical for identical input.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from madrone.errors import InputError, ProcessingError

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

# matplotlib loads when colours are first needed (a PNG, a legend, a web tile), not with the
# engine: a COG-only job and the pool's fork server never pay for it.
# Positions are fractions of [vmin, vmax] = [-1, 1]: 0.5 is index 0, 0.7 is NDSI 0.4.
_MADRONE_COLORMAP_STOPS: dict[str, list[tuple[float, str]]] = {
    "madrone_snow": [(0.0, "#6b4423"), (0.5, "#d8c3a0"), (0.7, "#ffffff"), (1.0, "#9fd3f5")],
    "madrone_water": [(0.0, "#8c510a"), (0.5, "#f6e8c3"), (0.75, "#6baed6"), (1.0, "#08306b")],
}

_DOMAIN_COLORMAPS: dict[str, str] = {
    "vegetation": "RdYlGn",
    "snow": "madrone_snow",
    "water": "madrone_water",
    "burn": "inferno",
}

# The colormaps madrone itself picks: a Style naming one needs no check against matplotlib.
_KNOWN_COLORMAPS = frozenset({*_MADRONE_COLORMAP_STOPS, *_DOMAIN_COLORMAPS.values(), "viridis"})

_NAME_DOMAINS: dict[str, str] = {
    "NDVI": "vegetation",
    "NDSI": "snow",
    "NDWI": "water",
    "MNDWI": "water",
    "NBR": "burn",
    "NBR2": "burn",
}

_LUT_SIZE = 256
_TABLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "colormaps")
_STRIP_ROWS = 512


@dataclass(frozen=True)
class Style:
    """How index values become colours: a colormap name stretched over [vmin, vmax]."""

    colormap: str
    vmin: float
    vmax: float
    label: str

    def __post_init__(self) -> None:
        if not (np.isfinite(self.vmin) and np.isfinite(self.vmax) and self.vmin < self.vmax):
            raise InputError(
                f"style range must be finite with vmin < vmax, got [{self.vmin}, {self.vmax}]"
            )
        if self.colormap not in _KNOWN_COLORMAPS:
            get_colormap(self.colormap)


@functools.cache
def get_colormap(name: str) -> Colormap:
    """Return a madrone-defined colormap or a registered matplotlib one by name."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if name in _MADRONE_COLORMAP_STOPS:
        return LinearSegmentedColormap.from_list(name, _MADRONE_COLORMAP_STOPS[name])
    try:
        return colormaps[name]
    except KeyError as e:
        raise InputError(f"unknown colormap {name!r}") from e


def style_for(index_name: str, domain: str | None) -> Style:
    """Pick the fixed style of an index from its name, else its catalog domain."""
    key = _NAME_DOMAINS.get(index_name.upper(), (domain or "").lower())
    return Style(_DOMAIN_COLORMAPS.get(key, "viridis"), -1.0, 1.0, index_name)


def lookup_table(colormap: str) -> np.ndarray:
    """Return the colormap sampled at 256 evenly spaced points as uint8 RGBA, shape (256, 4)."""
    if colormap in _KNOWN_COLORMAPS:
        return _stored_table(colormap).copy()
    return sample_colormap(colormap)


def sample_colormap(colormap: str) -> np.ndarray:
    """``lookup_table`` computed by matplotlib (what ``data/colormaps`` stores)."""
    samples = get_colormap(colormap)(np.linspace(0.0, 1.0, _LUT_SIZE))
    return np.rint(np.asarray(samples) * 255.0).astype(np.uint8)


def write_stored_tables(folder: str = _TABLES) -> None:
    """Rewrite ``data/colormaps`` from matplotlib (after changing a colormap)."""
    for name in sorted(_KNOWN_COLORMAPS):
        np.save(os.path.join(folder, f"{name}.npy"), sample_colormap(name))


@functools.cache
def _stored_table(name: str) -> np.ndarray:
    return np.load(os.path.join(_TABLES, f"{name}.npy"))


def colorize(values: np.ndarray, style: Style, lut: np.ndarray | None = None) -> np.ndarray:
    """Map a 2-D array of index values to band-first RGBA uint8, shape (4, rows, cols).

    Values are clipped to [vmin, vmax]; non-finite values become transparent black.
    """
    lut = lookup_table(style.colormap) if lut is None else lut
    valid = np.isfinite(values)
    scale = np.float32((_LUT_SIZE - 1) / (style.vmax - style.vmin))
    position = np.where(valid, values, style.vmin).astype(np.float32) - np.float32(style.vmin)
    position *= scale
    index = np.clip(np.rint(position), 0, _LUT_SIZE - 1).astype(np.uint8)
    rgba = np.empty((4, *values.shape), dtype=np.uint8)
    for channel in range(4):
        np.take(lut[:, channel], index, out=rgba[channel])
    rgba[:, ~valid] = 0
    return rgba


def render_png(raster_path: str, png_path: str, style: Style, max_size: int | None = 4096) -> dict:
    """Render band 1 of a raster as a georeferenced RGBA PNG with world file and aux.xml.

    Args:
        raster_path: single-band float32 raster, NaN as nodata, north-up.
        png_path: where the PNG goes; ``.pgw`` and ``.png.aux.xml`` are written beside it.
        style: colormap and value range.
        max_size: largest width or height of the PNG; larger rasters are read decimated
            (through their overviews) with the aspect ratio kept. None keeps full size.

    Returns:
        ``{"path", "width", "height", "transform", "crs"}`` of the written PNG.
    """
    lut = lookup_table(style.colormap)
    staging = _make_staging_dir(png_path)
    try:
        with rasterio.open(raster_path) as ds:
            _check_north_up(ds, raster_path)
            width, height = _output_shape(ds.width, ds.height, max_size)
            transform = ds.transform @ Affine.scale(ds.width / width, ds.height / height)
            crs = ds.crs
            profile = {"width": width, "height": height, "crs": crs, "transform": transform}
            tmp_png = os.path.join(staging, os.path.basename(png_path))
            _write_png(ds, tmp_png, profile, style, lut)
        stem = os.path.splitext(png_path)[0]
        _move_into_place(
            [
                (os.path.splitext(tmp_png)[0] + ".wld", stem + ".pgw"),
                (tmp_png + ".aux.xml", png_path + ".aux.xml"),
                (tmp_png, png_path),
            ]
        )
    except (OSError, RasterioError) as e:
        raise ProcessingError(f"cannot render {raster_path} to {png_path}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "path": png_path,
        "width": width,
        "height": height,
        "transform": list(transform)[:6],
        "crs": crs.to_string() if crs else None,
    }


def render_legend(legend_path: str, style: Style, title: str) -> str:
    """Draw a small horizontal colorbar PNG with ticks and a title; return its path."""
    staging = _make_staging_dir(legend_path)
    try:
        tmp = os.path.join(staging, os.path.basename(legend_path))
        draw_legend(style, title).save(tmp, format="PNG")
        _move_into_place([(tmp, legend_path)])
    except OSError as e:
        raise ProcessingError(f"cannot write legend {legend_path}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return legend_path


# The legend's layout in pixels of its 400 x 100 image (matplotlib's colorbar at 100 dpi, as
# madrone drew it before): the bar, its end triangles, the ticks; text sizes in points.
_LEGEND_SIZE = (400, 100)
_LEGEND_BAR = (40, 36, 360, 58)  # left, top, right, bottom
_LEGEND_END, _LEGEND_TICK, _LEGEND_DPI = 16, 5, 100
_LEGEND_SCALE = 4  # drawn 4x larger, then reduced: smooth edges and text
_BLACK = (0, 0, 0, 255)


def draw_legend(style: Style, title: str) -> Image.Image:
    """The legend image: the colormap over [vmin, vmax] with five labelled ticks, triangles
    in the end colours (values beyond the range), the title above and the label below."""
    s = _LEGEND_SCALE
    image = Image.new("RGBA", (_LEGEND_SIZE[0] * s, _LEGEND_SIZE[1] * s), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = (v * s for v in _LEGEND_BAR)
    lut = lookup_table(style.colormap)
    ramp = np.linspace(style.vmin, style.vmax, right - left, dtype=np.float32)[None, :]
    colours = np.ascontiguousarray(colorize(ramp, style, lut).transpose(1, 2, 0))
    bar = Image.fromarray(colours, "RGBA").resize((right - left, bottom - top), Image.NEAREST)
    image.paste(bar, (left, top))
    middle, end = (top + bottom) / 2, _LEGEND_END * s
    draw.polygon([(left, top), (left - end, middle), (left, bottom)], fill=tuple(lut[0]))
    draw.polygon([(right, top), (right + end, middle), (right, bottom)], fill=tuple(lut[-1]))
    outline = [(left, top), (right, top), (right + end, middle), (right, bottom),
               (left, bottom), (left - end, middle), (left, top)]  # fmt: skip
    draw.line(outline, fill=_BLACK, width=s, joint="curve")
    small, large = _legend_font(8), _legend_font(9)
    for value in np.linspace(style.vmin, style.vmax, 5):
        x = left + (value - style.vmin) / (style.vmax - style.vmin) * (right - left)
        draw.line([(x, bottom), (x, bottom + _LEGEND_TICK * s)], fill=_BLACK, width=s)
        label = f"{value:.1f}".replace("-", "\u2212")  # a typographic minus, as matplotlib's
        draw.text((x, bottom + (_LEGEND_TICK + 2) * s), label, _BLACK, small, anchor="mt")
    draw.text((image.width / 2, top - 8 * s), title, _BLACK, large, anchor="md")
    if style.label and style.label not in title:
        draw.text((image.width / 2, bottom + 26 * s), style.label, _BLACK, small, anchor="mt")
    return image.resize(_LEGEND_SIZE, Image.LANCZOS)


@functools.cache
def _legend_font(points: float) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (matplotlib's own font file, found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    folder = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else ""
    path = os.path.join(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    if not os.path.exists(path):
        from matplotlib import font_manager

        path = font_manager.findfont("DejaVu Sans")
    return ImageFont.truetype(path, round(points * _LEGEND_DPI / 72 * _LEGEND_SCALE))


def _output_shape(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """Return (width, height) scaled so neither exceeds max_size, aspect ratio kept."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    if max_size < 1:
        raise InputError(f"max_size must be a positive number of pixels, got {max_size}")
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_north_up(ds: DatasetReader, path: str) -> None:
    t = ds.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise InputError(f"{path} is not a north-up raster (transform {tuple(t)[:6]})")


def _iter_strips(ds: DatasetReader, width: int, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (row_off, values) strips of the output grid, reading decimated when smaller."""
    nodata = ds.nodata
    if (width, height) != (ds.width, ds.height):
        # One decimated read lets GDAL pick the matching overview; it is at most max_size².
        whole = ds.read(1, out_shape=(height, width), resampling=Resampling.nearest)
        strips = ((r, whole[r : r + _STRIP_ROWS]) for r in range(0, height, _STRIP_ROWS))
    else:
        strips = (
            (r, ds.read(1, window=Window(0, r, width, min(_STRIP_ROWS, height - r))))
            for r in range(0, height, _STRIP_ROWS)
        )
    for row_off, values in strips:
        if nodata is not None and not np.isnan(nodata):
            values = np.where(values == nodata, np.nan, values)
        yield row_off, values


def _write_png(ds: DatasetReader, path: str, profile: dict, style: Style, lut: np.ndarray) -> None:
    width, height = profile["width"], profile["height"]
    with (
        MemoryFile() as memfile,
        memfile.open(driver="MEM", count=4, dtype="uint8", **profile) as mem,
    ):
        for row_off, values in _iter_strips(ds, width, height):
            window = Window(0, row_off, width, values.shape[0])
            mem.write(colorize(values, style, lut), window=window)
        # zlib level 1: four times faster than the default 6, about 15% larger
        rasterio.shutil.copy(mem, path, driver="PNG", WORLDFILE="YES", ZLEVEL="1")


def _make_staging_dir(target: str) -> str:
    """Create a hidden temporary folder beside target, on the same file system."""
    folder = os.path.dirname(os.path.abspath(target))
    try:
        return tempfile.mkdtemp(prefix=".madrone-", dir=folder)
    except OSError as e:
        raise ProcessingError(f"cannot write into {folder}: {e}") from e


def _move_into_place(moves: list[tuple[str, str]]) -> None:
    """Rename staged files to their final names; on failure remove the ones already moved."""
    done: list[str] = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append(dst)
    except OSError:
        for dst in done:
            with contextlib.suppress(OSError):
                os.remove(dst)
        raise
