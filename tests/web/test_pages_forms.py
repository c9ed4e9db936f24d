"""The datasets and upload pages as the server renders them: who may open them, the DOM ids
the browser tests rely on, no inline script or style (the CSP forbids them), only local
static files that are really served, the upload limit from the settings and the forms
disabled for anyone below the editor role."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from madrone.catalog.db import Catalog
from madrone.config import Settings
from madrone.web import create_app
from tests.web.pages import Page, assert_served_locally, fresh_catalog, make_app, token_for

catalog = pytest.fixture(fresh_catalog, name="catalog")

DATASETS_IDS = [
    "tab-local", "tab-shared", "local-table", "shared-table", "search-form", "search-q",
    "search-index", "search-owner", "search-from", "search-to", "search-in-view",
    "search-submit", "prev-page", "next-page", "datasets-status",
]  # fmt: skip
UPLOAD_IDS = [
    "upload-form", "upload-file", "upload-name", "upload-description", "upload-corners",
    "upload-ul-lat", "upload-ul-lon", "upload-lr-lat", "upload-lr-lon", "upload-submit",
    "upload-status", "point-form", "point-lat", "point-lon", "point-name",
    "point-description", "point-submit", "point-status",
]  # fmt: skip


def render(app: Flask, path: str, headers: dict[str, str] | None = None) -> Page:
    response = app.test_client().get(path, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return Page(response.get_data(as_text=True))


@pytest.mark.parametrize(("path", "ids"), [("/datasets", DATASETS_IDS), ("/upload", UPLOAD_IDS)])
def test_pages_render_for_a_public_reader_with_the_contract_ids(
    catalog: Catalog, path: str, ids: list[str]
) -> None:
    page = render(make_app(catalog, public_read=1), path)
    missing = [element_id for element_id in ids if element_id not in page.elements]
    assert missing == []


@pytest.mark.parametrize("path", ["/datasets", "/upload", "/datasets?q=a&tab=shared"])
def test_pages_send_anonymous_callers_to_login_when_not_public(catalog: Catalog, path: str) -> None:
    response = make_app(catalog).test_client().get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert location.query == "next=" + path


@pytest.mark.parametrize("path", ["/datasets", "/upload"])
def test_pages_have_no_inline_script_or_style(catalog: Catalog, path: str) -> None:
    page = render(make_app(catalog, public_read=1), path)
    assert page.inline_scripts == []
    assert page.inline_styles == []
    assert "<style" not in make_app(catalog, public_read=1).test_client().get(path).text


@pytest.mark.parametrize(
    ("path", "scripts", "sheets"),
    [
        ("/datasets", ["madrone.js", "datasets.js"], ["madrone.css", "forms.css"]),
        ("/upload", ["madrone.js", "upload.js"], ["madrone.css", "forms.css"]),
    ],
)
def test_pages_load_only_local_files_that_are_served(
    catalog: Catalog, path: str, scripts: list[str], sheets: list[str]
) -> None:
    app = make_app(catalog, public_read=1)
    page = render(app, path)
    assert [Path(src).name for src in page.scripts] == scripts
    assert [Path(href).name for href in page.stylesheets] == sheets
    assert_served_locally(app, page, 500)


def test_upload_form_carries_the_limit_from_the_settings(catalog: Catalog) -> None:
    page = render(make_app(catalog, public_read=1, max_upload_mb=7), "/upload")
    assert page.attribute("upload-form", "data-max-mb") == "7"
    assert page.attribute("upload-form", "enctype") == "multipart/form-data"
    assert page.attribute("upload-form", "action") == "/api/uploads"
    assert page.attribute("upload-file", "name") == "file"
    # corners are asked for only when a file needs them
    assert page.has("upload-corners", "hidden")
    assert page.elements["upload-corners"][0] == "fieldset"


def test_upload_forms_are_disabled_below_the_editor_role(catalog: Catalog) -> None:
    app = make_app(catalog, public_read=1)
    anonymous = render(app, "/upload")
    viewer = render(app, "/upload", token_for(catalog, "vi", "viewer"))
    editor = render(app, "/upload", token_for(catalog, "ed", "editor"))
    for page in (anonymous, viewer):
        assert "upload-note" in page.elements
        assert page.disabled_fieldsets == 2
    assert "upload-note" not in editor.elements
    assert editor.disabled_fieldsets == 0


def test_datasets_page_has_sort_buttons_and_knows_there_is_no_central_catalog(
    catalog: Catalog,
) -> None:
    page = render(make_app(catalog, public_read=1), "/datasets")
    assert page.sort_buttons == ["name", "date", "created"]
    assert page.has("tab-shared", "disabled")
    assert "shared-note" in page.elements
    text = make_app(catalog, public_read=1).test_client().get("/datasets").text
    assert "MADRONE_CENTRAL_DB_URL" in text


def test_datasets_page_offers_the_shared_tab_with_a_central_catalog(
    catalog: Catalog, tmp_path: Path
) -> None:
    central = Catalog(f"sqlite:///{tmp_path}/central.sqlite")
    try:
        app = create_app(Settings(public_read=1), catalog=catalog, central_catalog=central)
        page = render(app, "/datasets")
    finally:
        central.dispose()
    assert not page.has("tab-shared", "disabled")
    assert "shared-note" not in page.elements


@pytest.mark.parametrize("script", ["madrone.js", "map.js", "request.js", "swipe.js",
                                    "datasets.js", "upload.js", "apidocs.js"])  # fmt: skip
def test_page_scripts_build_no_html_from_strings(script: str) -> None:
    """User text reaches the page only as text nodes (madrone.el, textContent)."""
    source = (Path(__file__).parents[2] / "src/madrone/web/static/js" / script).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, f"{script} uses {sink}"
    assert "window.madrone" in source
