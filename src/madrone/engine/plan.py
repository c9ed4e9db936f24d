"""JobSpec -> Plan: the output grid, its tiles and how each tile reads each band.

Every check that can fail without reading pixels fails here (preflight): unknown index,
bad expression, missing band, unreadable file, CRS mismatch, bbox outside the data.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioIOError
from rasterio.warp import transform_bounds

from madrone.area import (
    area_from_bbox,
    area_from_geojson,
    area_grid,
    describe,
    geometry_in,
    utm_crs,
)
from madrone.config import Settings
from madrone.engine.composite import composite_groups
from madrone.engine.spec import COMPOSITE_METHODS, PRODUCT_KINDS, RESAMPLING_METHODS, JobSpec
from madrone.errors import GridError, InputError, SourceError
from madrone.grid import Grid, Tile, iter_tiles, snap_grid
from madrone.indices import IndexDef, index_from_expression, resolve_index
from madrone.products.render import style_for
from madrone.sources.base import BandRef, Scene
from madrone.sources.catalog import search_items
from madrone.sources.gdal import gdal_env
from madrone.sources.spec import SourceSpec, open_source

# SCL classes: 0 no data, 1 saturated/defective, 3 cloud shadow, 8/9 cloud medium/high
# probability, 10 thin cirrus, 11 snow. Classes above 11 do not exist (lossy compression
# makes them) and are always masked.
DEFAULT_MASK_CLASSES = (0, 1, 3, 8, 9, 10, 11)
SNOW_CLASS = 11
MAX_SCL_CLASS = 11
DEFAULT_TILE = 1024  # also the smallest default: per-tile overhead dominates below it
MAX_TILE = 2048
DEFAULT_AREA_RESOLUTION = 10.0  # metres: Sentinel-2's finest band


@dataclass(frozen=True)
class BandRead:
    """How one band of one scene is read onto the output grid.

    ``row_shift``/``col_shift`` are set when the band's pixels coincide with the grid's
    (same CRS and resolution, integer offset): then tiles are read directly, else warped.
    """

    ref: BandRef
    crs: str
    transform: tuple[float, ...]
    height: int
    width: int
    block: tuple[int, int]
    file_nodata: float | None
    row_shift: int | None
    col_shift: int | None
    itemsize: int = 2  # bytes per pixel of the file's band

    @property
    def direct(self) -> bool:
        return self.row_shift is not None


@dataclass(frozen=True)
class SceneRead:
    """One scene's band reads and the rows/cols of the output grid it covers."""

    name: str
    bands: dict[str, BandRead]
    footprint: tuple[int, int, int, int]  # row0, col0, row1, col1 (exclusive)

    def covers(self, tile: Tile) -> bool:
        row0, col0, row1, col1 = self.footprint
        return (
            tile.row_off < row1
            and tile.row_off + tile.height > row0
            and tile.col_off < col1
            and tile.col_off + tile.width > col0
        )


@dataclass(frozen=True)
class TileContext:
    """Everything run_tile needs besides the tile itself; sent once per worker."""

    grid: Grid
    scenes: tuple[SceneRead, ...]
    indices: tuple[IndexDef, ...]
    resampling: str
    mask_classes: tuple[int, ...]
    value_ranges: tuple[tuple[float, float], ...]  # per index: display and histogram range
    groups: tuple[tuple[int, ...], ...] = ()  # scenes (positions) per solar day, in order
    method: str = "first"
    count: bool = False  # count valid observations per pixel (the "count" product)
    geometry: dict | None = None  # polygon in the grid's CRS; pixels outside are nodata
    ranking: IndexDef | None = None  # the index max-ndvi ranks days by

    def value_range(self, index_name: str) -> tuple[float, float]:
        names = [index.name for index in self.indices]
        return self.value_ranges[names.index(index_name)]


@dataclass(frozen=True)
class Plan:
    """A checked job: the context, the tiles, the scenes (for provenance) and the outputs."""

    spec: JobSpec
    name: str
    context: TileContext
    tiles: tuple[Tile, ...]
    scenes: tuple[Scene, ...]
    tile_size: int

    @property
    def grid(self) -> Grid:
        return self.context.grid


def plan(spec: JobSpec, *, writes: bool = True, settings: Settings | None = None) -> Plan:
    """Check a JobSpec and fix the output grid and tiles; reads headers, never pixels.

    A spec with a search and no sources is resolved first: the returned plan's ``spec``
    lists the items found, so workers planning it again read the same items.
    ``writes=False`` is for a remote worker, which computes tiles but writes no output, so
    the output folder and the area limit (the master's settings) are not checked.
    """
    settings = settings or Settings()
    _check_name(spec.name)
    _check_parameters(spec)
    if writes:
        _check_output_dir(spec.output_dir)
        if spec.area is not None:
            spec.area.check_size(settings.max_area_km2)
    indices = _resolve_indices(spec)
    spec = _resolve_search(spec, settings)
    scenes = tuple(_dated(open_source(source), spec.datetime) for source in spec.sources)
    ranking = _ranking(spec, indices)
    computed = (*indices, ranking) if ranking else indices
    needed = sorted({band for index in computed for band in index.bands})
    infos = [_inspect_scene(scene, needed) for scene in scenes]
    grid = _area_grid(spec, infos) if spec.area else _output_grid(spec, scenes, infos)
    if spec.bbox is not None and spec.area is None:
        grid = _clip_to_bbox(grid, spec.bbox)
    scene_reads = tuple(
        _scene_read(scene, info, grid) for scene, info in zip(scenes, infos, strict=True)
    )
    kept = [i for i, read in enumerate(scene_reads) if read.footprint[2] > read.footprint[0]]
    if not kept:
        raise GridError(_no_coverage(spec, scenes, infos))
    used = tuple(scenes[i] for i in kept)
    scene_reads = tuple(scene_reads[i] for i in kept)
    tile_size = spec.tile_size or _aligned_tile_size(scene_reads, grid)
    styles = [style_for(index.name, index.domain) for index in indices]
    context = TileContext(
        grid,
        scene_reads,
        indices,
        spec.resampling,
        spec.mask_classes or DEFAULT_MASK_CLASSES,
        tuple((style.vmin, style.vmax) for style in styles),
        groups=composite_groups(used, grid),
        method=spec.method,
        count="count" in spec.products,
        geometry=geometry_in(spec.area, grid.crs) if spec.area else None,
        ranking=ranking,
    )
    name = spec.name or (_search_name(spec, used) if spec.search else _safe_name(used[0].name))
    return Plan(spec, name, context, tuple(iter_tiles(grid, tile_size)), used, tile_size)


def _search_name(spec: JobSpec, scenes: tuple[Scene, ...]) -> str:
    """``mosaic_20230810-20230820_median``: the dates the items span and the method, so
    requests over other dates or methods do not overwrite each other's products."""
    days = sorted({str(s.metadata["datetime"])[:10].replace("-", "") for s in scenes
                   if s.metadata.get("datetime")})  # fmt: skip
    span = "-".join(dict.fromkeys([days[0], days[-1]])) if days else "undated"
    return f"mosaic_{span}_{spec.method}"


def _resolve_search(spec: JobSpec, settings: Settings) -> JobSpec:
    """Run the spec's catalog search once: its items become the spec's sources."""
    if spec.search is None or spec.sources:
        return spec
    if spec.area is None:
        raise InputError("a catalog search needs an area (--corners, --bbox or --geometry)")
    items = search_items(spec.search, spec.area.bbox, headers=settings.stac_header_map())
    return replace(spec, sources=tuple(SourceSpec(item=item) for item in items))


def _dated(scene: Scene, when: str | None) -> Scene:
    """A source without an acquisition date gets the one the request states."""
    if when is None or scene.metadata.get("datetime"):
        return scene
    return Scene(scene.name, scene.bands, {**scene.metadata, "datetime": when})


def _ranking(spec: JobSpec, indices: tuple[IndexDef, ...]) -> IndexDef | None:
    if spec.method != "max-ndvi":
        return None
    return next((i for i in indices if i.name == "NDVI"), None) or resolve_index("ndvi")


def _area_grid(spec: JobSpec, infos: list[dict]) -> Grid:
    """The area's grid; its pixel edges on those of the first source band of the same CRS
    and resolution, if any, so that band (often every band) is read without resampling."""
    crs = spec.crs or utm_crs(spec.area)
    try:
        target = CRS.from_user_input(crs)
    except CRSError as error:
        raise InputError(f"--crs {spec.crs!r} is not a CRS rasterio knows ({error})") from None
    if spec.resolution is None and target.is_geographic:
        raise GridError(f"give --resolution (in degrees) for an output in {crs}")
    res = spec.resolution or DEFAULT_AREA_RESOLUTION
    same = (
        info
        for scene_info in infos
        for band, (_, info) in scene_info.items()
        if band != "SCL"
        and info.crs == target
        and (info.transform[0], -info.transform[4]) == (res, res)
    )
    first = next(same, None)
    anchor = (first.transform[2] % res, first.transform[5] % res) if first else (0.0, 0.0)
    return area_grid(spec.area, crs, res, anchor)


def _no_coverage(spec: JobSpec, scenes: tuple[Scene, ...], infos: list[dict]) -> str:
    covered = []
    for scene, info in zip(scenes, infos, strict=True):
        band_info = next(i for b, (_, i) in info.items() if b != "SCL")
        west, south, east, north = transform_bounds(
            band_info.crs, "EPSG:4326", *_bounds_in(band_info, band_info.crs), densify_pts=21
        )
        covered.append(f"{scene.name} covers {west:.4f},{south:.4f},{east:.4f},{north:.4f}")
    wanted = describe(spec.area) if spec.area else f"bbox {spec.bbox}"
    return f"no source covers the requested {wanted} (W,S,E,N): " + "; ".join(covered[:5])


def _check_name(name: str | None) -> None:
    """A products' name prefix is part of file names: no folders, no hidden or empty names."""
    if not name:
        return  # the sources' name is used
    if not name.strip(". ") or any(c in name for c in "/\\\0"):
        raise InputError(
            f"name {name!r}: the products' file prefix cannot be only dots or blanks, or hold "
            "'/', '\\' or NUL"
        )


def _check_parameters(spec: JobSpec) -> None:
    if not spec.sources and spec.search is None:
        raise InputError("no source given")
    if spec.method not in COMPOSITE_METHODS:
        raise InputError(f"method {spec.method!r} is not one of {', '.join(COMPOSITE_METHODS)}")
    if not spec.indices and not spec.expressions:
        raise InputError("no index or expression given")
    if spec.resampling not in RESAMPLING_METHODS:
        raise InputError(
            f"resampling {spec.resampling!r} is not one of {', '.join(RESAMPLING_METHODS)}"
        )
    unknown = set(spec.products) - set(PRODUCT_KINDS)
    if unknown or not spec.products:
        raise InputError(
            f"products {sorted(unknown) or 'none'}: choose from {', '.join(PRODUCT_KINDS)}"
        )
    if spec.resolution is not None and not (spec.resolution > 0 and math.isfinite(spec.resolution)):
        raise InputError(f"resolution must be a positive number, got {spec.resolution}")
    if spec.tile_size is not None and spec.tile_size < 16:
        raise InputError(f"tile size must be at least 16 pixels, got {spec.tile_size}")
    if spec.mask_classes is not None:
        bad = [c for c in spec.mask_classes if not 0 <= c <= MAX_SCL_CLASS]
        if bad:
            raise InputError(f"mask classes {bad} are not SCL classes (0 to {MAX_SCL_CLASS})")
    if spec.bbox is not None:
        _check_bbox(spec.bbox)
    if spec.area is not None:  # a stored request is checked again, like a typed one
        if spec.area.geometry is not None:
            area_from_geojson(spec.area.geometry)
        else:
            area_from_bbox(spec.area.bbox)


def _check_output_dir(path: str) -> None:
    """The output folder exists and is writable, or can be created: checked, not created."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise InputError(f"output folder {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output folder {path}: {probe} is not writable")


def _check_bbox(bbox: tuple[float, float, float, float]) -> None:
    if len(bbox) != 4:
        raise InputError(f"bbox needs 4 numbers W,S,E,N, got {len(bbox)}")
    west, south, east, north = bbox
    for label, value, limit in (("west", west, 180), ("east", east, 180)):
        if not -limit <= value <= limit:
            raise InputError(f"bbox {label} {value} is not a longitude in [-180, 180]")
    for label, value in (("south", south), ("north", north)):
        if not -90 <= value <= 90:
            raise InputError(f"bbox {label} {value} is not a latitude in [-90, 90]")
    if west >= east:
        raise InputError(f"bbox west {west} must be less than east {east}")
    if south >= north:
        raise InputError(f"bbox south {south} must be less than north {north}")


def _resolve_indices(spec: JobSpec) -> tuple[IndexDef, ...]:
    indices = [resolve_index(name) for name in spec.indices]
    indices += [index_from_expression(expr, name) for name, expr in spec.expressions]
    names = [index.name.lower() for index in indices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"index {duplicates[0]} is asked for twice")
    return tuple(indices)


@dataclass(frozen=True)
class _BandInfo:
    crs: CRS
    transform: tuple[float, ...]
    height: int
    width: int
    block: tuple[int, int]
    nodata: float | None
    itemsize: int


def _inspect_scene(scene: Scene, needed: list[str]) -> dict[str, tuple[BandRef, _BandInfo]]:
    refs = {band: scene.band(band) for band in needed}
    if "SCL" in scene.bands:
        refs["SCL"] = scene.bands["SCL"]
    return {band: (ref, _inspect_band(scene.name, band, ref)) for band, ref in refs.items()}


def _inspect_band(scene_name: str, band: str, ref: BandRef) -> _BandInfo:
    try:
        with gdal_env(), rasterio.open(ref.uri) as dataset:
            if not 1 <= ref.band_index <= dataset.count:
                raise SourceError(
                    f"{ref.uri}: band {band} is mapped to band {ref.band_index} "
                    f"but the file has {dataset.count}"
                )
            if dataset.crs is None:
                raise SourceError(f"{ref.uri}: band {band} has no CRS")
            return _BandInfo(
                dataset.crs,
                tuple(dataset.transform)[:6],
                dataset.height,
                dataset.width,
                tuple(dataset.block_shapes[ref.band_index - 1]),
                dataset.nodatavals[ref.band_index - 1],
                np.dtype(dataset.dtypes[ref.band_index - 1]).itemsize,
            )
    except RasterioIOError as error:
        raise SourceError(
            f"{ref.uri}: band {band} of {scene_name} is missing or unreadable ({error})"
        ) from error


def _output_grid(spec: JobSpec, scenes: tuple[Scene, ...], infos: list[dict]) -> Grid:
    crs = _output_crs(spec, scenes, infos)
    spectral = [info for scene_info in infos for b, (_, info) in scene_info.items() if b != "SCL"]
    finest = min(spectral, key=lambda info: abs(info.transform[0]))
    same_crs = all(info.crs == crs for info in spectral)
    if same_crs and spec.resolution is None and len(scenes) == 1:
        return Grid(crs.to_string(), finest.transform, finest.height, finest.width)
    res = spec.resolution or abs(finest.transform[0])
    if spec.resolution is None and not same_crs and crs.is_geographic != finest.crs.is_geographic:
        raise GridError(f"give --resolution for an output in {crs.to_string()}")
    bounds = [_bounds_in(info, crs) for info in spectral]
    union = (
        min(b[0] for b in bounds),
        min(b[1] for b in bounds),
        max(b[2] for b in bounds),
        max(b[3] for b in bounds),
    )
    anchor = (finest.transform[2], finest.transform[5]) if finest.crs == crs else (0.0, 0.0)
    return snap_grid(crs.to_string(), union, res, res, *anchor)


def _output_crs(spec: JobSpec, scenes: tuple[Scene, ...], infos: list[dict]) -> CRS:
    if spec.crs:
        try:
            return CRS.from_user_input(spec.crs)
        except CRSError as error:
            raise InputError(f"--crs {spec.crs!r} is not a CRS rasterio knows ({error})") from None
    by_scene = {}
    for scene, scene_info in zip(scenes, infos, strict=True):
        for band, (_, info) in scene_info.items():
            if band != "SCL":
                by_scene.setdefault(info.crs.to_string(), []).append(f"{scene.name} {band}")
    if len(by_scene) > 1:
        listing = "; ".join(f"{crs}: {', '.join(names[:3])}" for crs, names in by_scene.items())
        raise GridError(f"sources are in different CRSs ({listing}); choose one with --crs")
    return CRS.from_user_input(next(iter(by_scene)))


def _bounds_in(info: _BandInfo, crs: CRS) -> tuple[float, float, float, float]:
    a, _, c, _, e, f = info.transform
    left, top = c, f
    right, bottom = c + a * info.width, f + e * info.height
    if info.crs == crs:
        return (left, bottom, right, top)
    return transform_bounds(info.crs, crs, left, bottom, right, top, densify_pts=21)


def _clip_to_bbox(grid: Grid, bbox: tuple[float, float, float, float]) -> Grid:
    left, bottom, right, top = transform_bounds("EPSG:4326", grid.crs, *bbox, densify_pts=21)
    g_left, g_bottom, g_right, g_top = grid.bounds
    inter = (max(left, g_left), max(bottom, g_bottom), min(right, g_right), min(top, g_top))
    if inter[0] >= inter[2] or inter[1] >= inter[3]:
        data = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds, densify_pts=21)
        raise GridError(
            f"bbox {','.join(f'{v:g}' for v in bbox)} does not overlap the data, which covers "
            f"{','.join(f'{v:.4f}' for v in data)} (W,S,E,N)"
        )
    return snap_grid(grid.crs, inter, grid.res_x, grid.res_y, grid.transform[2], grid.transform[5])


def _scene_read(scene: Scene, info: dict, grid: Grid) -> SceneRead:
    bands = {band: _band_read(ref, band_info, grid) for band, (ref, band_info) in info.items()}
    rows, cols = [], []
    for band, (_, band_info) in info.items():
        if band == "SCL":
            continue
        left, bottom, right, top = _bounds_in(band_info, CRS.from_user_input(grid.crs))
        rows += [(grid.transform[5] - top) / grid.res_y, (grid.transform[5] - bottom) / grid.res_y]
        cols += [(left - grid.transform[2]) / grid.res_x, (right - grid.transform[2]) / grid.res_x]
    footprint = (
        max(0, math.floor(min(rows))),
        max(0, math.floor(min(cols))),
        min(grid.height, math.ceil(max(rows))),
        min(grid.width, math.ceil(max(cols))),
    )
    return SceneRead(scene.name, bands, footprint)


def _band_read(ref: BandRef, info: _BandInfo, grid: Grid) -> BandRead:
    row_shift = col_shift = None
    a, _, c, _, e, f = info.transform
    if info.crs == CRS.from_user_input(grid.crs) and (a, e) == (grid.res_x, -grid.res_y):
        col = (grid.transform[2] - c) / a
        row = (grid.transform[5] - f) / e
        if abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6:
            row_shift, col_shift = round(row), round(col)
    return BandRead(
        ref,
        info.crs.to_string(),
        info.transform,
        info.height,
        info.width,
        info.block,
        info.nodata,
        row_shift,
        col_shift,
        info.itemsize,
    )


def _aligned_tile_size(scenes: tuple[SceneRead, ...], grid: Grid) -> int:
    """A tile edge whose footprint in the bands is a whole number of their blocks, so no
    compressed block (JPEG 2000 codeblock, GeoTIFF tile) is decoded twice; a multiple of
    that footprint of at least DEFAULT_TILE pixels, so per-tile overhead stays small.

    A coarser band whose block covers more than DEFAULT_TILE output pixels (Sentinel-2's
    20 m JPEG 2000 bands: 1024 px blocks, 2048 px at 10 m) does not set the size: its block
    is decoded once into GDAL's block cache and read from there by the neighbouring tiles.
    Tiles of 2048 px made the two-scene NDVI + NDSI job hold 890 MiB at its peak where
    1024 px tiles hold 640 MiB, and take 62.5 s where they take 59.2 s (the JPEG 2000
    scene, 2 threads)."""
    candidates = []
    for scene in scenes:
        for read in scene.bands.values():
            block_rows, block_cols = read.block
            if block_rows != block_cols or block_rows < 64 or read.crs != grid.crs:
                continue  # blocks of another CRS do not map onto whole tiles
            footprint = round(block_cols * abs(read.transform[0]) / grid.res_x)
            if 16 <= footprint <= DEFAULT_TILE:
                candidates.append(footprint)
    footprint = max(candidates, default=DEFAULT_TILE)
    size = footprint * max(1, math.ceil(DEFAULT_TILE / footprint))
    return footprint if size > MAX_TILE else size


# GDAL's block cache per tile thread when no source block is read by two tiles (every
# block is decoded once, read once and never again): a margin over the blocks one tile
# reads, at least this. With the default 80 MiB per thread, blocks read once filled the
# cache to no use: the full scene's NDVI peaked at 371 MiB instead of 213 (bench/run.py).
STREAMED_CACHE_MB = 8


def tile_cache_mb(context: TileContext, tiles: Iterable[Tile], shared_mb: int) -> int:
    """GDAL's block cache per thread computing ``tiles``: ``shared_mb`` (the setting) when
    neighbouring tiles read the same source blocks (a band warped or resampled, blocks
    across tile edges), which the cache must keep from one tile to the next; else twice
    the blocks the largest tile reads, at least STREAMED_CACHE_MB, at most ``shared_mb``."""
    largest = 0
    for tile in tiles:
        for scene in context.scenes:
            for read in scene.bands.values():
                if not _reads_whole_blocks(read, tile, context.grid):
                    return shared_mb
        largest = max(largest, tile.height * tile.width)
    pixel_bytes = sum(read.itemsize for scene in context.scenes for read in scene.bands.values())
    needed = -(-2 * largest * pixel_bytes // 2**20)
    return min(shared_mb, max(STREAMED_CACHE_MB, needed))


def _reads_whole_blocks(read: BandRead, tile: Tile, grid: Grid) -> bool:
    """Whether the tile's window of a band starts on its blocks' edges and ends on them or
    at the grid's edge, so no other tile reads those blocks."""
    if not read.direct:
        return False
    rows, cols = read.block
    bottom, right = tile.row_off + tile.height, tile.col_off + tile.width
    return (
        (tile.row_off + read.row_shift) % rows == 0
        and (tile.col_off + read.col_shift) % cols == 0
        and ((bottom + read.row_shift) % rows == 0 or bottom == grid.height)
        and ((right + read.col_shift) % cols == 0 or right == grid.width)
    )


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(name.rstrip("/")))
    return cleaned.strip("._") or "madrone"
