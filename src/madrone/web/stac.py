"""A STAC API 1.0.0 over the catalog: landing page, conformance, collections, items and
search (GET and POST), so STAC clients (pystac-client, QGIS, STAC Browser) find datasets.

Collections: one per *kind* of dataset present in the catalog (``index``, ``geotiff``,
``image``, ``vector``, ``point``); the collection id is the kind. Its spatial extent is the
union of its datasets' bboxes (the whole world when one crosses the antimeridian) and its
temporal extent runs from the earliest start to the latest end of its dated datasets
(``null`` where nothing is known). A kind with undated datasets gets an open end and a start
no later than Sentinel-2A's launch, the range its undated items claim.

Items: one per dataset, id = the dataset id, geometry = its footprint. An undated dataset
follows products/stac.py: ``datetime: null``, ``"madrone:datetime": "unknown"`` and the
widest true range. A date search (``datetime``) leaves undated datasets out, as the catalog's
date filter does. Paging follows ``next`` links carrying the catalog's cursor as ``token``
(for ``ids`` searches the token is an offset into the sorted ids, prefixed ``ids:``).
Asset hrefs are the storage URLs as stored (for local folders, a file path).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from sqlalchemy import case, func, select

from madrone.catalog.datasets import MAX_LIMIT, DatasetQuery, get_dataset, search_datasets
from madrone.catalog.models import Dataset
from madrone.catalog.vocabulary import DATASET_KINDS
from madrone.errors import InputError, NotFoundError
from madrone.products.stac import UNKNOWN_DATE_END, UNKNOWN_DATE_PROPERTY, UNKNOWN_DATE_START
from madrone.web.app import app_catalog, require

blueprint = Blueprint("stac", __name__)

STAC_VERSION = "1.0.0"
CATALOG_ID = "madrone"
DEFAULT_LIMIT = 10
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
_GEOJSON = "application/geo+json"
_JSON = "application/json"
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
# Asset key -> (default media type, roles); the engine's keys and STAC's usual ones.
_ASSET_ROLES: dict[str, tuple[str, list[str]]] = {
    "cog": (_COG, ["data"]),
    "data": (_COG, ["data"]),
    "png": ("image/png", ["visual"]),
    "visual": ("image/png", ["visual"]),
    "legend": ("image/png", ["legend"]),
    "json": (_JSON, ["metadata"]),
    "metadata": (_JSON, ["metadata"]),
}


@blueprint.before_request
def _check_reader() -> None:
    require("viewer")


@blueprint.get("/", endpoint="landing_slash")
@blueprint.get("")
def landing() -> Response:
    """The landing page: what this API is and where everything lives."""
    links = [
        _link("self", url_for("stac.landing", _external=True), _JSON),
        _link("root", url_for("stac.landing", _external=True), _JSON),
        _link("conformance", url_for("stac.conformance", _external=True), _JSON),
        _link("data", url_for("stac.collections", _external=True), _JSON),
        _link("search", url_for("stac.search_get", _external=True), _GEOJSON, method="GET"),
        _link("search", url_for("stac.search_post", _external=True), _GEOJSON, method="POST"),
    ]
    links += [
        _link("child", url_for("stac.collection", collection_id=kind, _external=True), _JSON)
        for kind in _extents()
    ]
    return jsonify(
        {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": CATALOG_ID,
            "title": "madrone catalog",
            "description": "Sentinel-2 index mosaics and other datasets of a madrone catalog",
            "conformsTo": CONFORMANCE,
            "links": links,
        }
    )


@blueprint.get("/conformance")
def conformance() -> Response:
    return jsonify({"conformsTo": CONFORMANCE})


@blueprint.get("/collections")
def collections() -> Response:
    """Every kind of dataset the catalog holds, as a collection."""
    found = [_collection(kind, extent) for kind, extent in _extents().items()]
    links = [
        _link("self", url_for("stac.collections", _external=True), _JSON),
        _link("root", url_for("stac.landing", _external=True), _JSON),
    ]
    return jsonify({"collections": found, "links": links})


@blueprint.get("/collections/<collection_id>")
def collection(collection_id: str) -> Response:
    extents = _extents()
    if collection_id not in extents:
        raise NotFoundError(f"no collection {collection_id!r}")
    return jsonify(_collection(collection_id, extents[collection_id]))


@blueprint.get("/collections/<collection_id>/items")
def collection_items(collection_id: str) -> Response:
    """The items of one collection, filtered by ``bbox`` and ``datetime``, paged."""
    if collection_id not in _extents():
        raise NotFoundError(f"no collection {collection_id!r}")
    params = _params_from_args()
    params["collections"] = [collection_id]
    params.pop("ids", None)
    result = _search(params, request.args.get("token"))
    extra = [
        _link("collection", url_for("stac.collection", collection_id=collection_id, _external=True))
    ]
    return _feature_collection(result, _get_next_link(result[1]), extra)


@blueprint.get("/collections/<collection_id>/items/<item_id>")
def item(collection_id: str, item_id: str) -> Response:
    dataset = get_dataset(app_catalog(), item_id)
    if dataset.kind != collection_id:
        raise NotFoundError(f"no item {item_id!r} in collection {collection_id!r}")
    return Response(_json(dataset_to_item(dataset)), mimetype=_GEOJSON)


@blueprint.get("/search")
def search_get() -> Response:
    """Item search from query parameters; ``next`` links are GET links with ``token``."""
    result = _search(_params_from_args(), request.args.get("token"))
    return _feature_collection(result, _get_next_link(result[1]), [])


@blueprint.post("/search")
def search_post() -> Response:
    """Item search from a JSON body; ``next`` links repeat the body with ``token``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("the search body must be a JSON object")
    params = _params_from_body(body)
    result = _search(params, body.get("token"))
    following = None
    if result[1]:
        href = url_for("stac.search_post", _external=True)
        following = _link("next", href, _GEOJSON, method="POST")
        following.update(body={**body, "token": result[1]}, merge=False)
    return _feature_collection(result, following, [])


def dataset_to_item(dataset: Dataset) -> dict[str, Any]:
    """A dataset as a STAC Item (a plain dict), with links into this API."""
    collection_url = url_for("stac.collection", collection_id=dataset.kind, _external=True)
    self_url = url_for("stac.item", collection_id=dataset.kind, item_id=dataset.id, _external=True)
    assets = {key: _asset(key, value) for key, value in (dataset.assets or {}).items()}
    extensions = [FILE_SCHEMA] if any("file:size" in a for a in assets.values()) else []
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": dataset.id,
        "collection": dataset.kind,
        "geometry": dataset.footprint,
        "bbox": list(dataset.bbox),
        "properties": _item_properties(dataset),
        "links": [
            _link("self", self_url, _GEOJSON),
            _link("parent", collection_url, _JSON),
            _link("collection", collection_url, _JSON),
            _link("root", url_for("stac.landing", _external=True), _JSON),
        ],
        "assets": assets,
    }


def _item_properties(dataset: Dataset) -> dict[str, Any]:
    props: dict[str, Any] = {"title": dataset.name}
    if dataset.description:
        props["description"] = dataset.description
    start, end = dataset.date_start, dataset.date_end or dataset.date_start
    if start is None:
        props.update(datetime=None, start_datetime=UNKNOWN_DATE_START)
        props.update(end_datetime=UNKNOWN_DATE_END, **{UNKNOWN_DATE_PROPERTY: "unknown"})
    elif start == end:
        props["datetime"] = _stamp(start)
    else:
        props.update(datetime=None, start_datetime=_stamp(start), end_datetime=_stamp(end))
    props.update(
        {
            "created": _stamp(dataset.created_at),
            "updated": _stamp(dataset.updated_at),
            "madrone:kind": dataset.kind,
            "madrone:index": dataset.index_name,
            "madrone:expression": dataset.expression,
            "madrone:owner": dataset.owner,
            "madrone:scope": dataset.scope,
            "madrone:crs": dataset.crs,
            "madrone:resolution": dataset.resolution,
            "madrone:stats": dataset.stats or {},
        }
    )
    return {key: value for key, value in props.items() if value is not None or key == "datetime"}


def _asset(key: str, stored: dict[str, Any]) -> dict[str, Any]:
    media_type, roles = _ASSET_ROLES.get(key, (None, ["data"]))
    asset: dict[str, Any] = {"href": stored["href"], "roles": roles, "title": key}
    if stored.get("type") or media_type:
        asset["type"] = stored.get("type") or media_type
    if stored.get("size") is not None:
        asset["file:size"] = int(stored["size"])
    if stored.get("sha256"):
        asset["file:checksum"] = "1220" + stored["sha256"]  # multihash: sha2-256, 32 bytes
    return asset


def _search(params: dict[str, Any], token: str | None) -> tuple[list[Dataset], str | None]:
    """One page of datasets for STAC search ``params`` and the token of the next page."""
    limit = params["limit"]
    kinds = params.get("collections")
    if params.get("ids") is not None:
        return _search_ids(params, token)
    if kinds is not None:
        kinds = [kind for kind in kinds if kind in DATASET_KINDS]
        if not kinds:
            return [], None
    query = DatasetQuery(
        bbox=params.get("bbox"),
        start=params.get("start"),
        end=params.get("end"),
        kind=kinds[0] if kinds and len(kinds) == 1 else None,
        limit=limit,
        cursor=token or None,
    )
    if not kinds or len(kinds) == 1:
        page = search_datasets(app_catalog(), query)
        return page.items, page.next_cursor
    # Several collections: whole catalog pages, each consumed to its end, so the cursor
    # of the last one is exactly where the next page starts.
    found: list[Dataset] = []
    cursor = query.cursor
    while True:
        wanted = DatasetQuery(**{**query.__dict__, "limit": limit - len(found), "cursor": cursor})
        page = search_datasets(app_catalog(), wanted)
        found += [dataset for dataset in page.items if dataset.kind in kinds]
        cursor = page.next_cursor
        if cursor is None or len(found) >= limit:
            return found, cursor


def _search_ids(params: dict[str, Any], token: str | None) -> tuple[list[Dataset], str | None]:
    ids = sorted(set(params["ids"]))
    if len(ids) > MAX_LIMIT:
        raise InputError(f"at most {MAX_LIMIT} ids in one search, got {len(ids)}")
    offset = 0
    if token:
        if not token.startswith("ids:") or not token[4:].isdigit():
            raise InputError(f"token {token[:40]!r} is not one this search gave")
        offset = int(token[4:])
    found = []
    for dataset_id in ids:
        try:
            dataset = get_dataset(app_catalog(), dataset_id)
        except NotFoundError:
            continue
        if _matches(dataset, params):
            found.append(dataset)
    end = offset + params["limit"]
    return found[offset:end], f"ids:{end}" if end < len(found) else None


def _matches(dataset: Dataset, params: dict[str, Any]) -> bool:
    """The search's filters on one dataset, as the catalog applies them."""
    kinds = params.get("collections")
    if kinds is not None and dataset.kind not in kinds:
        return False
    start, end = params.get("start"), params.get("end")
    if start or end:
        if dataset.date_start is None:
            return False
        if end and dataset.date_start > end:
            return False
        if start and (dataset.date_end or dataset.date_start) < start:
            return False
    bbox = params.get("bbox")
    if bbox is None:
        return True
    return _spans_overlap(_spans(bbox[0], bbox[2]), _spans(dataset.west, dataset.east)) and (
        dataset.south <= bbox[3] and dataset.north >= bbox[1]
    )


def _spans(west: float, east: float) -> list[tuple[float, float]]:
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def _spans_overlap(a: Iterable[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    return any(w1 <= e2 and w2 <= e1 for w1, e1 in a for w2, e2 in b)


def _params_from_args() -> dict[str, Any]:
    args = request.args
    return _params(
        bbox=args.get("bbox"),
        when=args.get("datetime"),
        ids=args.get("ids"),
        collections=args.get("collections"),
        limit=args.get("limit"),
        intersects=args.get("intersects"),
    )


def _params_from_body(body: dict[str, Any]) -> dict[str, Any]:
    return _params(
        bbox=body.get("bbox"),
        when=body.get("datetime"),
        ids=body.get("ids"),
        collections=body.get("collections"),
        limit=body.get("limit"),
        intersects=body.get("intersects"),
    )


def _params(*, bbox, when, ids, collections, limit, intersects) -> dict[str, Any]:
    """Search parameters checked and parsed, from either query strings or JSON values."""
    if intersects is not None:
        raise InputError("intersects is not supported; search with a bbox")
    params: dict[str, Any] = {"limit": _parse_limit(limit)}
    if bbox is not None:
        params["bbox"] = _parse_bbox(bbox)
    if when:
        params["start"], params["end"] = parse_datetime(when)
    if ids is not None:
        params["ids"] = _parse_list(ids, "ids")
    if collections is not None:
        params["collections"] = _parse_list(collections, "collections")
    return params


def _parse_limit(limit: Any) -> int:
    if limit is None or limit == "":
        return DEFAULT_LIMIT
    try:
        value = int(limit)
    except (TypeError, ValueError):
        raise InputError(f"limit must be a whole number, got {limit!r}") from None
    if value < 1:
        raise InputError(f"limit must be at least 1, got {value}")
    return min(value, MAX_LIMIT)  # STAC: a larger limit gets the largest page served


def _parse_bbox(bbox: Any) -> tuple[float, float, float, float]:
    values = bbox.split(",") if isinstance(bbox, str) else bbox
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise InputError(f"bbox must be numbers west,south,east,north, got {bbox!r}") from None
    if len(numbers) == 6:  # 3D: west, south, low, east, north, high
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4:
        raise InputError(f"bbox must have 4 (or 6) numbers, got {len(numbers)}")
    west, south, east, north = numbers
    return (west, south, east, north)


def _parse_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return list(value)
    raise InputError(f"{name} must be a list of strings, got {value!r}")


def parse_datetime(value: str) -> tuple[datetime | None, datetime | None]:
    """A STAC ``datetime``: one instant, ``start/end``, or an open range (``..`` or empty
    on one side). A bare date stands for its whole day."""
    if not isinstance(value, str):
        raise InputError(f"datetime must be a string, got {value!r}")
    if "/" not in value:
        return _instant(value, end_of_day=False), _instant(value, end_of_day=True)
    first, _, last = value.partition("/")
    start = None if first in ("", "..") else _instant(first, end_of_day=False)
    end = None if last in ("", "..") else _instant(last, end_of_day=True)
    if start and end and start > end:
        raise InputError(f"datetime {value!r} ends before it starts")
    return start, end


def _instant(text: str, *, end_of_day: bool) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"datetime {text!r} is not RFC 3339 (or a date)") from None
    if len(text.strip()) == 10:  # a bare date
        moment = datetime.combine(moment.date(), time.max if end_of_day else time.min)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _extents() -> dict[str, dict[str, Any]]:
    """Per kind present: the union bbox, dated range, and whether some are undated."""
    statement = select(
        Dataset.kind,
        func.min(Dataset.west),
        func.min(Dataset.south),
        func.max(Dataset.east),
        func.max(Dataset.north),
        func.min(Dataset.date_start),
        func.max(func.coalesce(Dataset.date_end, Dataset.date_start)),
        func.count(Dataset.id) - func.count(Dataset.date_start),
        func.sum(case((Dataset.west > Dataset.east, 1), else_=0)),
    ).group_by(Dataset.kind)
    with app_catalog().session() as session:
        rows = list(session.execute(statement))
    extents = {}
    for kind, west, south, east, north, first, last, undated, crossing in sorted(rows):
        if crossing:
            west, east = -180.0, 180.0
        start, end = _aware(first), _aware(last)
        if undated:
            launch = _instant(UNKNOWN_DATE_START, end_of_day=False)
            start, end = min(start or launch, launch), None
        extents[kind] = {"bbox": [west, south, east, north], "interval": [start, end]}
    return extents


def _aware(value: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type, so SQLite hands back naive text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _collection(kind: str, extent: dict[str, Any]) -> dict[str, Any]:
    own = url_for("stac.collection", collection_id=kind, _external=True)
    root = url_for("stac.landing", _external=True)
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": kind,
        "title": f"madrone {kind} datasets",
        "description": f"Every dataset of kind {kind!r} in this madrone catalog",
        "license": "various",
        "extent": {
            "spatial": {"bbox": [extent["bbox"]]},
            "temporal": {"interval": [[_stamp(moment) for moment in extent["interval"]]]},
        },
        "links": [
            _link("self", own, _JSON),
            _link("root", root, _JSON),
            _link("parent", root, _JSON),
            _link("items", own + "/items", _GEOJSON),
        ],
    }


def _feature_collection(
    result: tuple[list[Dataset], str | None], following: dict | None, extra: list[dict]
) -> Response:
    items = [dataset_to_item(dataset) for dataset in result[0]]
    links = [_link("self", request.url, _GEOJSON), *extra]
    links.append(_link("root", url_for("stac.landing", _external=True), _JSON))
    if following:
        links.append(following)
    body = {
        "type": "FeatureCollection",
        "features": items,
        "links": links,
        "numberReturned": len(items),
    }
    return Response(_json(body), mimetype=_GEOJSON)


def _get_next_link(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    args = {key: value for key, value in request.args.items() if key != "token"}
    values = {**args, **(request.view_args or {}), "token": token}
    href = url_for(request.endpoint or "stac.search_get", **values, _external=True)
    return _link("next", href, _GEOJSON, method="GET")


def _link(rel: str, href: str, media_type: str | None = None, **extra: Any) -> dict[str, Any]:
    link: dict[str, Any] = {"rel": rel, "href": href}
    if media_type:
        link["type"] = media_type
    link.update(extra)
    return link


def _stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)
