"""The map page as the server renders it: who may open it, the DOM ids the browser tests and
its own scripts rely on, no inline script or style (the CSP forbids them), only local files
that are really served (Leaflet, Leaflet-Geoman, marker images, the page's own scripts), and
the mosaic request form disabled below the editor role."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from madrone.catalog.db import Catalog
from madrone.config import Settings
from madrone.web import create_app
from tests.web.pages import Page, assert_served_locally, fresh_catalog, make_app, token_for

catalog = pytest.fixture(fresh_catalog, name="catalog")

STATIC = Path(__file__).resolve().parents[2] / "src/madrone/web/static"
MAP_IDS = [
    "map", "catalog-list", "layers", "swipe-left", "swipe-right", "swipe-toggle",
    "swipe-divider", "request-form", "request-index", "request-expression",
    "request-resolution", "request-from", "request-to", "request-cloud", "request-method",
    "request-source", "corner-ul-lat", "corner-ul-lon", "corner-lr-lat", "corner-lr-lon",
    "draw-rectangle", "draw-polygon", "request-submit", "request-errors", "jobs",
]  # fmt: skip
SCRIPTS = ["madrone.js", "leaflet.js", "leaflet-geoman.min.js", "map.js", "swipe.js", "request.js"]
SHEETS = ["madrone.css", "leaflet.css", "leaflet-geoman.css", "map.css"]
PAGE_SCRIPTS = ["map.js", "swipe.js", "request.js"]


def render(app: Flask, headers: dict[str, str] | None = None) -> tuple[Page, str]:
    response = app.test_client().get("/", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    return Page(text), text


def test_map_page_renders_for_a_public_reader_with_the_contract_ids(catalog: Catalog) -> None:
    page, _ = render(make_app(catalog, public_read=1))
    missing = [element_id for element_id in MAP_IDS if element_id not in page.elements]
    assert missing == []
    assert page.elements["request-form"][0] == "form"
    assert page.elements["jobs"][0] == "ul"
    assert page.elements["swipe-left"][0] == page.elements["swipe-right"][0] == "select"
    # the divider shows only while swiping
    assert "hidden" in (page.elements["swipe-divider"][1]["class"] or "").split()
    assert page.options["request-resolution"] == ["10", "20"]
    assert page.options["request-method"] == ["first", "median", "max-ndvi"]
    assert page.options["request-index"] == ["ndvi"]  # until /api/indices answers


def test_methods_offered_are_the_engines(catalog: Catalog) -> None:
    from madrone.engine.spec import COMPOSITE_METHODS

    page, _ = render(make_app(catalog, public_read=1))
    assert tuple(page.options["request-method"]) == COMPOSITE_METHODS


@pytest.mark.parametrize("path", ["/", "/?x=1"])
def test_map_page_sends_anonymous_callers_to_login_when_not_public(
    catalog: Catalog, path: str
) -> None:
    response = make_app(catalog).test_client().get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"


def test_map_page_renders_for_a_signed_in_viewer_when_not_public(catalog: Catalog) -> None:
    page, text = render(make_app(catalog), token_for(catalog, "vera", "viewer"))
    assert "map" in page.elements
    assert 'name="madrone-role" content="viewer"' in text


def test_map_page_has_no_inline_script_or_style(catalog: Catalog) -> None:
    page, text = render(make_app(catalog, public_read=1))
    assert page.inline_scripts == []
    assert page.inline_styles == []
    assert "<style" not in text


def test_map_page_loads_only_local_files_that_are_served(catalog: Catalog) -> None:
    app = make_app(catalog, public_read=1)
    page, _ = render(app)
    assert [Path(src).name for src in page.scripts] == SCRIPTS
    assert [Path(href).name for href in page.stylesheets] == SHEETS
    assert_served_locally(app, page, 1000)
    assert "/vendor/leaflet/leaflet.js" in page.scripts
    assert "/static/vendor/leaflet-geoman/leaflet-geoman.min.js" in page.scripts


def test_marker_images_resolve_where_the_map_says(catalog: Catalog) -> None:
    source = (STATIC / "js/map.js").read_text()
    match = re.search(r'imagePath = "([^"]+)"', source)
    assert match, "map.js sets L.Icon.Default's imagePath"
    client = make_app(catalog, public_read=1).test_client()
    for name in ("marker-icon.png", "marker-icon-2x.png", "marker-shadow.png"):
        with client.get(match.group(1) + name) as served:
            assert served.status_code == 200, name
            assert served.mimetype == "image/png"
            assert served.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_scripts_reach_only_this_site_and_build_no_html_from_strings() -> None:
    for name in PAGE_SCRIPTS:
        source = (STATIC / "js" / name).read_text()
        assert not re.search(r"https?://", source), f"{name} names another site"
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, name
        assert "document.write" not in source, name


def test_every_id_the_page_scripts_look_up_is_in_the_page(catalog: Catalog) -> None:
    page, _ = render(make_app(catalog, public_read=1), token_for(catalog, "ed", "editor"))
    wanted = set()
    for name in PAGE_SCRIPTS:
        source = (STATIC / "js" / name).read_text()
        wanted |= set(re.findall(r'getElementById\("([\w-]+)"\)', source))
        wanted |= set(re.findall(r'say\("([\w-]+)"', source))
    assert len(wanted) > 20
    assert sorted(wanted - set(page.elements)) == []


def test_request_form_is_disabled_below_the_editor_role(catalog: Catalog) -> None:
    app = make_app(catalog, public_read=1)
    anonymous, anonymous_text = render(app)
    viewer, _ = render(app, token_for(catalog, "vi", "viewer"))
    editor, _ = render(app, token_for(catalog, "ed", "editor"))
    admin, _ = render(app, token_for(catalog, "ad", "admin"))
    for page in (anonymous, viewer):
        assert "request-note" in page.elements
        assert "disabled" in page.elements["request-fieldset"][1]
    assert 'href="/login?next=/"' in anonymous_text
    for page in (editor, admin):
        assert "request-note" not in page.elements
        assert "disabled" not in page.elements["request-fieldset"][1]


def test_basemap_and_central_catalog_reach_the_page(catalog: Catalog, tmp_path: Path) -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    _, text = render(make_app(catalog, public_read=1, basemap_url=url))
    assert f'name="madrone-basemap" content="{url}"' in text
    assert 'name="madrone-central" content=""' in text
    central = Catalog(f"sqlite:///{tmp_path}/central.sqlite")
    try:
        app = create_app(Settings(public_read=1), catalog=catalog, central_catalog=central)
        _, shared = render(app)
    finally:
        central.dispose()
    assert 'name="madrone-central" content="yes"' in shared
    assert 'name="madrone-basemap" content=""' in shared
