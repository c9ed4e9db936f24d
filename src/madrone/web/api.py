"""The REST API (JSON only), registered at ``/api``: who am I, search, show, download,
share and delete datasets, uploads, point values, submit (or only check), follow and cancel
jobs, the sources and indices a request may name, and the OpenAPI document of it all.

Reads need a viewer (or nobody when ``MADRONE_PUBLIC_READ`` is set); writes need an editor.
A request may read only what the site offers: a ``source`` among the configured ones, no
server paths (``sources``, ``bands``) unless the caller is an admin. Every error is
``{"error": {"status", "type", "message"}}`` (``app.py``).
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
import unicodedata
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from madrone import team
from madrone.catalog.datasets import dataset_to_dict, delete_dataset
from madrone.catalog.models import Dataset, User
from madrone.catalog.queue import job_to_dict
from madrone.errors import (
    AccessDeniedError,
    ConflictError,
    InputError,
    NotFoundError,
    StorageError,
)
from madrone.storage import Storage
from madrone.web import uploads
from madrone.web.app import (
    app_catalog,
    app_central_catalog,
    app_settings,
    caller,
    error_body,
    find_dataset,
    require,
)
from madrone.web.openapi import (
    AREA_FIELDS,
    COMMON_FIELDS,
    PROCESS_FIELDS,
    check_value,
    openapi_document,
)

blueprint = Blueprint("api", __name__)

_TRUE = ("1", "true", "yes")
MAX_VALUE_IDS = 50
SAMPLE_SOURCE_LABEL = "Sample mosaic (bundled with madrone)"
# Dataset kinds with a raster a point value is read from (``tiles.py``).
RASTER_KINDS = ("index", "geotiff")


@blueprint.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
    from flask import current_app

    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return error_body(413, uploads.upload_limit_message(limit), "RequestEntityTooLarge")


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.0 document of this API (open to everyone)."""
    return jsonify(openapi_document())


@blueprint.get("/docs")
def docs() -> str:
    """A browsable page of the OpenAPI document (open to everyone, as the document is)."""
    return render_template("apidocs.html", user=caller())


@blueprint.get("/me")
def me() -> Response:
    """The caller (null when anonymous), whether the site reads publicly and whether it
    has a central catalog: what a page needs to decide what to offer."""
    user = caller()
    return jsonify({
        "user": {"name": user.name, "role": user.role} if user else None,
        "public_read": bool(app_settings().public_read),
        "central": app_central_catalog() is not None,
    })  # fmt: skip


# -- datasets -------------------------------------------------------------------------------
@blueprint.get("/datasets")
def list_datasets() -> Response:
    """Datasets matching the query arguments, a page at a time (``next_cursor``), of the
    local catalog or (``catalog=shared``) the central one."""
    require("viewer")
    args = request.args
    query = team.dataset_query(
        bbox=_floats(args.get("bbox"), "bbox", 4),
        index=args.get("index") or None,
        owner=args.get("owner") or None,
        text=args.get("q") or None,
        date_from=args.get("from"),
        date_to=args.get("to"),
        sort=args.get("sort", "created"),
        ascending=args.get("asc", "").lower() in _TRUE,
        limit=_integer(args.get("limit"), "limit", 50),
        cursor=args.get("cursor") or None,
        kind=args.get("kind") or None,
    )
    if args.get("job"):
        query = replace(query, job_id=args["job"])
    return jsonify(team.page_to_dict(team.find_datasets(_catalog_named(args), query)))


@blueprint.get("/datasets/<dataset_id>")
def show_dataset(dataset_id: str) -> Response:
    """One dataset from the local catalog, else the central one."""
    require("viewer")
    dataset, _ = find_dataset(dataset_id)
    return jsonify(dataset_to_dict(dataset))


@blueprint.delete("/datasets/<dataset_id>")
def remove_dataset(dataset_id: str) -> Response:
    """Remove a dataset (its owner or an admin, with the editor role): its catalog row,
    then its files in storage. Returns the dataset as it was."""
    user = require("editor")
    dataset, central = find_dataset(dataset_id)
    _check_owner(user, dataset.owner, f"dataset {dataset_id!r}")
    gone = dataset_to_dict(dataset)
    delete_dataset(app_central_catalog() if central else app_catalog(), dataset_id)
    with _storage_of(dataset, central) as storage:
        urls = [href for href in _hrefs(dataset) if _in_storage(storage, href)]
        try:
            storage.remove(urls)
        except StorageError as error:
            raise StorageError(
                f"dataset {dataset_id!r} is removed from the catalog, but some of its files "
                f"are not: {error}",
                error.leftover,
            ) from error
    return jsonify(gone)


@blueprint.get("/datasets/<dataset_id>/assets/<key>")
def download_asset(dataset_id: str, key: str) -> Response:
    """One asset of a dataset, streamed from storage as an attachment named after the
    dataset (``<name slug>.<extension>``)."""
    require("viewer")
    dataset, central = find_dataset(dataset_id)
    asset = dataset.assets.get(key)
    if not isinstance(asset, dict) or not asset.get("href"):
        known = ", ".join(sorted(dataset.assets)) or "none"
        raise NotFoundError(f"dataset {dataset_id!r} has no asset {key!r} (its assets: {known})")
    href = str(asset["href"])
    extension = posixpath.splitext(href)[1].lower()
    media = asset.get("type") or mimetypes.guess_type(href)[0] or "application/octet-stream"
    storage = _storage_of(dataset, central)
    try:
        handle = storage.open(href)
    except BaseException:
        storage.close()
        raise
    response = send_file(
        handle,
        mimetype=media,
        as_attachment=True,
        download_name=safe_filename(dataset.name, extension),
        max_age=0,
    )
    if isinstance(asset.get("size"), int):
        response.content_length = asset["size"]
    response.call_on_close(storage.close)
    return response


@blueprint.post("/datasets/<dataset_id>/share")
def share_dataset(dataset_id: str) -> tuple[Response, int]:
    """Share a local dataset to the central catalog (its owner or an admin, editor role):
    201 with the central dataset, 200 with the one made before."""
    from madrone.catalog.share import find_shared_copy

    user = require("editor")
    central = app_central_catalog()
    if central is None:
        raise ConflictError(
            "this site has no central catalog to share to (MADRONE_CENTRAL_DB_URL is not set)"
        )
    dataset, from_central = find_dataset(dataset_id)
    if from_central:
        raise ConflictError(f"dataset {dataset_id!r} is in the central catalog already")
    existed = find_shared_copy(central, dataset.id) is not None
    shared = team.share(app_catalog(), central, dataset_id, user=user, settings=app_settings())
    return jsonify(dataset_to_dict(shared)), 200 if existed else 201


# -- uploads and point values ---------------------------------------------------------------
@blueprint.post("/uploads")
def upload() -> tuple[Response, int]:
    """A file (``file``: GeoTIFF, PNG/JPEG with ``corners``, GeoJSON) or, with
    ``kind=point``, a point (``lat``, ``lon``), with ``name`` and ``description``: 201 with
    the new dataset (editor role)."""
    user = require("editor")
    form = request.form
    if form.get("kind") == "point":
        if "file" in request.files:
            raise InputError("a point takes no file: send kind=point with lat and lon only")
        dataset = uploads.add_point(app_catalog(), form, owner=user.name)
        return jsonify(dataset_to_dict(dataset)), 201
    upload_file = request.files.get("file")
    if upload_file is None:
        raise InputError("give a file (multipart field 'file'), or kind=point with lat and lon")
    with Storage.from_settings(app_settings()) as storage:
        dataset = uploads.add_upload(app_catalog(), storage, upload_file, form, owner=user.name)
    return jsonify(dataset_to_dict(dataset)), 201


@blueprint.get("/values")
def values() -> Response:
    """The value at ``lon``, ``lat`` of each raster dataset of ``ids`` (null: nodata or
    outside); datasets of other kinds are left out."""
    from madrone.web.tiles import point_value, query_coordinate

    require("viewer")
    lon = query_coordinate("lon", 180.0)
    lat = query_coordinate("lat", 90.0)
    ids = [part.strip() for part in request.args.get("ids", "").split(",") if part.strip()]
    if len(ids) > MAX_VALUE_IDS:
        raise InputError(f"ids: at most {MAX_VALUE_IDS} datasets at a time, got {len(ids)}")
    found = []
    for dataset_id in dict.fromkeys(ids):
        dataset, central = find_dataset(dataset_id)
        if dataset.kind not in RASTER_KINDS:
            continue
        found.append({
            "id": dataset.id,
            "name": dataset.name,
            "index": dataset.index_name,
            "value": point_value(dataset, central, lon, lat),
            "date": dataset.date_start.isoformat() if dataset.date_start else None,
        })  # fmt: skip
    return jsonify({"lon": lon, "lat": lat, "values": found})


# -- jobs -----------------------------------------------------------------------------------
@blueprint.get("/jobs")
def list_jobs() -> Response:
    """Jobs newest first, optionally of one ``status``, at most ``limit`` (100)."""
    require("viewer")
    jobs = team.list_jobs(
        app_catalog(),
        status=request.args.get("status") or None,
        limit=_integer(request.args.get("limit"), "limit", 100),
    )
    return jsonify({"jobs": [job_to_dict(job) for job in jobs]})


@blueprint.get("/jobs/<job_id>")
def show_job(job_id: str) -> Response:
    require("viewer")
    return jsonify(job_to_dict(team.get_job(app_catalog(), job_id)))


@blueprint.post("/jobs")
def submit_job() -> tuple[Response, int]:
    """Queue a request after the engine's preflight: 201 with the new job, 200 with the
    job an idempotency key already made."""
    user = require("editor")
    spec, common = request_spec(_json_body(), user)
    catalog = app_catalog()
    key = common.get("idempotency_key")
    existed = key is not None and _job_with_key(catalog, key)
    job = team.submit(
        spec,
        catalog,
        settings=app_settings(),
        name=common.get("name"),
        priority=common.get("priority", 0),
        idempotency_key=key,
        requester=user.name,
    )
    return jsonify(job_to_dict(job)), 200 if existed else 201


@blueprint.post("/jobs/preflight")
def preflight_job() -> Response:
    """The engine's preflight of a request (the body of POST /jobs), queueing nothing:
    ``{"ok": true, "summary"}`` or the error that submitting would give."""
    from madrone.engine.plan import plan

    user = require("editor")
    spec, common = request_spec(_json_body(), user)
    spec = replace(team.absolute_paths(spec), output_dir=".", name=common.get("name") or spec.name)
    checked = plan(spec, settings=app_settings())
    grid = checked.context.grid
    summary = {
        "name": spec.name or checked.name,
        "indices": [index.name for index in checked.context.indices],
        "scenes": len(checked.scenes),
        "tiles": len(checked.tiles),
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs,
        "resolution": grid.res_x,
    }
    return jsonify({"ok": True, "summary": summary})


@blueprint.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Cancel a job (its requester or an admin, with an editor token)."""
    user = require("editor")
    job = team.get_job(app_catalog(), job_id)
    _check_owner(user, job.requester, f"job {job_id!r}")
    return jsonify(job_to_dict(team.cancel_job(app_catalog(), job_id)))


@blueprint.get("/sources")
def sources() -> Response:
    """The sources a request may name: the bundled sample mosaic (url null, the default)
    first, then the site's (``MADRONE_SOURCES``)."""
    require("viewer")
    offered = [{"label": SAMPLE_SOURCE_LABEL, "url": None}]
    offered += [{"label": label, "url": url} for label, url in app_settings().source_list()]
    return jsonify({"sources": offered})


@blueprint.get("/indices")
def indices() -> Response:
    """The indices computable from Sentinel-2 bands, by name."""
    from madrone.indices import list_indices

    require("viewer")
    found = [
        {"name": index.name, "long_name": index.long_name, "bands": list(index.bands)}
        for index in list_indices()
    ]
    return jsonify({"indices": found})


def request_spec(body: dict[str, Any], user: User | None = None) -> tuple[Any, dict[str, Any]]:
    """The JobSpec of a POST /jobs body and its queue options (name, priority, key).

    ``sources`` makes a process request (``bbox`` then clips); otherwise the body is an
    area request (``corners``, ``bbox`` or ``geometry`` with an optional ``source``).
    What the server would read is checked against ``user``'s rights first
    (``check_request_rights``)."""
    from madrone.api import build_mosaic_spec, build_spec

    fields = PROCESS_FIELDS if "sources" in body else AREA_FIELDS
    unknown = sorted(set(body) - set(fields) - set(COMMON_FIELDS))
    if unknown:
        kind = "a process request (with sources)" if "sources" in body else "an area request"
        raise InputError(f"unknown field(s) for {kind}: {', '.join(unknown)}")
    for field, value in body.items():
        check_value(value, {**fields, **COMMON_FIELDS}[field], field)
    check_request_rights(body, user)
    common = {key: body[key] for key in COMMON_FIELDS if body.get(key) is not None}
    options = {key: value for key, value in body.items() if key in fields and value is not None}
    if isinstance(options.get("indices"), str):
        options["indices"] = [part.strip() for part in options["indices"].split(",")]
    if "sources" in body:
        return build_spec(options.pop("sources"), **options), common
    return build_mosaic_spec(**options), common


def check_request_rights(body: dict[str, Any], user: User | None) -> None:
    """A web request reads only what the site offers: ``source`` must be null or one of
    the configured sources; ``sources`` and ``bands`` (paths the server would open) need
    the admin role, so nobody else makes the server read what it chooses.

    Raises:
        AccessDeniedError: naming the field and the role it needs.
    """
    if user is not None and user.role == "admin":
        return
    for field in ("sources", "bands"):
        if body.get(field):
            raise AccessDeniedError(
                f"{field}: only an admin may have the server read paths it names; "
                "request an area (corners, bbox or geometry) from one of GET /api/sources"
            )
    source = body.get("source")
    offered = {url for _, url in app_settings().source_list()}
    if source and source not in offered:
        raise AccessDeniedError(
            f"source {source!r} is not one of this site's sources (GET /api/sources); "
            "only an admin may name another"
        )


def safe_filename(name: str, extension: str) -> str:
    """A download's file name: the dataset name as a slug (ASCII letters, digits, ``-``;
    accents dropped) and the extension, never a path."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].strip("-") or "dataset"
    extension = extension.lower()
    return slug + (extension if re.fullmatch(r"\.[a-z0-9]{1,9}", extension) else "")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object (Content-Type: application/json)")
    return body


def _catalog_named(args: Any) -> Any:
    """The catalog ``catalog=local|shared`` names (local by default)."""
    which = args.get("catalog") or "local"
    if which == "local":
        return app_catalog()
    if which != "shared":
        raise InputError(f"catalog {which!r} is not local or shared")
    central = app_central_catalog()
    if central is None:
        raise ConflictError(
            "this site has no central catalog (MADRONE_CENTRAL_DB_URL is not set); "
            "only catalog=local can be searched"
        )
    return central


def _storage_of(dataset: Dataset, central: bool) -> Storage:
    """The storage holding a dataset's files: the central one for a shared dataset."""
    return Storage.from_settings(app_settings(), central=central or dataset.scope == "shared")


def _hrefs(dataset: Dataset) -> list[str]:
    return [
        str(asset["href"])
        for asset in dataset.assets.values()
        if isinstance(asset, dict) and asset.get("href")
    ]


def _in_storage(storage: Storage, href: str) -> bool:
    """Whether a stored file's URL is under this storage (others are not ours to remove)."""
    return href.removeprefix("file://").startswith(storage.url + "/")


def _job_with_key(catalog: Any, key: str) -> bool:
    from madrone.catalog.queue import JobQueue

    try:
        JobQueue(catalog).get_by_key(key)
    except NotFoundError:
        return False
    return True


def _check_owner(user: User, owner: str | None, what: str) -> None:
    if user.role != "admin" and user.name != owner:
        raise AccessDeniedError(f"{what} belongs to {owner}; only they or an admin may change it")


def _floats(text: str | None, name: str, count: int) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"{name} {text!r} must be {count} comma-separated numbers")
    return values


def _integer(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name} {text!r} is not a whole number") from None
