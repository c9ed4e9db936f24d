"""The default executor: a process pool on this machine, with bounded tiles in flight.

Tile arrays come back through shared memory (the worker copies each array once into a
segment, the parent maps it, the writer copies it out, the segment is unlinked): pickling
them through the pool's pipe would cost more CPU than computing the index.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from madrone.engine.plan import TileContext
from madrone.engine.tile import TileResult, TileTask, close_datasets, run_tile
from madrone.grid import Tile

_CONTEXT: TileContext | None = None


def _init_worker(context: TileContext, gdal_cache_mb: int) -> None:
    """Runs once per worker process: one thread each, a bounded GDAL cache, the context."""
    global _CONTEXT
    _CONTEXT = context
    os.environ["GDAL_CACHEMAX"] = str(gdal_cache_mb)
    os.environ["GDAL_NUM_THREADS"] = "1"
    import numexpr

    numexpr.set_num_threads(1)


SharedArrays = dict[str, tuple[str, tuple[int, ...], str]]


def _run_in_worker(tile: Tile) -> tuple[TileResult, SharedArrays]:
    assert _CONTEXT is not None, "worker was not initialised"
    result = run_tile(TileTask(_CONTEXT, tile))
    handles = {}
    for key, array in result.arrays.items():
        segment = shared_memory.SharedMemory(create=True, size=max(array.nbytes, 1))
        np.ndarray(array.shape, array.dtype, buffer=segment.buf)[...] = array
        handles[key] = (segment.name, array.shape, array.dtype.str)
        # The parent unlinks the segment; stop this process's tracker from doing it too.
        resource_tracker.unregister(segment._name, "shared_memory")
        segment.close()
    result.arrays = {}
    return result, handles


def _receive(result: TileResult, handles: SharedArrays) -> list[shared_memory.SharedMemory]:
    """Map a worker's segments into the result's arrays; return them for release."""
    segments = []
    for key, (name, shape, dtype) in handles.items():
        segment = shared_memory.SharedMemory(name=name)
        segments.append(segment)
        result.arrays[key] = np.ndarray(shape, np.dtype(dtype), buffer=segment.buf)
    return segments


def _release(result: TileResult, segments: list[shared_memory.SharedMemory]) -> None:
    result.arrays = {}
    for segment in segments:
        segment.close()
        segment.unlink()


def _discard(future: Future) -> None:
    """Unlink the segments of a result nobody will read (after a failure elsewhere)."""
    if future.done() and not future.cancelled() and future.exception() is None:
        result, handles = future.result()
        _release(result, _receive(result, handles))


class LocalExecutor:
    """Runs tiles in a pool of ``workers`` processes (in this process when workers is 1).

    At most ``workers * tiles_in_flight`` tiles are submitted ahead, which bounds memory.
    """

    def __init__(self, workers: int, tiles_in_flight: int = 2, gdal_cache_mb: int = 64):
        self.workers = max(1, workers)
        self.in_flight = max(1, self.workers * tiles_in_flight)
        self.gdal_cache_mb = gdal_cache_mb

    def map_tiles(self, context: TileContext, tiles: Sequence[Tile]) -> Iterator[TileResult]:
        """Yield one result per tile, in completion order."""
        if self.workers == 1 or len(tiles) == 1:
            try:
                for tile in tiles:
                    yield run_tile(TileTask(context, tile))
            finally:
                close_datasets()
            return
        if "forkserver" in multiprocessing.get_all_start_methods():
            context_mp = multiprocessing.get_context("forkserver")
            # Import the engine once in the fork server, not once per worker.
            context_mp.set_forkserver_preload([__name__])
        else:
            context_mp = multiprocessing.get_context()
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tiles)),
            mp_context=context_mp,
            initializer=_init_worker,
            initargs=(context, self.gdal_cache_mb),
        )
        pending: set[Future] = set()
        queue = iter(tiles)
        try:
            for tile in queue:
                pending.add(pool.submit(_run_in_worker, tile))
                if len(pending) >= self.in_flight:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    next_tile = next(queue, None)
                    if next_tile is not None:
                        pending.add(pool.submit(_run_in_worker, next_tile))
                    result, handles = future.result()
                    segments = _receive(result, handles)
                    try:
                        yield result
                    finally:
                        _release(result, segments)
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for future in pending:
                _discard(future)
