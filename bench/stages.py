"""Where one madrone run spends its time, stage by stage: wall and CPU seconds.

    python bench/stages.py bench/data/10980/gtiff [--products cog,png,legend,json]
                           [--tile-size N] [--workers N]

Wraps the engine's stage functions with timers. CPU is this process's (every thread: GDAL's
encoding threads too) per stage, plus, for the tiles stage, the pool's workers (read from
the fork server, which reaps them). The codec and level are madrone's settings
(MADRONE_COG_CODEC, MADRONE_COG_ZLEVEL). Use it with py-spy
(``py-spy record --subprocesses``) for the per-function picture.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import psutil

import madrone.engine.run as run
import madrone.products.writer as writer
from madrone.api import build_spec
from madrone.config import Settings
from madrone.engine.plan import plan
from madrone.executors.local import LocalExecutor

WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    """CPU of every descendant, those already reaped by it included."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + usage.ru_utime + usage.ru_stime


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def timed(name: str, function: Callable, clock: Callable[[], float] = own_cpu) -> Callable:
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), clock()
        try:
            return function(*args, **kwargs)
        finally:
            WALL[name] += time.perf_counter() - wall
            CPU[name] += clock() - cpu

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("--index", default="ndvi")
    parser.add_argument("--products", default="cog")
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    run.run_plan = timed("run", run.run_plan)
    run.RunSession.finish = timed("finish", run.RunSession.finish)
    writer.CogWriter.prepare = timed("prepare", writer.CogWriter.prepare)
    run.RunSession._encode_and_draw = timed("encode", run.RunSession._encode_and_draw)
    # Drawn in a thread while the COG is encoded: that thread's own CPU.
    run.render_png = timed("png", run.render_png, thread_cpu)
    run.render_legend = timed("legend", run.render_legend, thread_cpu)
    run.merge_partials = timed("statistics merge", run.merge_partials)
    run.build_item = timed("stac item", run.build_item)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as out:
        wall, cpu = time.perf_counter(), own_cpu()
        spec = build_spec([args.source], args.index.split(","), out,
                          products=args.products.split(","), tile_size=args.tile_size)  # fmt: skip
        checked = plan(spec)
        WALL["plan"], CPU["plan"] = time.perf_counter() - wall, own_cpu() - cpu
        workers = settings.resolved_workers(args.workers or None)
        executor = LocalExecutor(
            workers, settings.tiles_in_flight, settings.gdal_cache_mb, pool=settings.pool
        )
        run.run_plan(checked, executor, threads=workers, zlevel=settings.cog_zlevel,
                     codec=settings.cog_codec, png_max_size=settings.png_max_size,
                     gdal_cache_mb=settings.gdal_cache_mb)  # fmt: skip
        total_wall, total_cpu = time.perf_counter() - wall, own_cpu() - cpu + children_cpu()
    pool = children_cpu()
    print(f"{len(checked.tiles)} tiles of {checked.tile_size} px, {workers} workers, "
          f"{settings.cog_codec.upper()} level {settings.cog_zlevel}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'stage':<48} {'wall s':>7} {'CPU s':>7}")
    rows = [
        ("plan", WALL["plan"], CPU["plan"]),
        ("tiles (decode, index, stats, levels, raw write)", WALL["run"] - WALL["finish"],
         CPU["run"] - CPU["finish"] + pool),
    ]  # fmt: skip
    drawing = CPU["png"] + CPU["legend"]
    rows += [
        ("overview VRTs (levels made with the tiles)", WALL["prepare"], CPU["prepare"]),
        ("COG encode (PNG and legend drawn meanwhile)", WALL["encode"] - WALL["prepare"],
         CPU["encode"] - CPU["prepare"] - drawing),
        ("  of which PNG (its thread)", WALL["png"], CPU["png"]),
        ("  of which legend (its thread)", WALL["legend"], CPU["legend"]),
        ("statistics merge", WALL["statistics merge"], CPU["statistics merge"]),
        ("stac item", WALL["stac item"], CPU["stac item"]),
    ]  # fmt: skip
    rows.append(("total", total_wall, total_cpu))
    for name, seconds, cpu_seconds in rows:
        print(f"{name:<48} {seconds:7.2f} {cpu_seconds:7.2f}")


if __name__ == "__main__":
    main()
