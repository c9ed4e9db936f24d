"""Drive an executor over a plan, stream tiles to the writer, then make the products.

Everything is written into a private staging folder inside the output folder and moved into
place only when complete, so a failure at any step, a cancellation, or an exception raised
by the progress callback leaves no partial product behind; the executor is closed at once,
so a local pool stops its processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import rasterio

from madrone import __version__
from madrone.engine.memory import release_freed_memory, returning_freed_memory, reuse_freed_memory
from madrone.engine.plan import Plan, TileContext, tile_cache_mb
from madrone.engine.progress import ProgressLog
from madrone.engine.tile import TileResult, count_key
from madrone.errors import (
    ImplausibleReflectanceWarning,
    MadroneError,
    ProcessingError,
    UnknownDateWarning,
)
from madrone.grid import Tile
from madrone.indices import IndexDef
from madrone.products.overviews import holds_whole_blocks
from madrone.products.render import Style, render_legend, render_png, style_for
from madrone.products.stac import build_item, to_datetime, write_json
from madrone.products.stats import (
    WindowKey,
    WindowStats,
    count_summary,
    histogram_edges,
    merge_partials,
)
from madrone.products.writer import DEFAULT_CODEC, CogWriter, overview_factors
from madrone.sources.reflectance import ReflectanceCounts

Progress = Callable[[int, int], None]


class Executor(Protocol):
    """Moves tiles to run_tile and results back, in any order."""

    def map_tiles(self, context: TileContext, tiles: Sequence[Tile]) -> Iterator[TileResult]: ...


@dataclass
class IndexProducts:
    """The files written for one index and the statistics of its values."""

    index: str
    files: dict[str, str]
    stats: dict


class RunCancelled(MadroneError):
    """A run stopped on request (a cancel event, a master's Cancel); it left nothing behind.

    Not the user's fault and not a failure: exit code 1, HTTP 409 (the job's state changed).
    """

    exit_code = 1
    http_status = 409


class Note(NamedTuple):
    """One warning of a run: its text (kept in the result and the STAC item) and its class."""

    message: str
    category: type[Warning]


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        name: the products' name prefix.
        output_dir: the folder the products were moved into.
        products: index name -> its files and statistics.
        notes: the run's warnings with their classes; ``warnings`` lists their texts.
        tiles: how many tiles the grid has.
        elapsed: seconds, when the caller timed the run.
        datetime: the sources' acquisition time (UTC) when they state one and the same;
            None when several differ (see the range) or when none states one.
        start_datetime, end_datetime: the earliest and latest acquisition times the
            sources state (both equal to ``datetime`` for one); None when none states one.
        undated: names of the sources whose acquisition date is unknown.
    """

    name: str
    output_dir: str
    products: dict[str, IndexProducts]
    notes: list[Note] = field(default_factory=list)
    tiles: int = 0
    elapsed: float = 0.0
    datetime: dt.datetime | None = None
    start_datetime: dt.datetime | None = None
    end_datetime: dt.datetime | None = None
    undated: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        """The warnings' texts (plausibility, unknown dates), as in the STAC items."""
        return [note.message for note in self.notes]


def emit_warnings(result: RunResult) -> None:
    """Raise a run's warnings as Python warnings, in the caller's thread."""
    for note in result.notes:
        warnings.warn(note.message, note.category, stacklevel=3)


def run_plan(
    plan: Plan,
    executor: Executor,
    *,
    threads: int = 1,
    zlevel: int = 1,
    png_max_size: int = 4096,
    gdal_cache_mb: int = 80,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    codec: str = DEFAULT_CODEC,
) -> RunResult:
    """Execute a plan on an executor and write its products into the spec's output folder.

    ``progress(done, total)`` is called after each tile; an exception it raises stops the
    run and reaches the caller unchanged, as ``RunCancelled`` does once ``cancel`` is set.
    Either way the executor is closed and nothing is left in the output folder.
    """
    reuse_freed_memory()
    with (
        # GDAL's block cache is one per process, its threads included (default: 5 % of RAM):
        # a share for each thread computing tiles here (a local pool's, as each process of a
        # process pool has), else what reading the staging files back needs.
        rasterio.Env(GDAL_CACHEMAX=_cache_mb(executor, plan, gdal_cache_mb) * 2**20),
        RunSession(plan, threads, zlevel, png_max_size, codec) as session,
    ):
        total = len(plan.tiles)
        pending = [tile for tile in plan.tiles if tile not in session.done]
        _check_cancel(plan, cancel)
        stream = executor.map_tiles(plan.context, pending) if pending else iter(())
        try:
            for result in _failing_as_processing(plan, stream):
                with _processing(plan):
                    session.add(result)
                if progress:
                    progress(len(session.done), total)
                _check_cancel(plan, cancel)
        finally:
            _close(stream)
        result = session.finish(lambda: _check_cancel(plan, cancel))
    emit_warnings(result)
    return result


def _check_cancel(plan: Plan, cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise RunCancelled(f"{plan.name}: cancelled; nothing was written")


@contextmanager
def _processing(plan: Plan) -> Iterator[None]:
    """Turn an unexpected exception into a ProcessingError naming the job."""
    try:
        yield
    except MadroneError:
        raise
    except Exception as error:
        raise ProcessingError(f"processing {plan.name} failed: {error}") from error


def _failing_as_processing(plan: Plan, stream: Iterable[TileResult]) -> Iterator[TileResult]:
    """The executor's results; its unexpected failures become ProcessingError."""
    iterator = iter(stream)
    while True:
        with _processing(plan):
            try:
                result = next(iterator)
            except StopIteration:
                return
        yield result


def _close(stream: Iterable[TileResult]) -> None:
    """Close an executor's generator now, so a pool stops its processes before we return."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


class RunSession:
    """The output side of one job: a staging folder, the writer, and the counts and window
    statistics merged so far. Results may come from any executor, in any order, and the
    same tile twice is harmless (its bytes and statistics are the same).

    Progress is logged beside the staging data, in a folder named after the job, so a run
    killed mid-way and started again with the same spec continues from the tiles already
    written (``done``). Use as a context manager: leaving it by an exception (not a kill)
    removes everything it wrote.
    """

    def __init__(
        self,
        plan: Plan,
        threads: int = 1,
        zlevel: int = 1,
        png_max_size: int = 4096,
        codec: str = DEFAULT_CODEC,
    ) -> None:
        self.plan, self.png_max_size = plan, png_max_size
        self.output_dir = os.path.abspath(plan.spec.output_dir)
        os.makedirs(self.output_dir, exist_ok=True)
        self.staging = os.path.join(self.output_dir, f".{plan.name}.{_job_key(plan)}.partial")
        os.makedirs(self.staging, exist_ok=True)
        indices = [i.name for i in plan.context.indices]
        self.names = {name: f"{plan.name}_{name.lower()}" for name in indices}
        counted = {count_key(n): f"{self.names[n]}_count" for n in indices if plan.context.count}
        self.counts: dict[tuple[str, str], ReflectanceCounts] = {}
        self.partials: dict[str, dict[WindowKey, WindowStats]] = {i: {} for i in self.names}
        self.used: dict[str, int] = {}
        self.done: set[Tile] = set()
        progress_path = os.path.join(self.staging, "progress.jsonl")
        finished = ProgressLog.load(progress_path)
        try:
            self.writer = CogWriter(
                plan.grid, self.staging, {**self.names, **counted}, _tags(plan), threads,
                zlevel, reuse=bool(finished),
                dtypes={key: "uint16" for key in counted}, codec=codec,
                keep_full_resolution=_full_resolution_read(plan, png_max_size),
            )  # fmt: skip
            self.progress = ProgressLog(progress_path)
            # Draws the PNGs once the values are complete. The legends need only the index,
            # so they are drawn now, while the tiles run.
            self.side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="madrone-draw")
            self.legends = {
                key: self.side.submit(_draw_legend, plan, key, self.staging, name)
                for key, name in self.names.items()
                if "legend" in plan.spec.products
            }
        except BaseException:
            self.abort()
            raise
        tiles = set(plan.tiles)
        for tile, counts, stats, used in finished:
            if tile in tiles:
                self._merge(tile, counts, stats, used)

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.abort()

    def add(self, result: TileResult) -> None:
        """Write one tile's values and merge its counts and statistics (once per tile); the
        tile is logged as finished once the writer has it in its files."""
        if result.tile in self.done:
            self.writer.write(result.tile, result.arrays)
            return
        line, log = ProgressLog.line(result), self.progress
        self.writer.write(result.tile, result.arrays, lambda: log.write(line))
        self._merge(result.tile, result.counts, result.stats, result.contributions)

    def _merge(self, tile: Tile, counts: dict, stats: dict, used: dict[str, int]) -> None:
        self.done.add(tile)
        for scene, pixels in used.items():
            self.used[scene] = self.used.get(scene, 0) + pixels
        for key, tally in counts.items():
            self.counts.setdefault(key, ReflectanceCounts()).merge(tally)
        for name, windows in stats.items():
            self.partials[name].update(windows)

    def finish(self, check: Callable[[], None] = lambda: None) -> RunResult:
        """Encode the COGs, make the other products and move them into the output folder.
        ``check`` is called between products: an exception it raises stops the run before
        anything is moved."""
        plan = self.plan
        with returning_freed_memory():  # the tiles' memory, of no use to the products
            cogs, drawn = self._encode_and_draw(check)
        check()
        notes = _date_notes(plan) + _plausibility(plan, self.counts)
        products = {
            key: _index_products(
                plan, key, cogs, self.names[key], notes, self.partials[key], drawn[key],
                self.used,
            )
            for key in self.names
        }  # fmt: skip
        files = _publish(self.staging, self.output_dir, products, plan.spec.products)
        for key, product in products.items():
            product.files = files[key]
        moment, start, end = product_dates(plan)
        undated = tuple(s.name for s in plan.scenes if not s.metadata.get("datetime"))
        return RunResult(
            plan.name, self.output_dir, products, notes, len(plan.tiles),
            datetime=moment, start_datetime=start, end_datetime=end, undated=undated,
        )  # fmt: skip

    def _encode_and_draw(
        self, check: Callable[[], None]
    ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Encode the COGs and, meanwhile on the draw thread, each index's PNG from the
        prepared values: the COG's own pixels (lossless), so the same PNG as from the COG,
        drawn while the encoding threads leave a core idle part of the time. The legends,
        drawn while the tiles ran, are collected here."""
        sources = self.writer.prepare()
        pngs = {
            key: self.side.submit(
                _draw_png, self.plan, key, sources[key], self.staging, name, self.png_max_size
            )
            for key, name in self.names.items()
            if "png" in self.plan.spec.products
        }
        try:
            cogs = {}
            for key in sources:
                check()
                cogs[key] = self.writer.encode(key)
        finally:
            drawn: dict[str, dict[str, str]] = {key: {} for key in self.names}
            for kind, pending in (("png", pngs), ("legend", self.legends)):
                for key, future in pending.items():
                    drawn[key][kind] = future.result()
        self.writer.abort()
        return cogs, drawn

    def abort(self) -> None:
        """Remove the staging folder and everything in it (idempotent)."""
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.abort()  # first: its threads log the tiles they finish
        side = getattr(self, "side", None)
        if side is not None:
            side.shutdown(cancel_futures=True)  # before its files are removed
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.close()
        shutil.rmtree(self.staging, ignore_errors=True)


# GDAL's block cache of a process whose tiles are computed elsewhere (a Dask client, the
# gRPC master): it reads back only its staging files, a strip at a time (the PNG's level,
# the counts' overviews), and needs a strip's blocks, not the 80 MiB of a tile thread's
# share, which filled with blocks read once.
STAGING_CACHE_MB = 32


def _cache_mb(executor: Executor, plan: Plan, gdal_cache_mb: int) -> int:
    """GDAL's block cache for a run: a share per thread of this process that computes tiles
    (a local thread pool's; a process pool's parent computes a one-tile job itself), as
    these tiles need it, else the staging files' (a cluster computes them elsewhere)."""
    threads = getattr(executor, "tile_threads", 0)
    if not threads:
        return STAGING_CACHE_MB
    return tile_cache_mb(plan.context, plan.tiles, gdal_cache_mb) * threads


def _full_resolution_read(plan: Plan, png_max_size: int | None) -> bool:
    """Whether the writer must keep the full resolution in its staging file: when a tile
    cuts the blocks of the largest overview (the levels are then made from it) or when the
    PNG may read it (a PNG less than half the grid's size is read from an overview)."""
    grid = plan.grid
    factors = overview_factors(grid.height, grid.width)
    if factors and not all(
        holds_whole_blocks(tile, (grid.height, grid.width), factors[-1]) for tile in plan.tiles
    ):
        return True
    if "png" not in plan.spec.products:
        return False
    return not png_max_size or max(grid.height, grid.width) < 2 * png_max_size


def _job_key(plan: Plan) -> str:
    """Names a job's staging folder: the same spec (and software) resumes, another does not."""
    text = json.dumps([__version__, plan.spec.to_dict()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def product_dates(plan: Plan) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]:
    """(datetime, start, end) in UTC of the acquisition times the plan's sources state:
    datetime is set when they state one and the same; all None when none states one."""
    moments = sorted(
        {to_datetime(s.metadata["datetime"]).astimezone(dt.UTC) for s in plan.scenes
         if s.metadata.get("datetime")}
    )  # fmt: skip
    if not moments:
        return None, None, None
    return (moments[0] if len(moments) == 1 else None), moments[0], moments[-1]


def _date_notes(plan: Plan) -> list[Note]:
    """One warning per source of unknown acquisition date, naming it."""
    undated = [scene.name for scene in plan.scenes if not scene.metadata.get("datetime")]
    if len(undated) == len(plan.scenes):
        outcome = "the products carry no date (STAC datetime null, madrone:datetime unknown)"
    else:
        outcome = "the products' dates are those of the other sources"
    return [
        Note(
            f"{name}: acquisition date unknown (neither its metadata nor its file names state "
            f"one); {outcome}; give --datetime, or a date such as 20160112 in the file "
            "names, to record it",
            UnknownDateWarning,
        )
        for name in undated
    ]


def _plausibility(plan: Plan, counts: dict[tuple[str, str], ReflectanceCounts]) -> list[Note]:
    """Name the source, the band and the offset used when reflectance looks wrong."""
    radiometry = {scene.name: scene.metadata.get("radiometry", "") for scene in plan.scenes}
    offsets = {
        (scene.name, band): ref.offset for scene in plan.scenes for band, ref in scene.bands.items()
    }
    notes = []
    for (scene, band), tally in sorted(counts.items()):
        problem = tally.problem()
        if problem:
            message = (
                f"{scene} {band}: implausible reflectance, {problem} with offset "
                f"{offsets.get((scene, band), 0):g} DN ({radiometry.get(scene)}); "
                "check the metadata or set --offset/--scale"
            )
            notes.append(Note(message, ImplausibleReflectanceWarning))
    return notes


def _tags(plan: Plan) -> dict[str, dict[str, str]]:
    sources = ";".join(scene.name for scene in plan.scenes)
    counts = {
        count_key(index.name): {
            "index": f"{index.name} valid observations",
            "method": plan.spec.method,
            "sources": sources,
            "software": f"madrone {__version__}",
        }
        for index in plan.context.indices
    }
    return counts | {
        index.name: {
            "index": index.name,
            "long_name": index.long_name,
            "formula": index.formula,
            "bands": ",".join(index.bands),
            "sources": sources,
            "resampling": plan.spec.resampling,
            "method": plan.spec.method,
            "software": f"madrone {__version__}",
        }
        for index in plan.context.indices
    }


def _draw_png(plan: Plan, key: str, source: str, staging: str, name: str, png_max_size: int) -> str:
    """The index's PNG, from ``source``: the finished values."""
    png = render_png(source, os.path.join(staging, f"{name}.png"), _style(plan, key), png_max_size)
    release_freed_memory()  # the decimated values and strips, before the next index's PNG
    return png["path"]


def _draw_legend(plan: Plan, key: str, staging: str, name: str) -> str:
    index = _index(plan, key)
    title = f"{index.name} ({index.long_name})"
    return render_legend(os.path.join(staging, f"{name}.legend.png"), _style(plan, key), title)


def _index(plan: Plan, key: str) -> IndexDef:
    return next(i for i in plan.context.indices if i.name == key)


def _style(plan: Plan, key: str) -> Style:
    index = _index(plan, key)
    return style_for(index.name, index.domain)


def _index_products(
    plan: Plan,
    key: str,
    cogs: dict[str, str],
    name: str,
    notes: list[Note],
    partials: dict[WindowKey, WindowStats],
    drawn: dict[str, str],
    used: dict[str, int],
) -> IndexProducts:
    index, style = _index(plan, key), _style(plan, key)
    cog = cogs[key]
    stats = merge_partials(partials, cog, histogram_edges((style.vmin, style.vmax)))
    staging = os.path.dirname(cog)
    files = {"cog": cog}
    wanted = plan.spec.products
    observations = None
    if count_key(key) in cogs:
        files["count"] = cogs[count_key(key)]
        observations = count_summary(files["count"])
    files.update(drawn)
    if "json" in wanted:
        files["json"] = os.path.join(staging, f"{name}.json")
        item = build_item(
            item_id=name,
            raster_path=cog,
            index=index.to_dict(),
            stats=stats,
            sources=[_source_record(scene, used) for scene in plan.scenes],
            assets={kind: os.path.basename(path) for kind, path in files.items()},
            properties=_properties(plan, notes, observations),
        )
        write_json(files["json"], item)
    return IndexProducts(key, files, stats)


def _source_record(scene, used: dict[str, int]) -> dict:
    keep = (
        "href", "datetime", "platform", "processing_baseline", "product_type", "cloud_cover",
        "tile", "radiometry",
    )  # fmt: skip
    record = {"name": scene.name}
    record.update({k: scene.metadata[k] for k in keep if scene.metadata.get(k) is not None})
    record["pixels"] = used.get(scene.name, 0)  # output pixels of the first index it gave
    return record


def _properties(plan: Plan, notes: list[Note], observations: dict | None) -> dict:
    spec = plan.spec
    properties = {
        "madrone:resampling": spec.resampling,
        "madrone:mask_classes": list(plan.context.mask_classes),
        "madrone:method": spec.method,
        "madrone:days": len(plan.context.groups),
        "madrone:warnings": [note.message for note in notes],
    }
    if observations is not None:
        properties["madrone:observations"] = observations
    if spec.area is not None:
        properties["madrone:area"] = spec.area.to_dict()
    if spec.search is not None:
        properties["madrone:search"] = spec.search.to_dict()
    moment, _, _ = product_dates(plan)
    if moment is not None:
        properties["datetime"] = moment
    return properties


def _publish(
    staging: str, output_dir: str, products: dict[str, IndexProducts], wanted: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Move finished files (and their side-cars) into the output folder, JSON last."""
    moved: dict[str, dict[str, str]] = {}
    order = ("cog", "count", "png", "legend", "json")
    for key, product in products.items():
        moved[key] = {}
        for kind in order:
            path = product.files.get(kind)
            if path is None or kind not in wanted:
                continue
            for sidecar in _with_sidecars(path):
                os.replace(sidecar, os.path.join(output_dir, os.path.basename(sidecar)))
            moved[key][kind] = os.path.join(output_dir, os.path.basename(path))
    return moved


def _with_sidecars(path: str) -> list[str]:
    stem = os.path.splitext(path)[0]
    candidates = [path, f"{path}.aux.xml", f"{stem}.pgw", f"{stem}.wld"]
    return [p for p in candidates if os.path.exists(p)]
