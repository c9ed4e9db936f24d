"""Uploads through the web app: a user's file (GeoTIFF, PNG/JPEG with corners, GeoJSON) or a
point becomes a dataset of the app's catalog, its files in the app's storage.

The upload is saved to a fresh temporary folder under a fixed name, never the name the
client sent (that name only becomes the default dataset name, cleaned); what the file holds
decides what it is, through ``catalog.ingest`` (which also writes a COG and checks GeoJSON
and its vertex limit). A refused upload leaves nothing: the temporary folder goes, and
``ingest`` stores and registers nothing unless everything succeeded.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping

from werkzeug.datastructures import FileStorage

from madrone.catalog import ingest
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset
from madrone.errors import InputError
from madrone.storage import Storage

UPLOAD_NAME = "upload"  # the saved file's only name: nothing of the client's reaches a path
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UploadRefused(InputError):
    """The uploaded file's content is not something madrone accepts; the message names the
    file as the client sent it."""

    http_status = 422


class CornersNeeded(UploadRefused):
    """A raster without a CRS: the page should ask for its two corners and send it again."""


def add_upload(
    catalog: Catalog,
    storage: Storage,
    upload: FileStorage,
    form: Mapping[str, str],
    *,
    owner: str,
) -> Dataset:
    """Register an uploaded file as a dataset owned by ``owner``.

    ``form`` holds ``name`` (default: the file's name without extension), ``description``
    and, for an image, ``corners`` ("ul_lat,ul_lon,lr_lat,lr_lon").

    Raises:
        CornersNeeded: a raster without a CRS and no corners given.
        UploadRefused: the content is not a raster GDAL reads, nor valid GeoJSON (422).
        InputError: a form field is wrong (400), naming it.
    """
    shown = client_filename(upload.filename)
    name = form.get("name", "").strip() or default_name(shown)
    corners = form.get("corners", "").strip() or None
    with tempfile.TemporaryDirectory(prefix="madrone-upload-") as work:
        path = os.path.join(work, UPLOAD_NAME)
        upload.save(path)
        if os.path.getsize(path) == 0:
            raise UploadRefused(f"{shown}: the file is empty")
        try:
            if corners is None:
                _check_placed(path)
            return ingest.add_file(
                catalog,
                storage,
                path,
                name=name,
                description=form.get("description", ""),
                owner=owner,
                corners=corners,
            )
        except InputError as error:
            raise _as_upload_error(error, path, shown) from None


def add_point(catalog: Catalog, form: Mapping[str, str], *, owner: str) -> Dataset:
    """Register a point (``lat``, ``lon``, ``name``, ``description``) owned by ``owner``."""
    for field in ("lat", "lon", "name"):
        if not form.get(field, "").strip():
            raise InputError(f"a point needs its {field}")
    return ingest.add_point(
        catalog,
        lat=form["lat"],
        lon=form["lon"],
        name=form["name"].strip(),
        description=form.get("description", ""),
        owner=owner,
    )


def client_filename(filename: str | None) -> str:
    """The client's file name for messages: its last part, without control characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    return _CONTROL.sub("", base).strip()[:MAX_NAME] or "the uploaded file"


def default_name(shown: str) -> str:
    """A dataset name from a file name: without its extension (the whole name if that
    leaves nothing)."""
    stem = os.path.splitext(shown)[0].strip()
    return stem or shown


def _check_placed(path: str) -> None:
    """A raster with no CRS needs its corners: ask for them before anything is stored."""
    if ingest.looks_like_json(path):
        return
    with ingest.open_raster(path) as source:
        if source.crs is None:
            raise CornersNeeded(
                f"{path}: the image has no georeferencing; give its corners "
                "(upper-left lat,lon and lower-right lat,lon)"
            )


def _as_upload_error(error: InputError, path: str, shown: str) -> InputError:
    """The error with the temporary path replaced by the client's file name; a problem of
    the content (the message named the file) becomes UploadRefused (422)."""
    message = str(error)
    if path not in message:
        return error
    cls = type(error) if isinstance(error, UploadRefused) else UploadRefused
    return cls(message.replace(path, shown))


def upload_limit_message(limit_bytes: int | None) -> str:
    """What a 413 says: the limit in MiB and the setting that raises it."""
    mib = (limit_bytes or 0) / 2**20
    return f"the upload is larger than this site's limit of {mib:g} MiB (MADRONE_MAX_UPLOAD_MB)"
