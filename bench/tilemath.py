"""Per-tile CPU of the engine's pixel math, single-threaded: the NDVI on digital numbers
(``evaluate_dn``), the statistics partials (``window_partials``) and the reflectance tally
(``ReflectanceCounts.add_dn``, on stored uint16 DN and on resampled float32 DN with NaN),
each on one realistic 1024 x 1024 tile.

    python bench/tilemath.py [--size 1024] [--repeat 30]

The tile: uint16 DN 0..10000 with offset -1000 and scale 1e-4, about 3 % nodata 0 and a few
saturated 65535, so the NDVI has NaN where a band is nodata or the sum of reflectances is 0.
Prints the best and the median of ``--repeat`` runs, in milliseconds: a few seconds in all.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numexpr
import numpy as np

from madrone.expression import DnBand, compile_expression, evaluate_dn
from madrone.products.stats import histogram_edges, window_partials
from madrone.sources.reflectance import ReflectanceCounts

BAND = DnBand(offset=-1000.0, scale=1e-4, invalid=(0, 65535))


def tile_dn(size: int, seed: int) -> dict[str, np.ndarray]:
    """Red and NIR DN: parcels of constant mean plus noise, a nodata swath and saturation."""
    rng = np.random.default_rng(seed)
    parcels = rng.integers(0, 64, (size // 32 + 1, size // 32 + 1))
    base = np.kron(parcels, np.ones((32, 32), dtype=np.int64))[:size, :size]
    red = np.clip(1000 + 30 * base + rng.normal(0, 150, (size, size)), 0, 10000)
    nir = np.clip(1500 + 120 * base + rng.normal(0, 300, (size, size)), 0, 10000)
    dn = {"B04": red.astype(np.uint16), "B08": nir.astype(np.uint16)}
    swath = np.add.outer(np.arange(size), np.arange(size)) < size // 4  # 3 % of the tile
    for array in dn.values():
        array[swath] = 0
        array[rng.random((size, size)) < 1e-3] = 65535
    return dn


def best_and_median(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Milliseconds of CPU per call: the best and the median of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append((time.process_time() - start) * 1000)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    numexpr.set_num_threads(1)
    dn = tile_dn(args.size, seed=1)
    compiled = compile_expression("(B08-B04)/(B08+B04)")
    bands = {name: BAND for name in dn}
    ndvi = evaluate_dn(compiled, dn, bands)
    warped = np.where(dn["B08"] == 0, np.float32(np.nan), dn["B08"].astype(np.float32))
    edges = histogram_edges((-1.0, 1.0))
    grid = (10980, 10980)
    print(f"tile {args.size}², NaN {np.isnan(ndvi).mean():.1%}, best / median ms CPU")
    cases = {
        "evaluate_dn": lambda: evaluate_dn(compiled, dn, bands),
        "window_partials": lambda: window_partials(ndvi, 0, 0, grid, edges),
        "add_dn uint16": lambda: ReflectanceCounts().add_dn(dn["B08"], BAND),
        "add_dn float32": lambda: ReflectanceCounts().add_dn(warped, DnBand(-1000.0, 1e-4)),
    }
    for name, run in cases.items():
        best, median = best_and_median(run, args.repeat)
        print(f"{name:16s} {best:7.2f} {median:7.2f}")


if __name__ == "__main__":
    main()
