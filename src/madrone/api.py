"""The Python API the CLI, the service and notebooks share: build a JobSpec, plan, run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from madrone.config import Settings
from madrone.engine.plan import Plan, plan
from madrone.engine.run import Executor, Progress, RunResult, run_plan
from madrone.engine.spec import ALL_PRODUCTS, JobSpec
from madrone.executors.local import LocalExecutor
from madrone.sources.spec import SourceSpec

ProcessResult = RunResult


def build_spec(
    sources: Iterable[str | SourceSpec],
    indices: Sequence[str] = ("ndvi",),
    output_dir: str = ".",
    *,
    expressions: Mapping[str, str] | None = None,
    name: str | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    bbox: Sequence[float] | None = None,
    tile_size: int | None = None,
    resampling: str = "bilinear",
    mask_classes: Sequence[int] | None = None,
    products: Sequence[str] = ALL_PRODUCTS,
    offset: float | None = None,
    scale: float | None = None,
    bands: Mapping[str, str] | None = None,
) -> JobSpec:
    """Build a JobSpec; ``offset``/``scale`` override every source's metadata, ``bands``
    adds one source made of explicit band files (``{"B04": path_or_url, ...}``)."""
    specs = []
    sources = [*sources, SourceSpec(bands=dict(bands))] if bands else list(sources)
    for source in sources:
        if isinstance(source, str):
            source = SourceSpec(path=source)
        if offset is not None or scale is not None:
            source = SourceSpec(
                source.path,
                source.bands,
                source.band_map,
                offset if offset is not None else source.offset,
                scale if scale is not None else source.scale,
            )
        specs.append(source)
    return JobSpec(
        sources=tuple(specs),
        indices=tuple(indices),
        expressions=tuple((expressions or {}).items()),
        output_dir=output_dir,
        name=name,
        resolution=resolution,
        crs=crs,
        bbox=tuple(bbox) if bbox is not None else None,
        tile_size=tile_size,
        resampling=resampling,
        mask_classes=tuple(mask_classes) if mask_classes is not None else None,
        products=tuple(products),
    )


def run(
    spec: JobSpec,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunResult:
    """Plan and execute a JobSpec on the given executor (default: the local process pool)."""
    settings = settings or Settings.from_env()
    checked: Plan = plan(spec)
    if on_plan:
        on_plan(checked)
    n_workers = settings.resolved_workers(workers)
    executor = executor or LocalExecutor(
        n_workers, settings.tiles_in_flight, settings.gdal_cache_mb
    )
    return run_plan(
        checked,
        executor,
        threads=n_workers,
        zlevel=settings.cog_zlevel,
        png_max_size=settings.png_max_size,
        gdal_cache_mb=settings.gdal_cache_mb,
        progress=progress,
    )


def process(
    sources: Iterable[str | SourceSpec],
    indices: Sequence[str] = ("ndvi",),
    output_dir: str = ".",
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
    **options,
) -> RunResult:
    """Compute indices over Sentinel-2 sources and write the products.

    Example:
        >>> result = madrone.process(["S2A_MSIL2A_....SAFE"], ["ndvi", "ndsi"], "out")
        >>> result.products["NDVI"].files["cog"], result.products["NDVI"].stats["mean"]

    Args:
        sources: paths or URLs (band folder, SAFE folder or zip, STAC item, raster) or
            SourceSpec values.
        indices: index names; user expressions go in ``expressions={"name": "expr"}``.
        output_dir: where products are written.
        workers: local processes (default: settings, else all cores).
        executor: another executor, e.g. ``DaskExecutor("tcp://scheduler:8786")``.
        progress: called with (tiles done, tiles total).
        settings: engine settings (default: from ``MADRONE_*`` variables).
        **options: the remaining JobSpec fields (see ``build_spec``).
    """
    spec = build_spec(sources, indices, output_dir, **options)
    return run(spec, workers=workers, executor=executor, settings=settings, progress=progress)
