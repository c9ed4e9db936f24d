"""Executors move TileTasks to run_tile and TileResults back; nothing else."""

from __future__ import annotations

import functools
import os


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
