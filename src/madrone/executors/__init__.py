"""Executors move TileTasks to run_tile and TileResults back; nothing else."""

from __future__ import annotations

import functools
import os
import threading


@functools.cache
def one_thread_per_tile() -> None:
    """In a worker process, whose pool's threads (or processes) are the parallelism: GDAL
    decodes and numexpr evaluates in the thread that runs the tile, as in the local pool.
    Left alone, both spread each call over every core (GDAL decodes JPEG 2000 tiles on all
    cores by default), and a worker's threads, each doing so, fight for the same cores.
    ``GDAL_NUM_THREADS`` set in the environment is kept."""
    import numexpr

    os.environ.setdefault("GDAL_NUM_THREADS", "1")
    numexpr.set_num_threads(1)


_CACHE_LOCK = threading.Lock()
_cache_bytes: int | None = None


def set_tile_cache(mb_per_thread: int, threads: int) -> None:
    """In a worker process: GDAL's block cache, one per process, at ``threads`` times the
    share a thread of the job needs (``engine.plan.tile_cache_mb``); set again only when a
    job needs another size (GDAL reads the setting when its cache is next used)."""
    from rasterio.env import set_gdal_config

    global _cache_bytes
    wanted = mb_per_thread * threads * 2**20
    with _CACHE_LOCK:
        if _cache_bytes != wanted:
            set_gdal_config("GDAL_CACHEMAX", wanted)
            _cache_bytes = wanted
