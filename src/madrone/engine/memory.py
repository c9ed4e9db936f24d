"""How a process that runs tiles uses memory: glibc's allocator settings, set once, and
the freed memory given back when a phase that reuses it ends.

Every process that runs tiles calls ``reuse_freed_memory`` before its threads start: the
local run, the gRPC master and workers, a process pool's children and Dask workers.
``release_freed_memory`` hands back what the heaps kept once the tiles are done (before a
job's products are made) and when a worker moves on to another job.
"""

from __future__ import annotations

import ctypes
import functools

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
    libc.mallopt(_M_TRIM_THRESHOLD, 128 * 2**20)


def release_freed_memory(above_mib: float = 0) -> None:
    """Give the kernel the freed memory the heaps keep for reuse (glibc's ``malloc_trim``),
    if they keep more than ``above_mib``.

    Kept for the next tile, it is of no use to what comes next: a job's products, or the
    next job on a worker, whose arrays have other sizes. After the tiles of the GeoTIFF
    scene's NDVI + NDSI (``bench/executors.py``-style, all products) the heaps kept 290 MiB
    free, on top of which the PNG's read and GDAL's cache grew: the run peaked at 559 MiB,
    and at 403 MiB (its tile phase) with the memory given back first. A few milliseconds.

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
