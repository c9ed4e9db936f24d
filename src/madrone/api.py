"""The Python API the CLI, the service and notebooks share: build a JobSpec, plan, run.

Executors are chosen here and only here (``make_executor``, ``submit``): the local process
pool by default, a Dask scheduler given by its address, or a madrone master over gRPC.
A run is cancelled by setting its ``cancel`` event or by raising from its ``progress``
callback: the pool's processes stop and nothing partial is left in the output folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from madrone.area import Area, area_from_bbox, area_from_corners, area_from_geojson
from madrone.config import Settings, read_pem
from madrone.engine.plan import DEFAULT_AREA_RESOLUTION, Plan, plan
from madrone.engine.run import Executor, Progress, RunResult, run_plan
from madrone.engine.spec import ALL_PRODUCTS, JobSpec
from madrone.errors import InputError
from madrone.executors.local import IN_PROCESS_PIXELS, LocalExecutor
from madrone.sources.catalog import SearchSpec
from madrone.sources.mosaic import mosaic_source
from madrone.sources.spec import SourceSpec

MOSAIC_PRODUCTS = (*ALL_PRODUCTS, "count")

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
    datetime: str | None = None,
) -> JobSpec:
    """Build a JobSpec; ``offset``/``scale`` override every source's metadata, ``bands``
    adds one source made of explicit band files (``{"B04": path_or_url, ...}``),
    ``datetime`` is the acquisition date of sources that state none."""
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
        datetime=datetime,
    )


def make_executor(
    settings: Settings, workers: int | None = None, dask: object | None = None
) -> Executor:
    """The executor a run uses: the workers of a Dask scheduler when ``dask`` names one
    (``tcp://host:8786``, or a ``distributed.Client``), else the local pool of ``workers``
    threads or processes (``settings.pool``; default count: ``settings.workers``, else all
    cores, and then a job of at most ``IN_PROCESS_PIXELS`` runs in this thread)."""
    if dask:
        from madrone.executors.dask import DaskExecutor

        return DaskExecutor(dask, gdal_cache_mb=settings.gdal_cache_mb)
    chosen = workers if workers is not None else settings.workers
    return LocalExecutor(
        settings.resolved_workers(workers), settings.tiles_in_flight, settings.gdal_cache_mb,
        in_process_pixels=IN_PROCESS_PIXELS if chosen == 0 else 0, pool=settings.pool,
    )  # fmt: skip


def run(
    spec: JobSpec,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    dask: object | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Plan and execute a JobSpec on an executor (default: ``make_executor``'s choice).

    ``progress(done, total)`` follows the tiles; an exception it raises, or ``cancel``
    being set (``RunCancelled``), stops the run: the executor is closed, a local pool's
    processes end, and nothing partial stays in the output folder.
    """
    if executor is not None and dask:
        raise InputError("give an executor or a Dask scheduler address, not both")
    settings = settings or Settings.from_env()
    checked: Plan = plan(spec, settings=settings)
    if on_plan:
        on_plan(checked)
    return run_plan(
        checked,
        executor or make_executor(settings, workers, dask),
        threads=settings.resolved_workers(workers),
        zlevel=settings.cog_zlevel,
        codec=settings.cog_codec,
        png_max_size=settings.png_max_size,
        gdal_cache_mb=settings.gdal_cache_mb,
        progress=progress,
        cancel=cancel,
    )


def submit(
    spec: JobSpec,
    master: str,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run a JobSpec on a madrone master over gRPC (``host:port``), with the settings'
    token and CA; return the master's summary (products, statistics, warnings). Setting
    ``cancel`` (from another thread) cancels the job on the master: ``RunCancelled``.

    Raises:
        InputError: the master refused the job or is unreachable.
        ProcessingError: the job failed while running.
    """
    from madrone.executors.grpc.client import submit as submit_job

    settings = settings or Settings.from_env()
    ca = read_pem(settings.tls_ca, "MADRONE_TLS_CA")
    return submit_job(spec, master, settings.token or None, ca, progress, cancel)


def process(
    sources: Iterable[str | SourceSpec],
    indices: Sequence[str] = ("ndvi",),
    output_dir: str = ".",
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    dask: object | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
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
        executor: another executor object (see ``make_executor``).
        dask: a Dask scheduler to run on, ``tcp://scheduler:8786``.
        progress: called with (tiles done, tiles total); raising from it cancels the run.
        cancel: set it (from another thread) to stop the run with ``RunCancelled``.
        settings: engine settings (default: from ``MADRONE_*`` variables).
        **options: the remaining JobSpec fields (see ``build_spec``).
    """
    spec = build_spec(sources, indices, output_dir, **options)
    return run(spec, workers=workers, executor=executor, dask=dask, settings=settings,
               progress=progress, cancel=cancel)  # fmt: skip


def build_area(
    corners: Sequence[float] | str | None = None,
    bbox: Sequence[float] | str | None = None,
    geometry: str | Mapping[str, Any] | None = None,
) -> Area:
    """The one area given: two corners (UL_LAT,UL_LNG,LR_LAT,LR_LNG), a bbox (W,S,E,N) or a
    GeoJSON polygon (a dict, a JSON text or a file path)."""
    named = (("corners", corners), ("bbox", bbox), ("geometry", geometry))
    given = [name for name, value in named if value]
    if len(given) != 1:
        raise InputError(
            "give exactly one area: --corners, --bbox or --geometry"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    if corners:
        return area_from_corners(corners)
    if bbox:
        return area_from_bbox(bbox)
    return area_from_geojson(geometry if isinstance(geometry, str) else dict(geometry))


def build_mosaic_spec(
    *,
    corners: Sequence[float] | str | None = None,
    bbox: Sequence[float] | str | None = None,
    geometry: str | Mapping[str, Any] | None = None,
    source: str | None = None,
    indices: Sequence[str] = ("ndvi",),
    output_dir: str = ".",
    resolution: float = DEFAULT_AREA_RESOLUTION,
    crs: str | None = None,
    datetime: str | None = None,
    max_cloud: float | None = None,
    collections: Sequence[str] = (),
    limit: int = 500,
    method: str = "first",
    resampling: str = "bilinear",
    band_map: Mapping[str, int] | None = None,
    bands: Mapping[str, str] | None = None,
    products: Sequence[str] = MOSAIC_PRODUCTS,
    **options,
) -> JobSpec:
    """A JobSpec for an area request. ``source`` is a raster (local path or URL), a STAC
    item, or a STAC catalog or API to search (default: the bundled sample mosaic);
    ``datetime`` is the search's date range, or the date of a mosaic that states none."""
    area = build_area(corners, bbox, geometry)
    found = mosaic_source(
        source,
        band_map=band_map,
        bands=bands,
        datetime=datetime,
        max_cloud=max_cloud,
        collections=collections,
        limit=limit,
    )
    search = found if isinstance(found, SearchSpec) else None
    base = build_spec(
        [] if search else [found], indices, output_dir, resolution=resolution, crs=crs,
        resampling=resampling, products=products, **options,
    )  # fmt: skip
    return replace(
        base,
        area=area,
        search=search,
        method=method,
        datetime=None if search else datetime,
    )


def mosaic(
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    dask: object | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    **request,
) -> RunResult:
    """Compute indices over an area from a mosaic or a STAC catalog; write the products.

    Example:
        >>> result = madrone.mosaic(corners=(45.9, 15.0, 45.5, 15.4), source="catalog.json",
        ...                         datetime="2023-08-01/2023-08-31", method="median")

    Args:
        workers, executor, dask, settings, progress, cancel: as for ``process``.
        **request: the area and the source (see ``build_mosaic_spec``).
    """
    spec = build_mosaic_spec(**request)
    return run(spec, workers=workers, executor=executor, dask=dask, settings=settings,
               progress=progress, cancel=cancel)  # fmt: skip
