"""Streaming tile writer: tiles arrive in any order, one COG per index comes out.

On the writer's threads, while the executor computes the next tiles, each tile's overview
levels are made while it is in memory (``overviews``) and written to their own uncompressed
staging GeoTIFFs (positioned writes of whole blocks: no read-modify-write), and every COG
block the tile holds whole, at any level, is compressed and appended to a blocks file (with
a record of where it is, so a resumed run keeps it). Parts of blocks go into a
full-resolution staging GeoTIFF; whole blocks too unless ``keep_full_resolution`` is off
(every tile holds whole blocks of every level and nothing reads the full resolution back):
on a full scene that spared writing 484 MB the blocks file holds anyway. ``finish``
compresses what is left (blocks cut by tiles, the levels' blocks that span tiles) and lays
the blocks out as a COG (``cogtiff``). A block's bytes depend only on its
pixels, so the COG is the same bytes in whatever order, by whatever executor and tile size
its tiles came. At most ``MAX_PENDING`` tiles wait for a thread, so memory stays O(tile),
never O(scene).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from madrone.errors import InputError
from madrone.grid import Grid, Tile
from madrone.products import cogtiff, overviews
from madrone.sources.gdal import GDAL_TYPES, xml_text

COG_BLOCK = 512
# A compressed block's record in its key's index file: factor, block row, block col, offset
# in the blocks file, size.
_RECORD = struct.Struct("<IIIQQ")
MAX_PENDING = 4  # tiles (or blocks) waiting for the writer's threads: bounds their memory
# Lossless codecs of the COG and their levels. ZSTD level 1 encodes float32 indices about
# twice as fast as DEFLATE level 1 and decodes a third faster, at the same size
# (bench/codec.py); DEFLATE is read by every TIFF reader, ZSTD by GDAL >= 2.3 (README).
CODEC_LEVELS = {"zstd": range(1, 23), "deflate": range(1, 10)}
DEFAULT_CODEC = "zstd"


def check_codec(codec: str, level: int) -> str:
    """The GDAL name of a COG codec (``ZSTD``, ``DEFLATE``); an unknown codec or a level
    outside its range names the settings."""
    levels = CODEC_LEVELS.get(codec.lower())
    if levels is None:
        known = " or ".join(sorted(CODEC_LEVELS))
        raise InputError(f"MADRONE_COG_CODEC={codec!r} is not a COG codec; use {known}")
    if level not in levels:
        raise InputError(
            f"MADRONE_COG_ZLEVEL={level} is not a {codec.upper()} level "
            f"({levels.start} to {levels.stop - 1})"
        )
    return codec.upper()


class TileWriter(Protocol):
    """What the run loop needs of a writer, so a collection-of-COGs writer can replace it."""

    def write(self, tile: Tile, arrays: Mapping[str, np.ndarray]) -> None: ...

    def finish(self) -> dict[str, str]: ...

    def abort(self) -> None: ...


def overview_factors(height: int, width: int, block: int = COG_BLOCK) -> list[int]:
    """Overview levels 2, 4, ... until the smallest fits in one block."""
    return overviews.overview_factors(height, width, block)


class CogWriter:
    """Writes each named array of the tiles into its own single-band COG (float32 with NaN
    for nodata, unless ``dtypes`` names another type for that key).

    Args:
        grid: the output grid.
        staging_dir: a private folder for temporary and finished files.
        names: output name per index key (file name without extension).
        tags: per index key, GeoTIFF metadata tags (``index`` is the band description).
        threads: the writer's threads: overview levels and block compression while tiles
            arrive, then the remaining blocks.
        zlevel: the codec's level (1: higher levels are barely smaller on float32 indices
            and far slower, see bench/codec.py).
        reuse: keep the staging and blocks files already in the staging folder (resuming an
            interrupted run, whose finished tiles the ``written`` callbacks told).
        dtypes: per key, ``float32`` (the default) or ``uint16`` (counts; no nodata).
        codec: ``zstd`` or ``deflate`` (lossless, with the predictor for the data type).
        keep_full_resolution: also write the float keys' whole blocks to the full-resolution
            staging file. Off only when every tile holds whole blocks of the largest overview
            factor (or reaches the grid's edge) and nothing reads the full resolution of
            ``prepare``'s sources; the counts' staging file is always whole (GDAL makes
            their overviews from it).
    """

    def __init__(
        self,
        grid: Grid,
        staging_dir: str,
        names: Mapping[str, str],
        tags: Mapping[str, Mapping[str, str]],
        threads: int = 1,
        zlevel: int = 1,
        reuse: bool = False,
        dtypes: Mapping[str, str] | None = None,
        codec: str = DEFAULT_CODEC,
        keep_full_resolution: bool = True,
    ) -> None:
        self._compress_name = check_codec(codec, zlevel)
        self._grid, self._dir, self._names, self._tags = grid, staging_dir, dict(names), tags
        self._threads, self._zlevel = threads, zlevel
        self._dtypes = {key: np.dtype((dtypes or {}).get(key, "float32")) for key in names}
        self._factors = overview_factors(grid.height, grid.width)
        # Float keys get their levels from the tiles (block means); counts from GDAL.
        self._leveled = [key for key in names if self._dtypes[key].kind == "f"]
        # Every tile so far held whole blocks of every level. (A resumed run's finished tiles
        # wrote their levels before they were reported written.)
        self._complete_levels = True
        self._keep_full = keep_full_resolution
        self._sources: dict[str, str] = {}  # key -> the VRT to encode, once prepared
        self._raw: dict[tuple[str, int], str] = {}
        self._fds: dict[tuple[str, int], int] = {}
        self._offsets: dict[tuple[str, int], np.ndarray] = {}
        # Compressed blocks: per key a file they are appended to, and where each one is,
        # by (factor, block row, block col), also recorded in an index file beside it.
        self._blocks: dict[str, dict[tuple[int, int, int], tuple[int, int]]] = {}
        self._block_files: dict[str, tuple[str, int]] = {}
        self._index_files: dict[str, tuple[str, int]] = {}
        self._block_end: dict[str, int] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self._pending: set[Future] = set()
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="madrone-encode")
        for key, name in self._names.items():
            self._open_raw(key, 1, f"{name}.raw", reuse)
            for factor in self._factors if key in self._leveled else ():
                self._open_raw(key, factor, f"{name}.ov{factor}.raw", reuse)
            self._open_blocks(key, os.path.join(self._dir, f"{name}.blocks"), reuse)

    def _open_raw(self, key: str, factor: int, filename: str, reuse: bool) -> None:
        """An uncompressed GeoTIFF in 512 px blocks, laid out in full when created, that
        tiles are then written into by positioned writes at its blocks' offsets: a block
        a tile covers is one write, and GDAL reads the blocks back whole when encoding."""
        rows, cols = overviews.level_shape(self._grid.height, self._grid.width, factor)
        path = os.path.join(self._dir, filename)
        offsets = self._block_offsets(path, rows, cols) if reuse else None
        if offsets is None:
            grid = self._grid
            transform = grid.affine @ grid.affine.scale(grid.width / cols, grid.height / rows)
            with rasterio.open(
                path, "w", driver="GTiff", width=cols, height=rows, count=1,
                crs=CRS.from_user_input(grid.crs), transform=transform,
                dtype=self._dtypes[key].name, tiled=True, blockxsize=COG_BLOCK,
                blockysize=COG_BLOCK, compress="NONE", BIGTIFF="IF_NEEDED", SPARSE_OK="FALSE",
                ENDIANNESS="LITTLE",
            ):  # fmt: skip
                pass  # closing writes every block (zeros), so each has its place
            offsets = self._block_offsets(path, rows, cols)
        self._offsets[key, factor] = offsets
        self._fds[key, factor] = os.open(path, os.O_RDWR)
        self._raw[key, factor] = path

    def _open_blocks(self, key: str, path: str, reuse: bool) -> None:
        """Open (or, resuming, reopen) a key's blocks file and its index; a record cut
        short by a crash is left out, and later records of a block win."""
        keep = os.O_RDWR | os.O_CREAT | (0 if reuse else os.O_TRUNC)
        fd = os.open(path, keep)
        index = os.open(f"{path}.index", keep | os.O_APPEND)
        self._block_files[key], self._index_files[key] = (path, fd), (f"{path}.index", index)
        self._blocks[key], self._block_end[key] = {}, os.fstat(fd).st_size
        if reuse:
            records = os.pread(index, os.fstat(index).st_size, 0)
            whole = len(records) - len(records) % _RECORD.size
            for factor, row, col, offset, size in _RECORD.iter_unpack(records[:whole]):
                if offset + size <= self._block_end[key]:
                    self._blocks[key][factor, row, col] = (offset, size)

    @staticmethod
    def _block_offsets(path: str, rows: int, cols: int) -> np.ndarray | None:
        """The byte offset of every block of a staging file; None when it is not one of
        ``rows`` x ``cols`` with all its blocks in place."""
        if not os.path.exists(path):
            return None
        try:
            with rasterio.open(path) as dataset:
                if (dataset.height, dataset.width) != (rows, cols):
                    return None
                blocks = (-(-rows // COG_BLOCK), -(-cols // COG_BLOCK))
                offsets = np.zeros(blocks, dtype=np.int64)
                for block_row in range(blocks[0]):
                    for block_col in range(blocks[1]):
                        item = dataset.get_tag_item(
                            f"BLOCK_OFFSET_{block_col}_{block_row}", "TIFF", bidx=1
                        )
                        offsets[block_row, block_col] = int(item or 0)
        except (rasterio.errors.RasterioError, ValueError):
            return None
        return offsets if offsets.all() else None

    def raw_path(self, key: str) -> str:
        """A GDAL-readable view of the raw data written so far (a VRT)."""
        return self._write_vrt(key, 1)

    def write(
        self, tile: Tile, arrays: Mapping[str, np.ndarray],
        written: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Write a tile's parts of blocks into the staging files, then, on the writer's
        threads, its overview levels and its whole blocks. ``written()`` is called once all
        of it is in the files (on a writer thread, or before this returns): a resumed run
        trusts what was written by then."""
        whole = bool(self._factors) and overviews.holds_whole_blocks(
            tile, (self._grid.height, self._grid.width), self._factors[-1]
        )
        self._complete_levels &= whole
        if self._factors and not (whole or self._keep_full):  # its levels need the full res
            raise ValueError(f"tile {tile.key} cuts blocks of the overviews")
        self._raise_encoding_errors()
        holds_blocks = bool(self._block_spans(tile, 1))
        tasks = []
        for key in self._names:
            leveled = whole and key in self._leveled
            skip_whole = holds_blocks and not self._keep_full and key in self._leveled
            self._write_rows(key, 1, tile.row_off, tile.col_off, arrays[key], skip_whole)
            if leveled or holds_blocks:
                # A copy: the executor may reuse the array's memory once this returns.
                tasks.append((key, np.array(arrays[key]), leveled))
        if not tasks:
            if written is not None:
                written()
            return
        left = [len(tasks)]
        for key, values, leveled in tasks:
            self._submit(self._finish_tile, key, tile, values, leveled, written, left)

    def _finish_tile(
        self, key: str, tile: Tile, values: np.ndarray, leveled: bool,
        written: Callable[[], None] | None, left: list[int],
    ) -> None:  # fmt: skip
        """On a writer thread: the tile's overview levels into their staging files (tiles
        cover disjoint parts of every level) and each block it holds whole at any level,
        compressed; then, once the tile's last key is done, ``written()``."""
        for where, data in self._whole_blocks(key, tile, 1, values):
            self._store(key, (1, *where), data)
        if leveled:
            levels = overviews.tile_levels(values, self._factors)
            for factor, level in zip(self._factors, levels, strict=True):
                self._write_rows(key, factor, tile.row_off // factor,
                                 tile.col_off // factor, level)  # fmt: skip
                for where, data in self._whole_blocks(key, tile, factor, level):
                    self._store(key, (factor, *where), data)
        with self._lock:
            left[0] -= 1
            last = not left[0]
        if last and written is not None:
            written()

    def _write_rows(self, key: str, factor: int, row_off: int, col_off: int,
                    values: np.ndarray, skip_whole: bool = False) -> None:  # fmt: skip
        # Positioned writes into the blocks: one per block the values cover (a 1024 px tile
        # is four; none with ``skip_whole``), one per row of a block they cover in part.
        # Nothing of the scene stays mapped in this process.
        block, dtype = COG_BLOCK, self._dtypes[key].newbyteorder("<")
        values = np.ascontiguousarray(values, dtype=dtype)
        rows, cols = values.shape
        height, width = overviews.level_shape(self._grid.height, self._grid.width, factor)
        offsets, fd = self._offsets[key, factor], self._fds[key, factor]
        for block_row in range(row_off // block, (row_off + rows - 1) // block + 1):
            top = block_row * block
            r0, r1 = max(row_off, top), min(row_off + rows, top + block)
            for block_col in range(col_off // block, (col_off + cols - 1) // block + 1):
                left = block_col * block
                c0, c1 = max(col_off, left), min(col_off + cols, left + block)
                part = values[r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off]
                base = int(offsets[block_row, block_col])
                whole = (r0, r1, c0, c1) == (top, min(top + block, height), left,
                                             min(left + block, width))  # fmt: skip
                if whole and skip_whole:
                    continue
                if whole:  # padded past the raster's edge, as GDAL's blocks are
                    data = np.zeros((block, block), dtype)
                    data[: r1 - r0, : c1 - c0] = part
                    cogtiff.write_all(fd, data, base)
                    continue
                for row in range(r0, r1):
                    start = base + ((row - top) * block + (c0 - left)) * dtype.itemsize
                    cogtiff.write_all(fd, np.ascontiguousarray(part[row - r0]), start)

    def _block_spans(self, tile: Tile, factor: int) -> list[tuple[int, int, int, int, int, int]]:
        """(block row, block col, top, bottom, left, right) of every block of the level of
        ``factor`` (1: the full resolution) the tile holds whole (its part inside the
        grid), in that level's pixels. Above 1, only for a tile that holds whole blocks of
        the largest factor, whose levels are the grid's own over its footprint."""
        block = COG_BLOCK
        height, width = overviews.level_shape(self._grid.height, self._grid.width, factor)
        row_off, col_off = tile.row_off // factor, tile.col_off // factor
        rows, cols = -(-tile.height // factor), -(-tile.width // factor)
        spans = []
        for block_row in range(-(-row_off // block), height // block + 1):
            top, bottom = block_row * block, min((block_row + 1) * block, height)
            if top >= height or bottom > row_off + rows:
                break
            for block_col in range(-(-col_off // block), width // block + 1):
                left, right = block_col * block, min((block_col + 1) * block, width)
                if left >= width or right > col_off + cols:
                    break
                spans.append((block_row, block_col, top, bottom, left, right))
        return spans

    def _whole_blocks(
        self, key: str, tile: Tile, factor: int, values: np.ndarray
    ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
        """(block row, block col) and pixels of every block of a level (``values``: the
        tile's part of it) that the tile holds whole, padded with zeros as the staging
        blocks are."""
        row_off, col_off = tile.row_off // factor, tile.col_off // factor
        for block_row, block_col, top, bottom, left, right in self._block_spans(tile, factor):
            data = np.zeros((COG_BLOCK, COG_BLOCK), self._dtypes[key])
            data[: bottom - top, : right - left] = values[
                top - row_off : bottom - row_off, left - col_off : right - col_off
            ]
            yield (block_row, block_col), data

    def _submit(self, function: Callable[..., None], *args: object) -> None:
        """Run ``function(*args)`` on the writer's threads; waits while too many wait."""
        self._slots.acquire()
        try:
            future = self._pool.submit(function, *args)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: Future) -> None:
        self._slots.release()
        if future.cancelled() or future.exception() is None:
            with self._lock:
                self._pending.discard(future)

    def _store(self, key: str, where: tuple[int, int, int], data: np.ndarray) -> None:
        """Compress a block, append it to the key's blocks file, then record where it is."""
        payload = cogtiff.encode_block(data, self._compress_name, self._zlevel)
        with self._lock:
            offset = self._block_end[key]
            self._block_end[key] += len(payload)
        cogtiff.write_all(self._block_files[key][1], payload, offset)
        with self._lock:
            self._blocks[key][where] = (offset, len(payload))
            os.write(self._index_files[key][1], _RECORD.pack(*where, offset, len(payload)))

    def _raise_encoding_errors(self) -> None:
        """Re-raise, in the caller's thread, the error of a block that failed to compress."""
        with self._lock:
            failed = [f for f in self._pending if f.done() and f.exception() is not None]
        if failed:
            raise failed[0].exception()

    def _wait_for_blocks(self) -> None:
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result()

    def finish(self) -> dict[str, str]:
        """Encode every raw file and its levels as a COG; return key -> COG path."""
        self.prepare()
        done = {key: self.encode(key) for key in self._names}
        self.abort()
        return done

    def prepare(self) -> dict[str, str]:
        """Close the raw files and put the overviews in place; return key -> a VRT of the
        finished values with its overviews: what ``encode`` reads, the same pixels as the
        COG, so the PNG can be drawn from it while the COG is encoded."""
        if not self._sources:
            self._wait_for_blocks()  # the tiles' levels are written on the threads
            if self._factors and not self._complete_levels:  # a tile cut the largest blocks
                for key in self._leveled:  # (write refused such a tile without the full res)
                    self._levels_from_raw(key)
            self._close_files()
            self._sources = {key: self._source_with_overviews(key) for key in self._names}
        return dict(self._sources)

    def encode(self, key: str) -> str:
        """Compress one key's remaining blocks (those no tile held whole, the overviews) on
        the writer's threads and lay them all out as a COG; return its path."""
        source = self.prepare()[key]
        self._wait_for_blocks()
        factors = [1, *self._factors]
        for factor, where, data in self._missing_blocks(key, source, factors):
            self._submit(self._store, key, (factor, *where), data)
        self._wait_for_blocks()
        levels = []
        fd = self._block_files[key][1]
        for factor in factors:
            rows, cols = overviews.level_shape(self._grid.height, self._grid.width, factor)
            spots = [
                self._blocks[key][factor, block_row, block_col]
                for block_row in range(-(-rows // COG_BLOCK))
                for block_col in range(-(-cols // COG_BLOCK))
            ]
            levels.append(cogtiff.Level(rows, cols, [(fd, at, size) for at, size in spots]))
        cog_path = os.path.join(self._dir, f"{self._names[key]}.tif")
        cogtiff.write_cog(cog_path, levels, self._dtypes[key], self._compress_name, COG_BLOCK,
                          self._template_tags(key))  # fmt: skip
        return cog_path

    def _missing_blocks(
        self, key: str, source: str, factors: list[int]
    ) -> Iterator[tuple[int, tuple[int, int], np.ndarray]]:
        """(factor, (block row, block col), pixels) of every block not yet compressed: read
        from the staging files, or from GDAL's overviews of the counts' VRT."""
        block = COG_BLOCK
        for index, factor in enumerate(factors):
            rows, cols = overviews.level_shape(self._grid.height, self._grid.width, factor)
            wanted = [
                (block_row, block_col)
                for block_row in range(-(-rows // block))
                for block_col in range(-(-cols // block))
                if (factor, block_row, block_col) not in self._blocks[key]
            ]
            if not wanted:
                continue
            if factor == 1 or key in self._leveled:
                offsets, path = self._offsets[key, factor], self._raw[key, factor]
                dtype = self._dtypes[key].newbyteorder("<")
                with open(path, "rb") as raw:
                    for where in wanted:
                        raw.seek(int(offsets[where]))
                        data = np.frombuffer(raw.read(block * block * dtype.itemsize), dtype)
                        yield factor, where, data.reshape(block, block)
                continue
            with rasterio.open(source, overview_level=index - 1) as level:
                for block_row, block_col in wanted:
                    window = Window(block_col * block, block_row * block,
                                    min(block, cols - block_col * block),
                                    min(block, rows - block_row * block))  # fmt: skip
                    data = np.zeros((block, block), self._dtypes[key])
                    data[: window.height, : window.width] = level.read(1, window=window)
                    yield factor, (block_row, block_col), data

    def _template_tags(self, key: str) -> dict[int, cogtiff.Field]:
        """GDAL's georeferencing, metadata and nodata tags for this key's COG, read from a
        GeoTIFF GDAL writes with them and no block."""
        grid, tags = self._grid, self._tags[key]
        path = os.path.join(self._dir, f"{self._names[key]}.template.tif")
        float_data = self._dtypes[key].kind == "f"
        try:
            with rasterio.open(
                path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                dtype=self._dtypes[key].name, crs=CRS.from_user_input(grid.crs),
                transform=grid.affine, nodata=float("nan") if float_data else None,
                tiled=True, blockxsize=COG_BLOCK, blockysize=COG_BLOCK, SPARSE_OK="TRUE",
            ) as template:  # fmt: skip
                template.update_tags(**{k: str(v) for k, v in tags.items()})
                template.set_band_description(1, tags.get("index", key))
            return cogtiff.template_tags(path)
        finally:
            for leftover in (path, f"{path}.aux.xml"):
                if os.path.exists(leftover):
                    os.remove(leftover)

    def _source_with_overviews(self, key: str) -> str:
        """The VRT to encode, its overviews in place (levels, or GDAL's for counts)."""
        if key in self._leveled:
            return self._write_vrt(key, 1, [self._raw[key, factor] for factor in self._factors])
        vrt = self._write_vrt(key, 1)
        if self._factors:
            with (
                rasterio.Env(COMPRESS_OVERVIEW="NONE", GDAL_NUM_THREADS=str(self._threads)),
                rasterio.open(vrt, "r+") as dataset,
            ):
                dataset.build_overviews(self._factors, Resampling.average)
        return vrt

    def _levels_from_raw(self, key: str) -> None:
        """Make every level from the full-resolution file, in strips of whole blocks."""
        largest = self._factors[-1]
        strip = largest * max(1, 1024 // largest)
        with rasterio.open(self._raw[key, 1]) as scene:
            for row_off in range(0, scene.height, strip):
                window = Window(0, row_off, scene.width, min(strip, scene.height - row_off))
                levels = overviews.tile_levels(scene.read(1, window=window), self._factors)
                for factor, level in zip(self._factors, levels, strict=True):
                    self._write_rows(key, factor, row_off // factor, 0, level)

    def _close_files(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def abort(self) -> None:
        """Stop compressing; remove the raw files, their VRTs and the compressed blocks."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._close_files()
        for path, fd in [*self._block_files.values(), *self._index_files.values()]:
            os.close(fd)
            os.remove(path)
        self._block_files, self._index_files = {}, {}
        self._sources = {}
        for path in self._raw.values():
            for leftover in (path, f"{path}.aux.xml", f"{path}.vrt", f"{path}.vrt.ovr"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        self._raw = {}

    def _write_vrt(self, key: str, factor: int, levels: list[str] | None = None) -> str:
        """A VRT of one staging file (``factor`` 1: the full resolution) with the index's
        georeferencing, tags and nodata, naming ``levels`` (staging files of its overview
        levels) as its overviews."""
        grid, raw = self._grid, self._raw[key, factor]
        rows, cols = overviews.level_shape(grid.height, grid.width, factor)
        tags = self._tags[key]
        metadata = "".join(
            f'<MDI key="{xml_text(k)}">{xml_text(str(v))}</MDI>' for k, v in sorted(tags.items())
        )
        transform = grid.affine @ grid.affine.scale(grid.width / cols, grid.height / rows)
        geotransform = ", ".join(repr(v) for v in transform.to_gdal())
        dtype = self._dtypes[key]
        nodata = "<NoDataValue>nan</NoDataValue>" if dtype.kind == "f" else ""
        overview_xml = "".join(
            f'<Overview><SourceFilename relativeToVRT="1">{xml_text(os.path.basename(level))}'
            "</SourceFilename><SourceBand>1</SourceBand></Overview>"
            for level in levels or ()
        )
        vrt = f"""<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}">
  <SRS>{xml_text(CRS.from_user_input(grid.crs).to_wkt())}</SRS>
  <GeoTransform>{geotransform}</GeoTransform>
  <Metadata>{metadata}</Metadata>
  <VRTRasterBand dataType="{GDAL_TYPES[dtype.name]}" band="1"
      blockXSize="{COG_BLOCK}" blockYSize="{COG_BLOCK}">
    <Description>{xml_text(tags.get("index", key))}</Description>
    {nodata}
    <SimpleSource>
      <SourceFilename relativeToVRT="1">{xml_text(os.path.basename(raw))}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
    {overview_xml}
  </VRTRasterBand>
</VRTDataset>
"""
        path = f"{raw}.vrt"
        with open(path, "w") as handle:
            handle.write(vrt)
        return path
