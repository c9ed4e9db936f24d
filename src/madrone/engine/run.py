"""Drive an executor over a plan, stream tiles to the writer, then make the products.

Everything is written into a private staging folder inside the output folder and moved into
place only when complete, so a failure at any step leaves no partial product behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from madrone import __version__
from madrone.engine.plan import Plan, TileContext
from madrone.engine.progress import ProgressLog
from madrone.engine.tile import TileResult, count_key
from madrone.errors import ImplausibleReflectanceWarning, MadroneError, ProcessingError
from madrone.grid import Tile
from madrone.products.render import render_legend, render_png, style_for
from madrone.products.stac import build_item, write_json
from madrone.products.stats import (
    WindowKey,
    WindowStats,
    count_summary,
    histogram_edges,
    merge_partials,
)
from madrone.products.writer import CogWriter
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


@dataclass
class RunResult:
    """What a run produced: products per index, and any plausibility warnings."""

    name: str
    output_dir: str
    products: dict[str, IndexProducts]
    warnings: list[str] = field(default_factory=list)
    tiles: int = 0
    elapsed: float = 0.0


def run_plan(
    plan: Plan,
    executor: Executor,
    *,
    threads: int = 1,
    zlevel: int = 1,
    png_max_size: int = 4096,
    gdal_cache_mb: int = 64,
    progress: Progress | None = None,
) -> RunResult:
    """Execute a plan on an executor and write its products into the spec's output folder."""
    with RunSession(plan, threads, zlevel, png_max_size, gdal_cache_mb) as session:
        total = len(plan.tiles)
        pending = [tile for tile in plan.tiles if tile not in session.done]
        try:
            for result in executor.map_tiles(plan.context, pending) if pending else ():
                session.add(result)
                if progress:
                    progress(len(session.done), total)
        except MadroneError:
            raise
        except Exception as error:
            raise ProcessingError(f"processing {plan.name} failed: {error}") from error
        return session.finish()


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
        gdal_cache_mb: int = 64,
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
                zlevel, gdal_cache_mb, reuse=bool(finished),
                dtypes={key: "uint16" for key in counted},
            )  # fmt: skip
            self.progress = ProgressLog(progress_path)
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
        """Write one tile's values and merge its counts and statistics (once per tile)."""
        self.writer.write(result.tile, result.arrays)
        if result.tile not in self.done:
            self.progress.append(result)
            self._merge(result.tile, result.counts, result.stats, result.contributions)

    def _merge(self, tile: Tile, counts: dict, stats: dict, used: dict[str, int]) -> None:
        self.done.add(tile)
        for scene, pixels in used.items():
            self.used[scene] = self.used.get(scene, 0) + pixels
        for key, tally in counts.items():
            self.counts.setdefault(key, ReflectanceCounts()).merge(tally)
        for name, windows in stats.items():
            self.partials[name].update(windows)

    def finish(self) -> RunResult:
        """Encode the COGs, make the other products and move them into the output folder."""
        plan = self.plan
        cogs = self.writer.finish()
        notes = _plausibility(plan, self.counts)
        products = {
            key: _index_products(
                plan, key, cogs, self.names[key], notes, self.partials[key], self.png_max_size,
                self.used,
            )
            for key in self.names
        }  # fmt: skip
        files = _publish(self.staging, self.output_dir, products, plan.spec.products)
        for key, product in products.items():
            product.files = files[key]
        return RunResult(plan.name, self.output_dir, products, notes, len(plan.tiles))

    def abort(self) -> None:
        """Remove the staging folder and everything in it (idempotent)."""
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.close()
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.abort()
        shutil.rmtree(self.staging, ignore_errors=True)


def _job_key(plan: Plan) -> str:
    """Names a job's staging folder: the same spec (and software) resumes, another does not."""
    text = json.dumps([__version__, plan.spec.to_dict()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plausibility(plan: Plan, counts: dict[tuple[str, str], ReflectanceCounts]) -> list[str]:
    """Warn, naming the source and the offset used, when reflectance looks wrong."""
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
            warnings.warn(message, ImplausibleReflectanceWarning, stacklevel=2)
            notes.append(message)
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


def _index_products(
    plan: Plan,
    key: str,
    cogs: dict[str, str],
    name: str,
    notes: list[str],
    partials: dict[WindowKey, WindowStats],
    png_max_size: int,
    used: dict[str, int],
) -> IndexProducts:
    index = next(i for i in plan.context.indices if i.name == key)
    style = style_for(index.name, index.domain)
    cog = cogs[key]
    stats = merge_partials(partials, cog, histogram_edges((style.vmin, style.vmax)))
    staging = os.path.dirname(cog)
    files = {"cog": cog}
    wanted = plan.spec.products
    observations = None
    if count_key(key) in cogs:
        files["count"] = cogs[count_key(key)]
        observations = count_summary(files["count"])
    if "png" in wanted:
        files["png"] = render_png(cog, os.path.join(staging, f"{name}.png"), style, png_max_size)[
            "path"
        ]
    if "legend" in wanted:
        files["legend"] = render_legend(
            os.path.join(staging, f"{name}.legend.png"), style, f"{index.name} ({index.long_name})"
        )
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


def _properties(plan: Plan, notes: list[str], observations: dict | None) -> dict:
    spec = plan.spec
    properties = {
        "madrone:resampling": spec.resampling,
        "madrone:mask_classes": list(plan.context.mask_classes),
        "madrone:method": spec.method,
        "madrone:days": len(plan.context.groups),
        "madrone:warnings": notes,
    }
    if observations is not None:
        properties["madrone:observations"] = observations
    if spec.area is not None:
        properties["madrone:area"] = spec.area.to_dict()
    if spec.search is not None:
        properties["madrone:search"] = spec.search.to_dict()
    dates = sorted(s.metadata["datetime"] for s in plan.scenes if s.metadata.get("datetime"))
    if len(dates) == 1:
        properties["datetime"] = dates[0]
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
