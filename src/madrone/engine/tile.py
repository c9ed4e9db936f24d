"""run_tile: read band windows -> reflectance -> masks -> indices -> float32 tiles.

Pure and deterministic: the same context and tile give the same bytes in any process, so
every executor produces identical products. Open datasets are cached per thread (opening a
JPEG 2000 file per tile would cost more than reading it), which changes no result.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from madrone.engine.composite import Composite, Layer, combine, tally_origins
from madrone.engine.memory import release_freed_memory
from madrone.engine.plan import SNOW_CLASS, BandRead, SceneRead, TileContext
from madrone.errors import SourceError
from madrone.expression import DnBand, evaluate_dn
from madrone.grid import Grid, Tile
from madrone.indices import IndexDef
from madrone.products.stats import (
    WindowKey,
    WindowStats,
    histogram_edges,
    window_partials,
)
from madrone.sources.gdal import GDAL_TYPES, gdal_env, is_virtual, xml_text
from madrone.sources.reflectance import ReflectanceCounts


@dataclass
class TileResult:
    """One tile's index values and the reflectance counts behind the plausibility check."""

    tile: Tile
    arrays: dict[str, np.ndarray]
    counts: dict[tuple[str, str], ReflectanceCounts] = field(default_factory=dict)
    stats: dict[str, dict[WindowKey, WindowStats]] = field(default_factory=dict)
    contributions: dict[str, int] = field(default_factory=dict)  # scene -> pixels it gave


@dataclass(frozen=True)
class TileTask:
    """A unit of work: the job's context and one tile of its grid."""

    context: TileContext
    tile: Tile


class _OpenDatasets(threading.local):
    """The datasets one thread opened: a GDAL dataset must not be read by two threads at
    once, so each thread of a threaded pool has its own. ``context``: the job they were
    opened for last."""

    def __init__(self) -> None:
        self.plain: dict[str, rasterio.DatasetReader] = {}
        self.warped: dict[tuple, WarpedVRT] = {}
        self.context: TileContext | None = None
        self.virtual = False  # whether that job reads files through a virtual file system


_OPEN = _OpenDatasets()
# A thread that moves on to another job closes what it holds if it holds more than this: a
# worker serving job after job keeps neither their files nor their memory open for ever.
KEEP_OPEN = 32


def run_tile(task: TileTask) -> TileResult:
    """Compute every index of the context over one tile; NaN wherever no scene is valid."""
    if _OPEN.context is not task.context:
        if _OPEN.context is not None:  # another job: what the last one freed is no use
            release_freed_memory()
        if len(_OPEN.plain) + len(_OPEN.warped) > KEEP_OPEN and _OPEN.context != task.context:
            close_datasets()
        _OPEN.context, _OPEN.virtual = task.context, _reads_virtual(task.context)
    with gdal_env(virtual=_OPEN.virtual):
        return _run_tile(task.context, task.tile)


def _reads_virtual(context: TileContext) -> bool:
    return any(
        is_virtual(read.ref.uri) for scene in context.scenes for read in scene.bands.values()
    )


def _run_tile(context: TileContext, tile: Tile) -> TileResult:
    counts: dict[tuple[str, str], ReflectanceCounts] = {}
    names = [index.name for index in context.indices]
    inside = _inside(context, tile)
    groups = context.groups or tuple((i,) for i in range(len(context.scenes)))
    if inside is not None and not inside.any():
        combined = Composite({}, {}, {})
    elif context.method == "first" and not context.count:
        order = [position for group in groups for position in group]
        layer = _first_valid(context, order, tile, list(context.indices), counts)
        combined = Composite(layer.values, {}, tally_origins(layer.origin))
    else:
        indices = list(context.indices)
        if context.ranking is not None and context.ranking.name not in names:
            indices.append(context.ranking)
        layers = [_first_valid(context, group, tile, indices, counts) for group in groups]
        ranking = context.ranking.name if context.ranking is not None else None
        combined = combine(layers, names, context.method, ranking)
    shape = (tile.height, tile.width)
    outputs = {
        name: combined.values[name] if name in combined.values else _nan_tile(shape)
        for name in names
    }
    if inside is not None:
        for values in outputs.values():
            values[~inside] = np.nan
    if context.count:
        for name in names:
            observed = combined.counts.get(name)
            observed = np.zeros(shape, np.uint16) if observed is None else observed
            if inside is not None:
                observed = np.where(inside, observed, 0)
            outputs[count_key(name)] = observed
    grid_shape = (context.grid.height, context.grid.width)
    stats = {
        name: window_partials(
            outputs[name],
            tile.row_off,
            tile.col_off,
            grid_shape,
            histogram_edges(context.value_range(name)),
        )
        for name in names
    }
    used = {context.scenes[p].name: n for p, n in combined.contributions.items()}
    return TileResult(tile, outputs, counts, stats, used)


def count_key(index_name: str) -> str:
    """The result array (and product) holding an index's valid-observation counts."""
    return f"{index_name}_count"


# rasterio's in-memory datasets (rasterize) silence a warning with warnings.catch_warnings,
# which is not thread-safe: two threads rasterizing at once can restore each other's filters
# and let the warning through. Rasterizing a tile's polygon takes milliseconds.
_RASTERIZING = threading.Lock()


def _inside(context: TileContext, tile: Tile) -> np.ndarray | None:
    """Pixels of the tile inside the requested polygon (None: no polygon, all inside)."""
    if context.geometry is None:
        return None
    with _RASTERIZING:
        return geometry_mask(
            [context.geometry],
            out_shape=(tile.height, tile.width),
            transform=context.grid.tile_affine(tile),
            invert=True,
        )


def _first_valid(
    context: TileContext,
    positions: Sequence[int],
    tile: Tile,
    indices: list[IndexDef],
    counts: dict[tuple[str, str], ReflectanceCounts],
) -> Layer:
    """Each index over the tile from the first scene (in ``positions`` order) valid at each
    pixel; NaN where none is. ``origin`` records the scene behind the first index."""
    outputs: dict[str, np.ndarray | None] = {index.name: None for index in indices}
    origin = np.full((tile.height, tile.width), -1, dtype=np.int16)
    primary = indices[0].name
    for position in positions:
        scene = context.scenes[position]
        if not scene.covers(tile):
            continue
        pending = [
            index
            for index in indices
            if outputs[index.name] is None or np.isnan(outputs[index.name]).any()
        ]
        if not pending:
            break
        dn, radiometry = {}, {}
        for band in sorted({band for index in pending for band in index.bands}):
            dn[band], radiometry[band] = _read_or_fail(scene, band, context, tile)
            tally = counts.setdefault((scene.name, band), ReflectanceCounts())
            tally.add_dn(dn[band], radiometry[band])
        scl = _read_scl(scene, context, tile)
        for index in pending:
            values = evaluate_dn(
                index.compile(),
                {band: dn[band] for band in index.bands},
                radiometry,
                dict(index.constants),
            )
            if scl is not None:
                values[_scl_mask(scl, context.mask_classes, index.keeps_snow)] = np.nan
            out = outputs[index.name]
            fill = np.isnan(out) if out is not None else None
            if out is None:
                outputs[index.name] = values
            else:
                out[fill] = values[fill]
            if index.name == primary:
                took = ~np.isnan(values) if fill is None else fill & ~np.isnan(values)
                origin[took] = position
    shape = (tile.height, tile.width)
    values = {name: out if out is not None else _nan_tile(shape) for name, out in outputs.items()}
    return Layer(values, origin)


def _nan_tile(shape: tuple[int, int]) -> np.ndarray:
    """A tile of NaN, made only where no scene gave a value (most tiles need none)."""
    return np.full(shape, np.nan, dtype=np.float32)


def _read_or_fail(
    scene: SceneRead, band: str, context: TileContext, tile: Tile
) -> tuple[np.ndarray, DnBand]:
    """Read a band, turning a decoding failure into an error that names the file."""
    read = scene.bands[band]
    try:
        return read_dn(read, context, tile)
    except RasterioError as error:
        raise SourceError(
            f"{read.ref.uri}: band {band} of {scene.name} is corrupt or unreadable "
            f"(tile at row {tile.row_off}, col {tile.col_off}): {error}"
        ) from error


def read_dn(read: BandRead, context: TileContext, tile: Tile) -> tuple[np.ndarray, DnBand]:
    """One band's digital numbers over one tile, and how they become reflectance.

    Bands on the grid come as stored (uint16), with their special values (nodata,
    saturated) to mask; resampled bands come as float32 DN with NaN for nodata.
    """
    ref = read.ref
    if read.direct:
        dn = _read_direct(read, tile)
        specials = tuple(
            sorted(
                v
                for v in {ref.nodata, ref.saturated, read.file_nodata}
                if v is not None and _representable(v, dn.dtype)
            )
        )
        if dn.dtype.kind in "iu":  # two quick passes that spare the tests of absent values
            return dn, DnBand(ref.offset, ref.scale, specials, (int(dn.min()), int(dn.max())))
        return dn, DnBand(ref.offset, ref.scale, specials)
    dn = _read_warped(read, context.grid, tile, context.resampling, np.float32)
    return dn, DnBand(ref.offset, ref.scale)


def _representable(value: float, dtype: np.dtype) -> bool:
    """Whether a special DN can occur in this dtype (65535 cannot in a uint8 band)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return not np.isnan(value)


def _read_scl(scene: SceneRead, context: TileContext, tile: Tile) -> np.ndarray | None:
    read = scene.bands.get("SCL")
    if read is None:
        return None
    if read.direct:
        return _read_direct(read, tile)
    return _read_warped(read, context.grid, tile, "nearest", np.uint8)


def _scl_mask(scl: np.ndarray, classes: tuple[int, ...], keeps_snow: bool) -> np.ndarray:
    masked = [c for c in classes if not (keeps_snow and c == SNOW_CLASS)]
    lookup = np.zeros(256, dtype=bool)
    lookup[masked] = True
    lookup[SNOW_CLASS + 1 :] = True  # classes that do not exist are never trusted
    return lookup[scl.astype(np.uint8, copy=False)]


def _dataset(uri: str) -> rasterio.DatasetReader:
    dataset = _OPEN.plain.get(uri)
    if dataset is None or dataset.closed:
        dataset = _OPEN.plain[uri] = rasterio.open(uri)
    return dataset


def _read_direct(read: BandRead, tile: Tile) -> np.ndarray:
    """Read the tile's window from a band whose pixels coincide with the grid; the part
    outside the file is filled with the nodata value."""
    dataset = _dataset(read.ref.uri)
    row0, col0 = tile.row_off + read.row_shift, tile.col_off + read.col_shift
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + tile.height, read.height), min(col0 + tile.width, read.width)
    dtype = dataset.dtypes[read.ref.band_index - 1]
    if r0 == row0 and c0 == col0 and r1 - r0 == tile.height and c1 - c0 == tile.width:
        return dataset.read(read.ref.band_index, window=Window(c0, r0, c1 - c0, r1 - r0))
    fill = read.ref.nodata if read.ref.nodata is not None else 0
    out = np.full((tile.height, tile.width), fill, dtype=dtype)
    if r1 > r0 and c1 > c0:
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = dataset.read(
            read.ref.band_index, window=Window(c0, r0, c1 - c0, r1 - r0)
        )
    return out


def _read_warped(
    read: BandRead, grid: Grid, tile: Tile, resampling: str, dtype: type
) -> np.ndarray:
    """Resample a band onto the output grid (another resolution, alignment or CRS)."""
    src_nodata = read.ref.nodata if read.ref.nodata is not None else read.file_nodata
    key = (read.ref.uri, read.ref.band_index, grid, resampling, np.dtype(dtype).str)
    vrt = _OPEN.warped.get(key)
    if vrt is None or vrt.closed:
        source = _band_view(read.ref.uri, read.ref.band_index)
        is_view = source.count != _dataset(read.ref.uri).count
        vrt = _OPEN.warped[key] = WarpedVRT(
            source,
            crs=grid.crs,
            transform=grid.affine,
            width=grid.width,
            height=grid.height,
            resampling=Resampling[resampling],
            src_nodata=src_nodata,
            nodata=np.nan if np.dtype(dtype).kind == "f" else 0,
            dtype=np.dtype(dtype).name,
            warp_extras={"ERROR_THRESHOLD": 0},
            # Measured with GDAL 3.10: warping a one-band VRT view in chunks of several MB
            # gave values that moved (up to 200 DN) with the tile size; 1 MB chunks give the
            # same values as warping the file itself, at any tile size. The test
            # test_warped_mosaic_values_do_not_depend_on_the_tile_size guards this.
            **({"warp_mem_limit": 1} if is_view else {}),
        )
    return vrt.read(1, window=tile.window)


def _band_view(uri: str, band_index: int) -> rasterio.DatasetReader:
    """One band of a file as a dataset of its own. GDAL's warper processes every band of
    its source, so warping a four-band mosaic for NDVI would fetch and decode twice the
    data it needs (measured: twice the time)."""
    dataset = _dataset(uri)
    if dataset.count == 1:
        return dataset
    key = f"{uri}#band{band_index}"
    view = _OPEN.plain.get(key)
    if view is None or view.closed:
        view = _OPEN.plain[key] = rasterio.open(_band_vrt(dataset, band_index))
    return view


def _band_vrt(dataset: rasterio.DatasetReader, band_index: int) -> str:
    """A VRT (XML text, opened in memory) exposing one band of a dataset unchanged."""
    kind = GDAL_TYPES[dataset.dtypes[band_index - 1]]
    nodata = dataset.nodatavals[band_index - 1]
    block_rows, block_cols = dataset.block_shapes[band_index - 1]
    crs = f"<SRS>{xml_text(dataset.crs.to_wkt())}</SRS>" if dataset.crs else ""
    geotransform = ", ".join(repr(v) for v in dataset.transform.to_gdal())
    nodata_xml = "" if nodata is None else f"<NoDataValue>{nodata!r}</NoDataValue>"
    return f"""<VRTDataset rasterXSize="{dataset.width}" rasterYSize="{dataset.height}">
  {crs}<GeoTransform>{geotransform}</GeoTransform>
  <VRTRasterBand dataType="{kind}" band="1" blockXSize="{block_cols}" blockYSize="{block_rows}">
    {nodata_xml}
    <SimpleSource>
      <SourceFilename relativeToVRT="0">{xml_text(dataset.name)}</SourceFilename>
      <SourceBand>{band_index}</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>"""


def close_datasets() -> None:
    """Close every dataset this thread opened (end of a run, of a pool's thread)."""
    for vrt in _OPEN.warped.values():
        vrt.close()
    for dataset in _OPEN.plain.values():
        dataset.close()
    _OPEN.warped.clear()
    _OPEN.plain.clear()
