"""Synthetic catalog contents for bench/catalog.py: queued jobs, dataset footprints clustered
like Sentinel-2 tiles over land, query boxes where the data is, and bulk loads.

Footprints: 1,500 one-degree "tiles" (MGRS-like cells on a one-degree grid) drawn inside
rough land boxes, each with a lognormal popularity, so a few tiles hold hundreds of datasets
and most a few dozen. A dataset is a box 0.01 to 1 degree across (log-uniform, aspect 0.7 to
1.4) lying inside its tile. Queries are boxes 0.1 to 2 degrees across (log-uniform) centred
on a random dataset, so they fall where the data is, as a map user's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import insert, text

from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset, Job, new_id

# (west, south, east, north, weight): rough land boxes, weighted by how much imagery they get.
LAND = (
    (-10.0, 36.0, 30.0, 60.0, 3.0),  # Europe
    (-125.0, 25.0, -70.0, 50.0, 2.5),  # North America
    (-75.0, -35.0, -40.0, 5.0, 1.5),  # South America
    (-15.0, -30.0, 40.0, 30.0, 2.0),  # Africa
    (60.0, 10.0, 135.0, 50.0, 2.5),  # Asia
    (115.0, -38.0, 150.0, -15.0, 1.0),  # Australia
)
TILES = 1500
INDICES = ("ndvi", "ndsi", "ndwi", "evi", "savi")
OWNERS = tuple(f"user{n:02d}" for n in range(20))
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 5000


@dataclass(frozen=True)
class Footprints:
    """Dataset boxes as arrays in degrees (one entry per dataset)."""

    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray

    def __len__(self) -> int:
        return len(self.west)

    def count_meeting(self, box: tuple[float, float, float, float]) -> int:
        """How many footprints meet ``box`` (W, S, E, N), edges included."""
        west, south, east, north = box
        hit = (
            (self.east >= west)
            & (self.west <= east)
            & (self.north >= south)
            & (self.south <= north)
        )
        return int(hit.sum())


def tile_centres(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (x, y) of the one-degree tiles and each tile's share of the datasets."""
    boxes = np.array([box[:4] for box in LAND])
    weights = np.array([box[4] for box in LAND])
    which = rng.choice(len(LAND), size=TILES, p=weights / weights.sum())
    west, south, east, north = boxes[which].T
    x = np.floor(rng.uniform(west, east)) + 0.5
    y = np.floor(rng.uniform(south, north)) + 0.5
    share = rng.lognormal(0.0, 1.0, size=TILES)
    return x, y, share / share.sum()


def make_footprints(count: int, seed: int) -> Footprints:
    """``count`` dataset boxes clustered in tiles (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x, y, share = tile_centres(rng)
    tile = rng.choice(TILES, size=count, p=share)
    height = np.exp(rng.uniform(np.log(0.01), np.log(1.0), size=count))
    width = np.clip(height * rng.uniform(0.7, 1.4, size=count), 0.01, 1.0)
    cx = x[tile] + rng.uniform(-0.5, 0.5, size=count) * (1.0 - width)
    cy = y[tile] + rng.uniform(-0.5, 0.5, size=count) * (1.0 - height)
    return Footprints(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)


def query_boxes(footprints: Footprints, count: int, seed: int) -> list[tuple[float, ...]]:
    """``count`` query boxes 0.1 to 2 degrees across, each centred on a random dataset."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(footprints), size=count)
    cx = (footprints.west[pick] + footprints.east[pick]) / 2
    cy = (footprints.south[pick] + footprints.north[pick]) / 2
    height = np.exp(rng.uniform(np.log(0.1), np.log(2.0), size=count))
    width = height * rng.uniform(0.7, 1.4, size=count)
    return [
        (float(x - w / 2), float(y - h / 2), float(x + w / 2), float(y + h / 2))
        for x, y, w, h in zip(cx, cy, width, height, strict=True)
    ]


def _dataset_row(n: int, box: tuple[float, float, float, float], rng: Any) -> dict[str, Any]:
    west, south, east, north = box
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    created = EPOCH + timedelta(seconds=n)
    acquired = EPOCH - timedelta(days=int(rng.integers(0, 900)))
    index = INDICES[n % len(INDICES)]
    dataset_id = new_id()
    zone = int((west + east) / 2 + 180) // 6 + 1
    return {
        "id": dataset_id,
        "name": f"{index}-{n:06d}",
        "description": f"synthetic {index.upper()} product {n}",
        "kind": "index",
        "index_name": index,
        "expression": None,
        "footprint": {"type": "Polygon", "coordinates": [ring]},
        "west": west,
        "south": south,
        "east": east,
        "north": north,
        "crs": f"EPSG:{32600 + zone if south >= 0 else 32700 + zone}",
        "resolution": 10.0,
        "date_start": acquired,
        "date_end": acquired,
        "assets": {"cog": {"href": f"s3://madrone-bench/{dataset_id}.tif", "size": 1 << 20}},
        "stats": {},
        "properties": {},
        "owner": OWNERS[n % len(OWNERS)],
        "scope": "shared",
        "job_id": None,
        "shared_from": None,
        "created_at": created,
        "updated_at": created,
    }


def dataset_batches(footprints: Footprints, seed: int) -> Iterator[list[dict[str, Any]]]:
    """Rows of the datasets table for every footprint, ``BATCH`` at a time."""
    rng = np.random.default_rng(seed + 1)
    for start in range(0, len(footprints), BATCH):
        stop = min(start + BATCH, len(footprints))
        yield [
            _dataset_row(
                n,
                (
                    float(footprints.west[n]),
                    float(footprints.south[n]),
                    float(footprints.east[n]),
                    float(footprints.north[n]),
                ),
                rng,
            )
            for n in range(start, stop)
        ]


def load_datasets(catalog: Catalog, footprints: Footprints, seed: int) -> None:
    """Bulk insert the datasets (Core executemany, one transaction per batch; the spatial
    index follows through the migrations' triggers), then ANALYZE."""
    table = Dataset.__table__
    for rows in dataset_batches(footprints, seed):
        with catalog.engine.begin() as connection:
            connection.execute(insert(table), rows)
    analyze(catalog)


def load_jobs(catalog: Catalog, count: int) -> None:
    """Bulk insert ``count`` queued jobs, oldest first, then ANALYZE."""
    table = Job.__table__
    for start in range(0, count, BATCH):
        rows = [_job_row(n) for n in range(start, min(start + BATCH, count))]
        with catalog.engine.begin() as connection:
            connection.execute(insert(table), rows)
    analyze(catalog)


def _job_row(n: int) -> dict[str, Any]:
    return {
        "id": new_id(),
        "idempotency_key": None,
        "kind": "process",
        "name": f"bench-{n:06d}",
        "spec": {"bench": n},
        "status": "queued",
        "tiles_done": 0,
        "tiles_total": 0,
        "attempts": 0,
        "max_attempts": 3,
        "errors": [],
        "cancel_requested": False,
        "priority": 0,
        "created_at": EPOCH + timedelta(milliseconds=n),
    }


def analyze(catalog: Catalog) -> None:
    """Fresh planner statistics (PostgreSQL) or sqlite_stat1 (SQLite) after a bulk load."""
    with catalog.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
