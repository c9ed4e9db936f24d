"""The OpenAPI 3.0 document of the REST API, and the JSON schemas of a job request's fields.

One table per request kind drives both the document and the check of a POST body, so what
the document promises is what the endpoint accepts.
"""

from __future__ import annotations

from typing import Any

from madrone.errors import InputError

_STRING = {"type": "string"}
_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_STRINGS = {"type": "array", "items": _STRING}
_FOUR = {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 4}
_NAMES = {"oneOf": [_STRINGS, _STRING], "description": "a list, or comma-separated names"}
_TEXT_MAP = {"type": "object", "additionalProperties": _STRING}

_ENGINE_FIELDS: dict[str, dict[str, Any]] = {
    "indices": _NAMES,
    "expressions": {**_TEXT_MAP, "description": "user band math, {name: expression}"},
    "resolution": _NUMBER,
    "crs": _STRING,
    "datetime": _STRING,
    "resampling": _STRING,
    "bands": {**_TEXT_MAP, "description": "one source of band files, {B04: path}"},
    "products": _STRINGS,
    "tile_size": _INTEGER,
    "mask_classes": {"type": "array", "items": _INTEGER},
    "offset": _NUMBER,
    "scale": _NUMBER,
}
PROCESS_FIELDS: dict[str, dict[str, Any]] = {
    "sources": {**_STRINGS, "description": "paths or URLs the master can read"},
    "bbox": {**_FOUR, "description": "clip to W,S,E,N degrees"},
    **_ENGINE_FIELDS,
}
AREA_FIELDS: dict[str, dict[str, Any]] = {
    "corners": {**_FOUR, "description": "upper-left lat, lon, lower-right lat, lon"},
    "bbox": {**_FOUR, "description": "W,S,E,N degrees"},
    "geometry": {"type": "object", "description": "a GeoJSON polygon"},
    "source": {**_STRING, "description": "a raster, STAC item, catalog or API"},
    "max_cloud": _NUMBER,
    "collections": _STRINGS,
    "limit": _INTEGER,
    "method": _STRING,
    "band_map": {"type": "object", "additionalProperties": _INTEGER},
    **_ENGINE_FIELDS,
}
COMMON_FIELDS: dict[str, dict[str, Any]] = {
    "name": _STRING,
    "priority": {**_INTEGER, "description": "higher runs first"},
    "idempotency_key": {**_STRING, "description": "the same key returns the same job"},
}
_TYPES = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "array": (list,),
    "object": (dict,),
}


def check_value(value: Any, schema: dict[str, Any], field: str) -> None:
    """Refuse a value that does not fit its field's schema, naming the field (InputError)."""
    if value is None:
        return
    if "oneOf" in schema:
        for choice in schema["oneOf"]:
            try:
                return check_value(value, choice, field)
            except InputError:
                pass
        raise InputError(f"{field}: {value!r} is not {schema['description']}")
    kind = schema["type"]
    if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
        raise InputError(f"{field} must be of JSON type {kind}, got {value!r}")
    if kind == "array":
        if "minItems" in schema and not schema["minItems"] <= len(value) <= schema["maxItems"]:
            raise InputError(f"{field} must have {schema['minItems']} items, got {len(value)}")
        for item in value:
            check_value(item, schema["items"], f"{field} item")
    if kind == "object" and "additionalProperties" in schema:
        for key, item in value.items():
            check_value(item, schema["additionalProperties"], f"{field}.{key}")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of ``/api``."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "madrone REST API", "version": "1"},
        "servers": [{"url": "/api"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "mdr_..."}
            },
            "schemas": _schemas(),
            "responses": {
                name: _error_response(text)
                for name, text in (
                    ("BadRequest", "invalid input; the message names the field"),
                    ("Unauthorized", "no token given where one is needed"),
                    ("Forbidden", "the token's role or owner does not allow it"),
                    ("NotFound", "no such object (or index)"),
                    ("Conflict", "the object's state does not allow it"),
                    ("Unprocessable", "a source cannot be found or read"),
                )
            },
        },
    }


def _schemas() -> dict[str, Any]:
    loose = {"type": "object", "additionalProperties": True}
    nullable_text = {"type": "string", "nullable": True}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"status": _INTEGER, "type": _STRING, "message": _STRING},
                }
            },
        },
        "Dataset": {**loose, "properties": {"id": _STRING, "name": _STRING, "bbox": _FOUR}},
        "DatasetPage": {
            "type": "object",
            "properties": {
                "datasets": {"type": "array", "items": _ref("Dataset")},
                "next_cursor": nullable_text,
            },
        },
        "Job": {**loose, "properties": {"id": _STRING, "status": _STRING, "spec": loose}},
        "JobList": {
            "type": "object",
            "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
        },
        "ProcessRequest": _request(PROCESS_FIELDS, ["sources"]),
        "AreaRequest": _request(AREA_FIELDS, []),
    }


def _request(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {**fields, **COMMON_FIELDS},
    }
    return {**schema, "required": required} if required else schema


def _paths() -> dict[str, Any]:
    job_id = _path_param("job_id", "a job id")
    dataset_id = _path_param("dataset_id", "a dataset id")
    return {
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": _json_response("the document", {})},
            }
        },
        "/datasets": {"get": _operation("search datasets", "DatasetPage", _search_params())},
        "/datasets/{dataset_id}": {
            "get": _operation("one dataset", "Dataset", [dataset_id]),
            "delete": _operation(
                "remove a dataset's row (owner or admin; files stay in storage for now)",
                "Dataset",
                [dataset_id],
                write=True,
            ),
        },
        "/jobs": {
            "get": _operation(
                "jobs, newest first",
                "JobList",
                [
                    _query_param("status", _STRING, "queued, running, succeeded, failed ..."),
                    _query_param("limit", _INTEGER, "at most this many (100)"),
                ],
            ),
            "post": _submit_operation(),
        },
        "/jobs/{job_id}": {"get": _operation("one job", "Job", [job_id])},
        "/jobs/{job_id}/cancel": {
            "post": _operation("cancel a job (requester or admin)", "Job", [job_id], write=True)
        },
    }


def _search_params() -> list[dict[str, Any]]:
    return [
        _query_param("bbox", _STRING, "W,S,E,N in degrees"),
        _query_param("index", _STRING, "index name, e.g. ndvi"),
        _query_param("owner", _STRING, "the owner's user name"),
        _query_param("q", _STRING, "words in the name or description"),
        _query_param("from", {"type": "string", "format": "date"}, "acquired on or after"),
        _query_param("to", {"type": "string", "format": "date"}, "acquired on or before"),
        _query_param("kind", _STRING, "index, geotiff, image, vector or point"),
        _query_param("sort", _STRING, "created, updated, name or date"),
        _query_param("asc", {"type": "boolean"}, "ascending instead of descending"),
        _query_param("limit", _INTEGER, "page size (50)"),
        _query_param("cursor", _STRING, "next_cursor of the previous page"),
    ]


def _submit_operation() -> dict[str, Any]:
    operation = _operation("queue a request after preflight", "Job", [], write=True)
    operation["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ProcessRequest"},
                        {"$ref": "#/components/schemas/AreaRequest"},
                    ]
                }
            }
        },
    }
    operation["responses"]["201"] = _json_response("the job queued", _ref("Job"))
    operation["responses"]["200"]["description"] = "the job an idempotency key already made"
    operation["responses"]["422"] = {"$ref": "#/components/responses/Unprocessable"}
    return operation


def _operation(
    summary: str, schema: str, params: list[dict[str, Any]], *, write: bool = False
) -> dict[str, Any]:
    responses = {
        "200": _json_response(summary, {"$ref": f"#/components/schemas/{schema}"}),
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "403": {"$ref": "#/components/responses/Forbidden"},
        "404": {"$ref": "#/components/responses/NotFound"},
    }
    if write:
        responses["409"] = {"$ref": "#/components/responses/Conflict"}
    role = "editor" if write else "viewer (none when the site reads publicly)"
    return {
        "summary": summary,
        "description": f"Role: {role}.",
        "parameters": params,
        "responses": responses,
    }


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_response(description: str) -> dict[str, Any]:
    return _json_response(description, {"$ref": "#/components/schemas/Error"})


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _STRING,
    }


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
