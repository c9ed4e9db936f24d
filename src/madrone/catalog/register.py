"""From a finished run to catalog rows: one Dataset per index, described by the product's
own STAC item (footprint, projection, dates, statistics) and pointing at the stored files.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from madrone.catalog.models import Dataset, Job, utc_now
from madrone.engine.run import IndexProducts, RunResult

_NAMESPACE = uuid.UUID("6d2b8a64-0f5e-4d7a-9a43-1c1f6e0c9b7e")
UNKNOWN_DATE = "madrone:datetime"


def dataset_id_for(job_id: str, index: str) -> str:
    """The same job and index always give the same dataset id, so a job run twice after a
    crash cannot register two datasets for one product."""
    return uuid.uuid5(_NAMESPACE, f"{job_id}/{index}").hex


def datasets_from_run(
    result: RunResult, stored: Sequence[Any], *, job: Job, scope: str
) -> list[Dataset]:
    """Datasets for every index product of ``result``; ``stored`` are the uploaded files
    (``StoredAsset`` values whose ``key`` ends with the file's name)."""
    by_name = {os.path.basename(asset.key): asset for asset in stored}
    datasets = []
    for index, product in result.products.items():
        if "json" not in product.files:
            raise ValueError(f"product {index} has no STAC item to describe it")
        with open(product.files["json"], encoding="utf-8") as handle:
            item = json.load(handle)
        datasets.append(_dataset(index, product, item, by_name, job, scope))
    return datasets


def _dataset(
    index: str, product: IndexProducts, item: dict, by_name: dict, job: Job, scope: str
) -> Dataset:
    props = item.get("properties", {})
    start, end = _dates(props)
    west, south, east, north = item["bbox"][:4]
    assets = {}
    for key, path in product.files.items():
        asset = by_name[os.path.basename(path)]
        assets[key] = {
            "href": asset.url,
            "size": asset.size,
            "sha256": asset.sha256,
            "type": asset.media_type,
        }
    now = utc_now()
    return Dataset(
        id=dataset_id_for(job.id, index),
        name=f"{job.name} {index}",
        description=props.get("description") or "",
        kind="index",
        index_name=index,
        expression=(props.get("madrone:index") or {}).get("formula"),
        footprint=item["geometry"],
        west=west,
        south=south,
        east=east,
        north=north,
        crs=_crs(props),
        resolution=_resolution(props),
        date_start=start,
        date_end=end,
        assets=assets,
        stats=product.stats,
        properties={
            "stac_id": item.get("id"),
            "long_name": (props.get("madrone:index") or {}).get("long_name"),
            "method": props.get("madrone:method"),
            "warnings": props.get("madrone:warnings", []),
        },
        owner=job.requester or "unknown",
        scope=scope,
        job_id=job.id,
        created_at=now,
        updated_at=now,
    )


def _dates(props: dict) -> tuple[datetime | None, datetime | None]:
    if props.get(UNKNOWN_DATE) == "unknown":
        return None, None
    moment = props.get("datetime")
    start = props.get("start_datetime") or moment
    end = props.get("end_datetime") or moment
    return _parse(start), _parse(end)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _crs(props: dict) -> str | None:
    if props.get("proj:code"):
        return props["proj:code"]
    if props.get("proj:epsg"):
        return f"EPSG:{props['proj:epsg']}"
    return None


def _resolution(props: dict) -> float | None:
    transform = props.get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    return props.get("gsd")
