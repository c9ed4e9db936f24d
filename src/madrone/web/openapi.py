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
_BINARY = {"type": "string", "format": "binary"}

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
    """The OpenAPI 3.0.3 document of ``/api`` (and of ``/tiles`` beside it)."""
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
                    ("TooLarge", "larger than the site's upload limit (MADRONE_MAX_UPLOAD_MB)"),
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
        "Me": {
            "type": "object",
            "properties": {
                "user": {
                    "type": "object",
                    "nullable": True,
                    "properties": {"name": _STRING, "role": _STRING},
                },
                "public_read": {"type": "boolean"},
                "central": {"type": "boolean"},
            },
        },
        "Upload": {
            "type": "object",
            "properties": {
                "file": {**_BINARY, "description": "GeoTIFF, PNG/JPEG or GeoJSON"},
                "name": {**_STRING, "description": "default: the file's name"},
                "description": _STRING,
                "corners": {**_STRING, "description": "ul_lat,ul_lon,lr_lat,lr_lon (images)"},
                "kind": {**_STRING, "enum": ["point"], "description": "a point, no file"},
                "lat": _NUMBER,
                "lon": _NUMBER,
            },
        },
        "Values": {
            "type": "object",
            "properties": {
                "lon": _NUMBER,
                "lat": _NUMBER,
                "values": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": _STRING,
                            "name": _STRING,
                            "index": nullable_text,
                            "value": {"type": "number", "nullable": True},
                            "date": nullable_text,
                        },
                    },
                },
            },
        },
        "PointValue": {
            **loose,
            "properties": {"dataset": _STRING, "value": {"type": "number", "nullable": True}},
        },
        "Legend": {
            "type": "object",
            "properties": {
                "label": _STRING,
                "min": _NUMBER,
                "max": _NUMBER,
                "colors": {**_STRINGS, "description": "11 stops, low to high, #rrggbb"},
            },
        },
        "Preflight": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "summary": loose},
        },
        "Sources": {
            "type": "object",
            "properties": {
                "sources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"label": _STRING, "url": nullable_text},
                    },
                }
            },
        },
        "Indices": {
            "type": "object",
            "properties": {
                "indices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": _STRING, "long_name": _STRING, "bands": _STRINGS},
                    },
                }
            },
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
    dataset_id = _path_param("dataset_id", "a dataset id (local or central catalog)")
    return {
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": _json_response("the document", {})},
            }
        },
        "/docs": {
            "get": {
                "summary": "this document as a browsable page",
                "security": [],
                "responses": {
                    "200": {
                        "description": "an HTML page",
                        "content": {"text/html": {"schema": _STRING}},
                    }
                },
            }
        },
        "/me": {
            "get": {
                "summary": "the caller, whether reading is public and a central catalog exists",
                "security": [{}, {"bearerAuth": []}],
                "responses": {
                    "200": _json_response("who is asking", _ref("Me")),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
        "/datasets": {"get": _search_operation()},
        "/datasets/{dataset_id}": {
            "get": _operation("one dataset", "Dataset", [dataset_id]),
            "delete": _operation(
                "remove a dataset and its files in storage (owner or admin)",
                "Dataset",
                [dataset_id],
                write=True,
            ),
        },
        "/datasets/{dataset_id}/assets/{key}": {"get": _asset_operation(dataset_id)},
        "/datasets/{dataset_id}/share": {"post": _share_operation(dataset_id)},
        "/uploads": {"post": _upload_operation()},
        "/values": {
            "get": _operation(
                "the value of each raster dataset at a point (null: nodata or outside)",
                "Values",
                [
                    _query_param("lon", _NUMBER, "longitude, degrees", required=True),
                    _query_param("lat", _NUMBER, "latitude, degrees", required=True),
                    _query_param("ids", _STRING, "comma-separated dataset ids", required=True),
                ],
            )
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
        "/jobs/preflight": {"post": _preflight_operation()},
        "/jobs/{job_id}": {"get": _operation("one job", "Job", [job_id])},
        "/jobs/{job_id}/cancel": {
            "post": _operation("cancel a job (requester or admin)", "Job", [job_id], write=True)
        },
        "/sources": {
            "get": _operation(
                "sources a request may name: the bundled sample mosaic (url null) first",
                "Sources",
                [],
            )
        },
        "/indices": {"get": _operation("indices computable from Sentinel-2 bands", "Indices", [])},
        **_tile_paths(),
    }


def _search_operation() -> dict[str, Any]:
    operation = _operation("search datasets", "DatasetPage", _search_params())
    operation["responses"]["409"] = {"$ref": "#/components/responses/Conflict"}
    return operation


def _asset_operation(dataset_id: dict[str, Any]) -> dict[str, Any]:
    key = _path_param("key", "the asset's key, e.g. cog, png, data")
    operation = _operation("download an asset (attachment)", "Dataset", [dataset_id, key])
    operation["responses"]["200"] = {
        "description": "the file, named after the dataset",
        "content": {"application/octet-stream": {"schema": _BINARY}},
    }
    return operation


def _share_operation(dataset_id: dict[str, Any]) -> dict[str, Any]:
    operation = _operation(
        "share a local dataset to the central catalog (owner or admin)",
        "Dataset",
        [dataset_id],
        write=True,
    )
    operation["responses"]["200"]["description"] = "the central dataset shared before"
    operation["responses"]["201"] = _json_response("the new central dataset", _ref("Dataset"))
    operation["responses"]["409"] = _error_response(
        "no central catalog on this site, or the dataset is already a shared one"
    )
    return operation


def _upload_operation() -> dict[str, Any]:
    operation = _operation("upload a file or add a point", "Dataset", [], write=True)
    del operation["responses"]["200"]
    operation["requestBody"] = {
        "required": True,
        "content": {"multipart/form-data": {"schema": _ref("Upload")}},
    }
    operation["responses"]["201"] = _json_response("the new dataset", _ref("Dataset"))
    operation["responses"]["413"] = {"$ref": "#/components/responses/TooLarge"}
    operation["responses"]["422"] = _error_response(
        "the content is not a raster GDAL reads nor valid GeoJSON; type CornersNeeded: "
        "a raster without a CRS needs corners"
    )
    return operation


def _preflight_operation() -> dict[str, Any]:
    operation = _submit_operation()
    operation["summary"] = "check a request as POST /jobs would, queueing nothing"
    del operation["responses"]["201"]
    operation["responses"]["200"] = _json_response("the request would be queued", _ref("Preflight"))
    return operation


def _tile_paths() -> dict[str, Any]:
    """``/tiles`` is beside ``/api``: its paths carry their own server."""
    dataset_id = _path_param("dataset_id", "a raster dataset's id")
    servers = [{"url": "/tiles", "description": "map tiles, beside /api"}]
    png = {"description": "a 256 px RGBA PNG", "content": {"image/png": {"schema": _BINARY}}}
    tile = _operation(
        "an XYZ tile (WebMercatorQuad) coloured as the product",
        "Dataset",
        [dataset_id] + [_path_param(n, f"tile {n}", _INTEGER) for n in ("z", "x", "y")],
    )
    tile["responses"]["200"] = png
    tile["responses"]["204"] = {"description": "the tile misses the dataset"}
    point = _operation(
        "band 1's value at a point (null for nodata); 404 outside",
        "PointValue",
        [
            dataset_id,
            _query_param("lon", _NUMBER, "longitude, degrees", required=True),
            _query_param("lat", _NUMBER, "latitude, degrees", required=True),
        ],
    )
    legend = _operation("the layer's colour ramp and range", "Legend", [dataset_id])
    return {
        "/{dataset_id}/{z}/{x}/{y}.png": {"servers": servers, "get": tile},
        "/{dataset_id}/point": {"servers": servers, "get": point},
        "/{dataset_id}/legend": {"servers": servers, "get": legend},
    }


def _search_params() -> list[dict[str, Any]]:
    return [
        _query_param(
            "catalog",
            {"type": "string", "enum": ["local", "shared"]},
            "local (default) or shared: the central catalog (409 when the site has none)",
        ),
        _query_param("job", _STRING, "only the datasets this job made"),
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


def _path_param(
    name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or _STRING,
    }


def _query_param(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }
