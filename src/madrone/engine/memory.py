"""How a process that runs tiles uses memory: glibc's allocator settings, set once, and
the freed memory given back when a phase that reuses it ends.

Every process that runs tiles calls ``reuse_freed_memory`` before its threads start: the
local run, the gRPC master and workers, a process pool's children and Dask workers.
``release_freed_memory`` hands back what the heaps kept when a worker moves on to another
job or past its allowance; ``returning_freed_memory`` keeps nothing back while a job's
products are made.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
ARENAS = 2


@functools.cache
def reuse_freed_memory() -> None:
    """Keep the memory a tile's arrays free for the next tile's, rather than giving it back
    to the kernel and faulting it in again, in at most ``ARENAS`` heaps.

    NDVI of the full synthetic scene (``/usr/bin/time madrone process``): 135,000 minor page
    faults and 7.2 s with glibc's default thresholds, 68,000 and 6.7 s with these. Up to
    128 MiB freed at the top of a heap stays; more goes back. glibc gives each thread that
    allocates its own heap (up to eight per core), and each heap keeps its own 128 MiB: the
    two-scene headline job peaked at 1176 MiB with the default count and 695 MiB with two
    heaps, at the same speed (tile arrays are allocated a few at a time, so the threads
    hardly wait on a heap's lock). Without glibc (no ``mallopt``) nothing changes.
    """
    libc = _libc()
    if libc is None:
        return
    libc.mallopt(_M_ARENA_MAX, ARENAS)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's ceiling for this threshold
    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


_TRIM_THRESHOLD = 128 * 2**20  # freed at the top of a heap, kept for the next tile
_PRODUCTS_TRIM_THRESHOLD = 2**20  # while products are made: given back as it is freed
_making_products = 0  # jobs of this process making their products now
_products_lock = threading.Lock()


@contextlib.contextmanager
def returning_freed_memory() -> Iterator[None]:
    """While a job's products are made, give freed memory back to the kernel as it is freed
    (glibc's trim threshold at 1 MiB) rather than keep it for tiles; ``malloc_trim`` at
    both ends.

    ``malloc_trim`` alone did not reach all of it. A Dask client, whose threads each have
    their own heap (they started before ``reuse_freed_memory`` capped the heaps), held 282
    MiB after the products of the GeoTIFF scene's NDVI + NDSI and as much after
    ``malloc_trim``: most of it in those threads' heaps, free by glibc's count. Freed while
    the threshold is low, the top of a heap goes back as it is freed: 128 MiB after the
    same products, and the two-scene headline job's Dask run peaked at 862 MiB for all its
    processes instead of 1010. The threshold goes back to 128 MiB when the last job of the
    process making products is done. Without glibc nothing changes.
    """
    global _making_products
    libc = _libc()
    if libc is None:
        yield
        return
    with _products_lock:
        _making_products += 1
        libc.mallopt(_M_TRIM_THRESHOLD, _PRODUCTS_TRIM_THRESHOLD)
    libc.malloc_trim(0)  # what the tiles' arrays freed
    try:
        yield
    finally:
        with _products_lock:
            _making_products -= 1
            if not _making_products:
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.malloc_trim(0)


def release_freed_memory(above_mib: float = 0) -> None:
    """Give the kernel the freed memory the heaps keep for reuse (glibc's ``malloc_trim``),
    if they keep more than ``above_mib``.

    Kept for the next tile, it is of no use to what comes next: a job's products (see
    ``returning_freed_memory``), or the next job on a worker, whose arrays have other
    sizes. After the tiles of the GeoTIFF scene's NDVI + NDSI (``bench/executors.py``-style,
    all products) the heaps kept 290 MiB free, on top of which the PNG's read and GDAL's
    cache grew: the run peaked at 559 MiB, and at 403 MiB (its tile phase) with the memory
    given back first. A few milliseconds.

    A worker process, one of several on a machine, gives it back between tiles once it
    passes ``WORKER_FREE_MIB``: what one tile frees is reused by the next, and what piles
    up beyond it (blocks of other sizes, another job's) is what made two gRPC workers of
    the headline job peak at 370 MiB each instead of 280. Without glibc nothing happens.
    """
    libc = _libc()
    if libc is None:
        return
    if above_mib and _free_bytes(libc) <= above_mib * 2**20:
        return
    libc.malloc_trim(0)


WORKER_FREE_MIB = 64


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: the heaps' totals; ``fordblks`` is their free bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, with the allocator's controls; None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("mallopt", "malloc_trim")):
        return None
    if hasattr(libc, "mallinfo2"):  # glibc 2.33 and later
        libc.mallinfo2.restype = _MallInfo2
    return libc


def _free_bytes(libc: ctypes.CDLL) -> int:
    """Free bytes in the heaps; without ``mallinfo2`` counted as over any limit."""
    if not hasattr(libc, "mallinfo2"):
        return 2**62
    return libc.mallinfo2().fordblks
