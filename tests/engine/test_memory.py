"""The allocator settings of a process that runs tiles, and the memory given back between
phases (tests in a fresh interpreter: they change process-wide glibc settings)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import os, numpy as np
from madrone.engine.memory import release_freed_memory, reuse_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

reuse_freed_memory()
blocks = [np.ones(2**18) for _ in range(150)]  # 2 MiB each: in the heap, not mmapped
last = blocks[-1]  # at the heap's top, so freeing the rest cannot shrink it from there
del blocks
kept = rss_mib()
{action}
print(kept, rss_mib())
"""


def rss_before_and_after(action: str) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(action=action)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    before, after = map(float, done.stdout.split())
    return before, after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_tile_memory_is_kept_for_reuse_then_given_back() -> None:
    kept, still = rss_before_and_after("pass")
    assert kept > 300  # the 298 MiB freed stayed with the process, for the next tile's arrays
    assert still > 300
    kept, released = rss_before_and_after("release_freed_memory()")
    assert kept > 300
    assert released < kept - 250


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_worker_gives_back_only_what_passes_its_allowance() -> None:
    kept, still = rss_before_and_after("release_freed_memory(above_mib=400)")
    assert still > 300  # 298 MiB free is within a 400 MiB allowance: kept for reuse
    kept, released = rss_before_and_after("release_freed_memory(above_mib=100)")
    assert released < kept - 250


CYCLE = """
import contextlib, os, numpy as np
from madrone.engine.memory import returning_freed_memory, reuse_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def held_after_a_tile():
    base = rss_mib()
    blocks = [np.ones(2**18) for _ in range(50)]  # 2 MiB each: in the heap, not mmapped
    del blocks  # all of it, from the heap's top down
    return rss_mib() - base

reuse_freed_memory()
assert held_after_a_tile() > 80  # kept at the heap's top, for the next tile's arrays
jobs = [returning_freed_memory(), returning_freed_memory()]  # two jobs making products
with contextlib.ExitStack() as first:
    first.enter_context(jobs[0])
    with jobs[1]:
        both = held_after_a_tile()
    one = held_after_a_tile()  # the other job is still making its products
print(both, one, held_after_a_tile())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_memory_freed_while_products_are_made_goes_back_until_the_last_job_is_done() -> None:
    done = subprocess.run([sys.executable, "-c", CYCLE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    both, one, after = map(float, done.stdout.split())
    assert both < 20 and one < 20  # 100 MiB freed while products are made: given back
    assert after > 80  # the last job done, freed memory is kept for the next tiles again
