"""The REST API (JSON only), registered at ``/api``: search and delete datasets, submit,
follow and cancel jobs, and the OpenAPI document that describes it all.

Reads need a viewer token (or none when ``MADRONE_PUBLIC_READ`` is set); writes need an
editor token. Every error is ``{"error": {"status", "type", "message"}}`` (``app.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from madrone import team
from madrone.catalog.datasets import dataset_to_dict, delete_dataset, get_dataset
from madrone.catalog.models import User
from madrone.catalog.queue import job_to_dict
from madrone.errors import AccessDeniedError, InputError
from madrone.web.app import app_catalog, app_settings, require
from madrone.web.openapi import (
    AREA_FIELDS,
    COMMON_FIELDS,
    PROCESS_FIELDS,
    check_value,
    openapi_document,
)

blueprint = Blueprint("api", __name__)

_TRUE = ("1", "true", "yes")


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.0 document of this API (open to everyone)."""
    return jsonify(openapi_document())


@blueprint.get("/datasets")
def list_datasets() -> Response:
    """Datasets matching the query arguments, a page at a time (``next_cursor``)."""
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
    return jsonify(team.page_to_dict(team.find_datasets(app_catalog(), query)))


@blueprint.get("/datasets/<dataset_id>")
def show_dataset(dataset_id: str) -> Response:
    require("viewer")
    return jsonify(dataset_to_dict(get_dataset(app_catalog(), dataset_id)))


@blueprint.delete("/datasets/<dataset_id>")
def remove_dataset(dataset_id: str) -> Response:
    """Remove a dataset's catalog row (its owner or an admin, with an editor token).

    The files in storage stay where they are for now: removing them is a later issue.
    Returns the dataset as it was."""
    user = require("editor")
    dataset = get_dataset(app_catalog(), dataset_id)
    _check_owner(user, dataset.owner, f"dataset {dataset_id!r}")
    gone = dataset_to_dict(dataset)
    delete_dataset(app_catalog(), dataset_id)
    return jsonify(gone)


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
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object (Content-Type: application/json)")
    spec, common = request_spec(body)
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


@blueprint.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Cancel a job (its requester or an admin, with an editor token)."""
    user = require("editor")
    job = team.get_job(app_catalog(), job_id)
    _check_owner(user, job.requester, f"job {job_id!r}")
    return jsonify(job_to_dict(team.cancel_job(app_catalog(), job_id)))


def request_spec(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The JobSpec of a POST /jobs body and its queue options (name, priority, key).

    ``sources`` makes a process request (``bbox`` then clips); otherwise the body is an
    area request (``corners``, ``bbox`` or ``geometry`` with an optional ``source``)."""
    from madrone.api import build_mosaic_spec, build_spec

    fields = PROCESS_FIELDS if "sources" in body else AREA_FIELDS
    unknown = sorted(set(body) - set(fields) - set(COMMON_FIELDS))
    if unknown:
        kind = "a process request (with sources)" if "sources" in body else "an area request"
        raise InputError(f"unknown field(s) for {kind}: {', '.join(unknown)}")
    for field, value in body.items():
        check_value(value, {**fields, **COMMON_FIELDS}[field], field)
    common = {key: body[key] for key in COMMON_FIELDS if body.get(key) is not None}
    options = {key: value for key, value in body.items() if key in fields and value is not None}
    if isinstance(options.get("indices"), str):
        options["indices"] = [part.strip() for part in options["indices"].split(",")]
    if "name" in common:
        options["name"] = common["name"]
    if "sources" in body:
        return build_spec(options.pop("sources"), **options), common
    return build_mosaic_spec(**options), common


def _job_with_key(catalog: Any, key: str) -> bool:
    from madrone.catalog.queue import JobQueue
    from madrone.errors import NotFoundError

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
