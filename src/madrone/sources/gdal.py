"""How madrone talks to GDAL: URL spelling and the configuration every read runs under."""

from __future__ import annotations

from html import escape

import rasterio

# Do not list "directories" of remote files on open (a listing is dozens of requests); still
# probe side-car files one by one ("TRUE", not "EMPTY_DIR"), since some real catalogs keep the
# georeferencing in a .aux.xml. Retry transient HTTP errors.
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_MULTIRANGE": "YES",
}
# Files GDAL reads through a virtual file system (HTTP, object stores, archives) also keep
# their recently read ranges, per open file (VSI_CACHE: up to 25 MB each). A local file has
# the OS's page cache: there the cache only held memory, 95 MiB for a scene's four bands
# kept open by a worker.
VSI_OPTIONS = {"VSI_CACHE": "TRUE"}

# numpy dtype name -> GDAL data type name, as VRT XML spells it.
GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}  # fmt: skip

_SCHEMES = (
    ("https://", "/vsicurl/", False),
    ("http://", "/vsicurl/", False),
    ("s3://", "/vsis3/", True),
    ("az://", "/vsiaz/", True),
    ("gs://", "/vsigs/", True),
)


def xml_text(text: str) -> str:
    """``text`` escaped for the XML GDAL reads (VRT, PAM): &, < and >. (``html.escape``
    rather than ``xml.sax.saxutils.escape``, which imports urllib.request: 30 ms a job.)"""
    return escape(text, quote=False)


def gdal_path(path: str) -> str:
    """A user path or URL as GDAL opens it (``https://`` -> ``/vsicurl/https://``,
    ``s3://bucket/key`` -> ``/vsis3/bucket/key``); local paths are unchanged."""
    for scheme, prefix, strip in _SCHEMES:
        if path.startswith(scheme):
            return prefix + (path[len(scheme) :] if strip else path)
    return path


def is_virtual(uri: str) -> bool:
    """Whether GDAL reads ``uri`` (a GDAL path) through a virtual file system other than
    memory: HTTP, an object store, an archive."""
    return uri.startswith("/vsi") and not uri.startswith("/vsimem/")


def gdal_env(virtual: bool = True) -> rasterio.Env:
    """The GDAL environment for opening and reading sources; ``virtual=False`` when every
    file opened under it is a plain local file (no range cache)."""
    return rasterio.Env(**GDAL_OPTIONS, **(VSI_OPTIONS if virtual else {}))
