"""Where one madrone run spends its time, stage by stage (plan, tiles, COG, products).

    python bench/stages.py bench/data/10980/gtiff [--products cog] [--tile-size N]

Wraps the engine's stage functions with timers; prints wall seconds per stage. Use it with
py-spy (``py-spy record --subprocesses``) for the per-function picture.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import madrone.engine.run as run
import madrone.products.writer as writer
from madrone.api import build_spec
from madrone.config import Settings
from madrone.engine.plan import plan
from madrone.executors.local import LocalExecutor

TIMES: dict[str, float] = defaultdict(float)


def timed(name: str, function: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("--index", default="ndvi")
    parser.add_argument("--products", default="cog")
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    run.run_plan = timed("run (everything after plan)", run.run_plan)
    run.RunSession.finish = timed("finish (all products)", run.RunSession.finish)
    writer.CogWriter.finish = timed("cog (overviews + encode)", writer.CogWriter.finish)
    run.merge_partials = timed("statistics merge", run.merge_partials)
    run.render_png = timed("png", run.render_png)
    run.render_legend = timed("legend", run.render_legend)
    run.build_item = timed("stac item", run.build_item)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        spec = build_spec([args.source], args.index.split(","), out,
                          products=args.products.split(","), tile_size=args.tile_size)  # fmt: skip
        checked = plan(spec)
        TIMES["plan"] = time.perf_counter() - started
        workers = settings.resolved_workers(args.workers or None)
        run.run_plan(checked, LocalExecutor(workers, settings.tiles_in_flight,
                     settings.gdal_cache_mb), threads=workers)  # fmt: skip
        total = time.perf_counter() - started
    print(f"{len(checked.tiles)} tiles of {checked.tile_size} px, {workers} workers")
    tiles = TIMES["run (everything after plan)"] - TIMES["finish (all products)"]
    print(f"{'tiles (decode, compute, stats, write raw)':<45} {tiles:6.2f} s")
    for name, seconds in TIMES.items():
        print(f"{name:<45} {seconds:6.2f} s")
    print(f"{'total':<45} {total:6.2f} s")


if __name__ == "__main__":
    main()
