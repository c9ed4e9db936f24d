"""The Flask app factory and what every blueprint shares: the catalog and storage of the
app, the caller (from an API token), and one table from ``MadroneError`` to HTTP."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from madrone.catalog.datasets import get_dataset
from madrone.catalog.db import Catalog, default_db_url
from madrone.catalog.models import Dataset, User
from madrone.catalog.users import authenticate, require_role
from madrone.config import Settings
from madrone.errors import AccessDeniedError, MadroneError, NotFoundError
from madrone.lazy import lazy_module
from madrone.web.security import install_security_headers

auth = lazy_module("madrone.web.auth")  # imports this module: loaded on first use


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    central_catalog: Catalog | None = None,
) -> Flask:
    """A web app on ``catalog`` (default: the settings' local catalog), with the team's
    ``central_catalog`` beside it for the shared table and sharing (default: the settings'
    ``central_db_url``, or none).

    The app's catalog holds its users, its job queue and the "local" datasets; the central
    one only receives shared datasets. A site whose app serves the central catalog itself
    (compose.yaml) sets ``MADRONE_DB_URL`` to it and leaves the central URL empty.

    Args:
        settings: madrone settings (default: from ``MADRONE_*`` variables).
        catalog: the catalog to serve (its owner disposes of it; one the app opens from
            the settings lives as long as the process).
        central_catalog: the team's catalog (same ownership rule).
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MADRONE_SETTINGS"] = settings
    app.config["MADRONE_CATALOG"] = catalog or Catalog(default_db_url(settings))
    if central_catalog is None and _separate_central(settings):
        central_catalog = Catalog(settings.central_db_url)
    app.config["MADRONE_CENTRAL_CATALOG"] = central_catalog
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.json.sort_keys = False  # keep STAC and error documents in their written order
    _register_blueprints(app)
    auth.install_auth(app)
    install_security_headers(app, settings.basemap_url)
    app.register_error_handler(MadroneError, _madrone_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _register_blueprints(app: Flask) -> None:
    from madrone.web import api, pages, stac, tiles

    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint, url_prefix="/api")
    app.register_blueprint(stac.blueprint, url_prefix="/stac")
    app.register_blueprint(tiles.blueprint, url_prefix="/tiles")


def _separate_central(settings: Settings) -> bool:
    """Whether the settings name a central catalog other than the app's own (a site whose
    app serves the team's catalog itself, as compose.yaml does, has nothing to share to)."""
    return bool(settings.central_db_url) and settings.central_db_url != default_db_url(settings)


def app_catalog() -> Catalog:
    from flask import current_app

    return current_app.config["MADRONE_CATALOG"]


def app_central_catalog() -> Catalog | None:
    """The team's catalog beside the app's own, or None when the site has none."""
    from flask import current_app

    return current_app.config["MADRONE_CENTRAL_CATALOG"]


def find_dataset(dataset_id: str) -> tuple[Dataset, bool]:
    """A dataset by id from the app's catalog, else the central one; and whether it came
    from the central catalog (its files are then in the central storage).

    Raises:
        NotFoundError: neither catalog has it.
    """
    try:
        return get_dataset(app_catalog(), dataset_id), False
    except NotFoundError:
        central = app_central_catalog()
        if central is None:
            raise
    return get_dataset(central, dataset_id), True


def app_settings() -> Settings:
    from flask import current_app

    return current_app.config["MADRONE_SETTINGS"]


def caller() -> User | None:
    """The user behind the request's ``Authorization: Bearer mdr_...`` token, else the user
    logged in to the request's session (``web.auth``), or None."""
    if "madrone_user" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        g.madrone_user = None
        if header:
            if scheme.lower() != "bearer" or not token:
                raise AuthenticationRequired("Authorization must be 'Bearer <API token>'")
            try:
                g.madrone_user = authenticate(app_catalog(), token.strip())
            except AccessDeniedError as error:
                raise AuthenticationRequired(str(error)) from None
        else:
            g.madrone_user = auth.session_user()
    return g.madrone_user


def require(role: str) -> User | None:
    """The caller, if allowed ``role``: reading (viewer) is open when the site's
    ``MADRONE_PUBLIC_READ`` says so; anything else needs a token with the role."""
    user = caller()
    if user is None:
        if role == "viewer" and app_settings().public_read:
            return None
        raise AuthenticationRequired(f"log in or give an API token ({role} role needed)")
    require_role(user, role)
    return user


class AuthenticationRequired(AccessDeniedError):
    """No credentials were given where some are needed."""

    http_status = 401


def error_body(status: int, message: str, kind: str) -> tuple[Response, int]:
    return jsonify({"error": {"status": status, "type": kind, "message": message}}), status


def _madrone_error(error: MadroneError) -> tuple[Response, int]:
    return error_body(error.http_status, str(error), type(error).__name__)


def _http_error(error: HTTPException) -> Any:
    if request.path.startswith(("/api", "/stac", "/tiles")):
        return error_body(error.code or 500, error.description or error.name, error.name)
    return error
