"""The default executor: a pool on this machine, with bounded tiles in flight.

Its workers are threads by default (``pool="threads"``): reading (GDAL), the index
(numexpr) and the statistics (numpy) release the GIL, so two threads compute tiles about
twice as fast as one, with no process to start, no engine to import again, and no copy of
the results; each thread keeps its own open datasets. ``pool="processes"`` isolates each
worker in a process of its own (a crash in a GDAL driver then ends one worker, not the run),
as described below.

Tile arrays come back through shared memory (the worker copies each array once into a
segment, the parent maps it, the writer copies it out, the segment is unlinked): pickling
them through the pool's pipe would cost more CPU than computing the index.

A pool never outlives its run. Abandoning ``map_tiles`` (the generator closed, an exception
from the consumer, a cancelled run such as ``madrone process`` stopped by SIGTERM) cancels
what is queued, terminates the workers at once (a tile is pure computation, so nothing is
lost but time) and unlinks the pool's shared memory. A worker also ends itself when the
process that owns the pool dies, even by ``kill -9``: with no worker left, the fork server
and the resource tracker, whose pipes the workers held open, exit too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import secrets
import select
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import rasterio

from madrone.engine.memory import reuse_freed_memory
from madrone.engine.plan import TileContext, tile_cache_mb
from madrone.engine.tile import TileResult, TileTask, close_datasets, run_tile
from madrone.errors import InputError
from madrone.executors import one_thread_per_tile
from madrone.grid import Tile

# A job of at most this many pixels runs in the calling process when the worker count is
# left to madrone. Starting the pool (a fork server importing the engine, then the workers)
# cost 1.0 to 3.4 s of wall time on a busy 2-core machine, where the tiles of the
# 1933 x 1947 px crop took 0.13 to 0.23 s in-process (0.04 to 0.06 CPU s per Mpx on GeoTIFF);
# lossless JPEG 2000 decodes at 0.16 CPU s per Mpx and band, so at 2048 x 2048 px a JPEG 2000
# job breaks even and a GeoTIFF one is far faster in-process.
IN_PROCESS_PIXELS = 2048 * 2048

_CONTEXT: TileContext | None = None
_PREFIX = ""  # shared-memory names of this worker's pool: "psm_md" and the pool's token
SHM_FOLDER = "/dev/shm"  # where POSIX shared memory is visible as files (Linux)


def _init_worker(context: TileContext, gdal_cache_mb: int, owner: int, prefix: str) -> None:
    """Runs once per worker process: one thread each, a bounded GDAL cache, the context,
    Ctrl-C left to the owner (which stops the pool in order), and a watch on the owner."""
    global _CONTEXT, _PREFIX
    _CONTEXT, _PREFIX = context, prefix
    os.environ["GDAL_CACHEMAX"] = str(gdal_cache_mb)
    one_thread_per_tile()
    reuse_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_owner(owner, prefix)


def _watch_owner(owner: int, prefix: str) -> None:
    """End this worker as soon as ``owner`` dies. The worker's parent is the fork server,
    not the owner, so PR_SET_PDEATHSIG cannot see the owner go; a pidfd can (Linux 5.3+),
    else the owner is polled."""
    try:
        handle = os.pidfd_open(owner)
    except (AttributeError, OSError):
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(owner):
                time.sleep(0.5)
        sweep_segments(prefix)  # nobody is left to read or unlink them
        os._exit(1)

    threading.Thread(target=watch, name="madrone-owner-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_segments(prefix: str) -> list[str]:
    """Unlink the shared-memory segments whose names start with ``prefix``; return them."""
    if not prefix or not os.path.isdir(SHM_FOLDER):
        return []
    swept = []
    for name in os.listdir(SHM_FOLDER):
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(SHM_FOLDER, name))
                swept.append(name)
            except FileNotFoundError:
                pass
    return swept


SharedArrays = dict[str, tuple[str, tuple[int, ...], str]]


def _run_in_worker(tile: Tile) -> tuple[TileResult, SharedArrays]:
    assert _CONTEXT is not None, "worker was not initialised"
    result = run_tile(TileTask(_CONTEXT, tile))
    handles = {}
    for key, array in result.arrays.items():
        name = f"{_PREFIX}{secrets.token_hex(6)}"
        segment = shared_memory.SharedMemory(name=name, create=True, size=max(array.nbytes, 1))
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


def _start_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Import the engine once in the fork server, not once per worker.
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context()


def _stop_pool(pool: ProcessPoolExecutor, pending: set[Future], abandoned: bool) -> None:
    """Shut a pool down; an abandoned one has its queue cancelled and workers terminated."""
    for future in pending:
        future.cancel()
    if abandoned:
        terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
        if terminate is not None:
            terminate()
        else:
            for process in list((pool._processes or {}).values()):
                process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for future in pending:
        _discard(future)


POOLS = ("threads", "processes")


class LocalExecutor:
    """Runs tiles in a pool of ``workers`` threads (or processes, ``pool="processes"``);
    in the calling thread when workers is 1, there is one tile, or the tiles hold at most
    ``in_process_pixels`` pixels (a process pool would cost more to start than it saves; 0,
    the default, never decides by size).

    At most ``workers * tiles_in_flight`` tiles are submitted ahead to a process pool, and a
    thread pool's finished tiles wait at most one per thread, which bounds memory.
    """

    def __init__(
        self,
        workers: int,
        tiles_in_flight: int = 2,
        gdal_cache_mb: int = 80,
        *,
        in_process_pixels: int = 0,
        pool: str = "threads",
    ):
        if pool not in POOLS:
            raise InputError(f"MADRONE_POOL={pool!r} is not a pool; use threads or processes")
        self.workers = max(1, workers)
        self.in_flight = max(1, self.workers * tiles_in_flight)
        self.gdal_cache_mb = gdal_cache_mb
        self.in_process_pixels = in_process_pixels
        self.pool = pool

    @property
    def tile_threads(self) -> int:
        """Threads of the calling process that compute tiles (a process pool's processes
        have their own GDAL cache; the caller computes only a small job, on one thread)."""
        return self.workers if self.pool == "threads" else 1

    def runs_in_process(self, tiles: Sequence[Tile]) -> bool:
        """Whether ``map_tiles`` computes these tiles in the calling thread, without a pool
        (threads cost nothing to start, so only a process pool is left out by size)."""
        if self.workers == 1 or len(tiles) <= 1:
            return True
        if self.pool == "threads":
            return False
        return sum(tile.width * tile.height for tile in tiles) <= self.in_process_pixels

    def map_tiles(self, context: TileContext, tiles: Sequence[Tile]) -> Iterator[TileResult]:
        """Yield one result per tile, in completion order. Closing the generator early
        stops the pool's processes before ``close()`` returns."""
        if self.runs_in_process(tiles):
            try:
                for tile in tiles:
                    yield run_tile(TileTask(context, tile))
            finally:
                close_datasets()
            return
        if self.pool == "threads":
            # Finished tiles wait in a queue for the writer: one per thread is enough.
            yield from _ThreadPool(context, tiles, self.workers, self.workers).results()
            return
        prefix = f"psm_md{secrets.token_hex(4)}"  # never a default name: "m" is not hex
        cache_mb = tile_cache_mb(context, tiles, self.gdal_cache_mb)
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tiles)),
            mp_context=_start_context(),
            initializer=_init_worker,
            initargs=(context, cache_mb, os.getpid(), prefix),
        )
        pending: set[Future] = set()
        finished = False
        try:
            yield from self._results(pool, pending, iter(tiles))
            finished = True
        finally:
            _stop_pool(pool, pending, abandoned=not finished)
            if not finished:
                sweep_segments(prefix)

    def _results(
        self, pool: ProcessPoolExecutor, pending: set[Future], queue: Iterator[Tile]
    ) -> Iterator[TileResult]:
        """Keep ``in_flight`` tiles submitted; yield results as they complete. ``pending``
        is updated in place, so the caller can cancel what is left."""
        for tile in queue:
            pending.add(pool.submit(_run_in_worker, tile))
            if len(pending) >= self.in_flight:
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                pending.discard(future)
                next_tile = next(queue, None)
                if next_tile is not None:
                    pending.add(pool.submit(_run_in_worker, next_tile))
                result, handles = future.result()
                segments = _receive(result, handles)
                try:
                    yield result
                finally:
                    _release(result, segments)


class _ThreadPool:
    """``workers`` threads taking tiles in turn, at most ``in_flight`` results waiting.

    Leaving ``results`` early (closed, or an exception in the consumer) stops the threads
    from taking more tiles and waits for the tiles they are computing (a fraction of a
    second each); nothing outlives the call.
    """

    def __init__(
        self, context: TileContext, tiles: Sequence[Tile], workers: int, in_flight: int
    ) -> None:
        self.context, self.tiles = context, iter(tiles)
        self.taking = threading.Lock()
        self.stop = threading.Event()
        self.done: queue.Queue = queue.Queue(maxsize=in_flight)
        self.threads = [
            threading.Thread(target=self._work, name=f"madrone-tiles-{n}", daemon=True)
            for n in range(min(workers, len(tiles)))
        ]

    def results(self) -> Iterator[TileResult]:
        import numexpr  # one thread per evaluation: the pool's threads are the parallelism

        previous = numexpr.set_num_threads(1)
        for thread in self.threads:
            thread.start()
        try:
            running = len(self.threads)
            while running:
                kind, value = self.done.get()
                if kind == "result":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    running -= 1
        finally:
            self.stop.set()
            while any(thread.is_alive() for thread in self.threads):
                with contextlib.suppress(queue.Empty):  # a thread may wait on a full queue
                    self.done.get(timeout=0.05)
            numexpr.set_num_threads(previous)

    def _work(self) -> None:
        try:
            with rasterio.Env(GDAL_NUM_THREADS="1"):
                while not self.stop.is_set():
                    with self.taking:
                        tile = next(self.tiles, None)
                    if tile is None:
                        break
                    result = run_tile(TileTask(self.context, tile))
                    self.done.put(("result", result))
        except BaseException as error:  # reaches the consumer, which stops the others
            self.stop.set()
            self.done.put(("error", error))
        finally:
            close_datasets()
            self.done.put(("finished", None))
