"""The HTML pages (map, datasets, upload) and the vendored browser libraries they load.

Pages are thin: each renders a template whose own script (``static/js``) does the work
through the REST API, so the pages and any other client use one interface. Leaflet comes
from the ``xstatic-leaflet`` package and Leaflet-Geoman from ``static/vendor`` (copied from
npm by ``scripts/vendor_web.py``, licence beside it): nothing is fetched from a CDN.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, render_template, request, send_from_directory

from madrone.catalog.models import User
from madrone.web.app import AuthenticationRequired, app_central_catalog, app_settings, require

blueprint = Blueprint("pages", __name__, template_folder="templates", static_folder="static")


@blueprint.app_context_processor
def _page_context() -> dict[str, Any]:
    settings = app_settings()
    return {
        "basemap_url": settings.basemap_url,
        "has_central": app_central_catalog() is not None,
        "max_upload_mb": settings.max_upload_mb,
    }


@blueprint.get("/")
def map_page() -> Any:
    """The map: layers, legends, swipe, pixel values and the mosaic request panel."""
    return _page("map.html")


@blueprint.get("/datasets")
def datasets_page() -> Any:
    """The local and shared dataset tables."""
    return _page("datasets.html")


@blueprint.get("/upload")
def upload_page() -> Any:
    """Upload a GeoTIFF, an image with corners, GeoJSON or a point."""
    return _page("upload.html")


@blueprint.get("/vendor/leaflet/<path:name>")
def leaflet_file(name: str) -> Response:
    """Leaflet's files from the installed ``xstatic-leaflet`` package."""
    import xstatic.pkg.leaflet as leaflet

    response = send_from_directory(leaflet.BASE_DIR, name, max_age=86400)
    return response


def page_user() -> User | None:
    """The viewer of a page, or raise ``AuthenticationRequired`` (redirected to login)."""
    return require("viewer")


def _page(template: str) -> Any:
    try:
        user = page_user()
    except AuthenticationRequired:
        return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/?=&"))
    return render_template(template, user=user)
