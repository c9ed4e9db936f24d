"""Tile progress that survives the process: a log of finished tiles with their statistics
partials and reflectance counts, appended after each tile's pixels are written, so a
restarted run (or master) continues from the tiles already written instead of from zero.

The same JSON carries a tile's statistics over the wire from gRPC workers.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from madrone.engine.tile import TileResult
from madrone.errors import InputError
from madrone.grid import Tile
from madrone.products.stats import WindowKey, WindowStats
from madrone.sources.reflectance import ReflectanceCounts

Counts = dict[tuple[str, str], ReflectanceCounts]
Partials = dict[str, dict[WindowKey, WindowStats]]


def meta_to_json(result: TileResult) -> str:
    """A tile's reflectance counts and statistics partials as JSON (floats round-trip)."""
    counts = [
        {"scene": scene, "band": band, "valid": c.valid, "negative": c.negative,
         "far_above_one": c.far_above_one}
        for (scene, band), c in sorted(result.counts.items())
    ]  # fmt: skip
    stats = {
        name: [
            {"row": row, "col": col, "count": w.count, "mean": w.mean, "m2": w.m2,
             "min": w.minimum, "max": w.maximum, "below": w.below, "above": w.above,
             "counts": None if w.counts is None else [int(c) for c in w.counts]}
            for (row, col), w in sorted(windows.items())
        ]
        for name, windows in result.stats.items()
    }  # fmt: skip
    return json.dumps({"counts": counts, "stats": stats, "used": result.contributions})


def meta_from_json(text: str, task: str) -> tuple[Counts, Partials, dict[str, int]]:
    """Parse ``meta_to_json``'s output (counts, partials, pixels per source scene); bad
    input names the task."""
    try:
        meta = json.loads(text)
        counts = {
            (c["scene"], c["band"]): ReflectanceCounts(
                int(c["valid"]), int(c["negative"]), int(c["far_above_one"])
            )
            for c in meta["counts"]
        }
        stats = {
            name: {(int(w["row"]), int(w["col"])): _window(w) for w in windows}
            for name, windows in meta["stats"].items()
        }
        used = {str(scene): int(pixels) for scene, pixels in meta.get("used", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"task {task}: bad result metadata ({error})") from None
    return counts, stats, used


def _window(w: dict) -> WindowStats:
    histogram = None if w["counts"] is None else np.asarray(w["counts"], dtype=np.int64)
    return WindowStats(
        int(w["count"]), float(w["mean"]), float(w["m2"]), float(w["min"]), float(w["max"]),
        int(w["below"]), int(w["above"]), histogram,
    )  # fmt: skip


class ProgressLog:
    """Append-only log of finished tiles, one JSON line each; lines may be written from
    any thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    @staticmethod
    def line(result: TileResult) -> str:
        """The log line of a finished tile."""
        tile = result.tile
        line = {"tile": [tile.row_off, tile.col_off, tile.height, tile.width]}
        line["meta"] = meta_to_json(result)
        return json.dumps(line) + "\n"

    def write(self, line: str) -> None:
        with self._lock:
            self._handle.write(line)
            self._handle.flush()  # survives the process being killed (not a power cut)

    def close(self) -> None:
        self._handle.close()

    @staticmethod
    def load(path: str) -> list[tuple[Tile, Counts, Partials, dict[str, int]]]:
        """Finished tiles; a line cut short by a crash is ignored (that tile is redone)."""
        if not os.path.exists(path):
            return []
        finished = []
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                try:
                    line = json.loads(text)
                    tile = Tile(*(int(v) for v in line["tile"]))
                    meta = meta_from_json(line["meta"], tile.key)
                except (ValueError, KeyError, TypeError, InputError):
                    continue
                finished.append((tile, *meta))
        return finished
