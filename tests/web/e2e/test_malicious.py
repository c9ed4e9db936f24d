"""Hostile input in the browser: a dataset whose name and description are markup stays text in
the datasets table, the map's lists and its popup, and runs nothing; an HTML file named .tif
and a path-traversal file name uploaded through the page are refused or defused, and a file
over the upload limit is refused by the page and by the server, leaving nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.web.e2e.conftest import MAX_UPLOAD_MB, Site, open_map

EVIL_NAME = "<img src=x onerror=window.__pwned=1>"
EVIL_TEXT = "<script>window.__pwned=2</script><b onmouseover=window.__pwned=3>hover</b>"
EVIL_HTML = b"<!doctype html><html><script>window.__pwned=4</script>not a raster</html>"
POINT = (-75.62, 37.64)  # lon, lat: just south of the demo product
# What the markup would have made, had it been parsed (the map's own icons are images too).
INJECTED = "script, b, [onerror], [onmouseover], img[src='x']"


def pwned(tab: Any) -> Any:
    return tab.evaluate("() => window.__pwned")


@pytest.fixture(scope="module")
def evil_point(site: Site, browser: Any) -> dict[str, Any]:
    """A point dataset with markup for its name and description, added through the API with
    the admin's token (as any client could)."""
    dataset = site.upload(
        browser,
        {
            "kind": "point",
            "lat": str(POINT[1]),
            "lon": str(POINT[0]),
            "name": EVIL_NAME,
            "description": EVIL_TEXT,
        },
    )
    assert dataset["name"] == EVIL_NAME  # kept as given, to be shown as text
    return dataset


def test_markup_in_names_is_shown_as_text(
    page: Any, site: Site, login: Callable[..., None], evil_point: dict[str, Any]
) -> None:
    login(page)
    page.goto("/datasets")
    row = page.locator(f"#local-table tr[data-dataset-id='{evil_point['id']}']")
    row.wait_for()
    assert row.locator(".name").inner_text() == EVIL_NAME
    assert page.locator("#local-table").locator(INJECTED).count() == 0
    assert pwned(page) is None

    lon, lat = POINT
    open_map(page, lat, lon, 13)
    item = page.locator(f"#catalog-list li[data-dataset-id='{evil_point['id']}']")
    item.wait_for()
    assert EVIL_NAME in item.inner_text()
    assert page.locator("#catalog-list").locator(INJECTED).count() == 0
    item.locator(".add-to-map").click()
    layer = page.locator(f"#layers li[data-layer-id='{evil_point['id']}']")
    layer.wait_for()
    assert EVIL_NAME in layer.inner_text()
    assert page.locator("#layers").locator(INJECTED).count() == 0

    # The point's marker: its popup shows the name and description as text.
    marker = page.locator("#map .leaflet-marker-icon").first
    marker.wait_for()
    marker.click()
    popup = page.locator("#map .leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    assert EVIL_NAME in text and EVIL_TEXT in text, text
    assert popup.locator(INJECTED).count() == 0
    assert page.locator(INJECTED.replace("script, b, ", "")).count() == 0
    popup.hover()
    assert pwned(page) is None


def test_html_named_tif_is_refused_in_the_page(
    page: Any, site: Site, login: Callable[..., None], tmp_path: Path, browser_log: Any
) -> None:
    browser_log.allow(r"status of 4\d\d")
    evil = tmp_path / "evil.tif"
    evil.write_bytes(EVIL_HTML)
    files_before = site.storage_files()
    _, before = site.api("GET", "/api/datasets?limit=200")
    login(page)
    page.goto("/upload")
    page.set_input_files("#upload-file", str(evil))
    page.fill("#upload-name", "evil upload")
    page.click("#upload-submit")
    status = page.locator("#upload-status.error")
    status.wait_for()
    message = status.inner_text()
    assert message.strip(), "#upload-status is empty after a refused upload"
    assert "evil.tif" in message, f"the refusal does not name the file: {message}"
    assert status.locator("a").count() == 0  # no link to a dataset
    assert pwned(page) is None
    _, after = site.api("GET", "/api/datasets?limit=200")
    assert [d["id"] for d in after["datasets"]] == [d["id"] for d in before["datasets"]]
    assert site.storage_files() == files_before, "the refused upload left files in storage"


def test_a_path_traversal_file_name_is_not_a_path(
    page: Any, site: Site, login: Callable[..., None], tmp_path: Path
) -> None:
    """A real GeoTIFF whose file name climbs out of any folder: stored without writing
    outside the storage folder or keeping that name."""
    source = tmp_path / "small.tif"
    transform = from_origin(440000.0, 4170000.0, 10.0, 10.0)
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32618", "transform": transform}  # fmt: skip
    with rasterio.open(source, "w", **profile) as ds:
        ds.write(np.arange(256, dtype=np.uint8).reshape(16, 16), 1)
    escaped = "../../../../escaped-e2e.tif"
    login(page)
    page.goto("/upload")
    page.set_input_files(
        "#upload-file", {"name": escaped, "mimeType": "image/tiff", "buffer": source.read_bytes()}
    )
    page.fill("#upload-name", "traversal upload")
    page.click("#upload-submit")
    status = page.locator("#upload-status.success a.show-on-map")
    status.wait_for()  # a real GeoTIFF: accepted, under a name of the server's choosing
    assert not list(site.root.rglob("escaped-e2e*"))
    for folder in (site.root.parent, site.root.parent.parent, Path.cwd()):
        assert not list(folder.glob("escaped-e2e*"))
    found = site.api("GET", "/api/datasets?q=traversal&limit=10")[1]["datasets"]
    assert [d["name"] for d in found] == ["traversal upload"]
    for asset in found[0]["assets"].values():
        assert "escaped" not in asset["href"] and ".." not in asset["href"], asset


def test_an_oversize_upload_is_refused_by_the_page_and_the_server(
    page: Any, site: Site, login: Callable[..., None], browser_log: Any
) -> None:
    browser_log.allow(r"status of 413")
    files_before = site.storage_files()
    big = (MAX_UPLOAD_MB + 1) * 2**20
    login(page)
    page.goto("/upload")
    assert f"{MAX_UPLOAD_MB} MiB" in page.locator("#upload-limit").inner_text()
    page.set_input_files(
        "#upload-file", {"name": "big.tif", "mimeType": "image/tiff", "buffer": b"\0" * big}
    )
    page.click("#upload-submit")
    message = page.locator("#upload-status.error").inner_text()
    assert "big.tif" in message and f"{MAX_UPLOAD_MB} MiB" in message, message

    # Past the page's own check, the server refuses it too (413, JSON naming the setting).
    refused = page.evaluate(
        """async size => {
            const body = new FormData();
            body.append("file", new Blob([new Uint8Array(size)]), "big.tif");
            body.append("name", "big");
            try { await madrone.api("POST", "/api/uploads", body); return null; }
            catch (error) { return { status: error.status, message: error.message }; }
        }""",
        big,
    )
    assert refused is not None, "the server took an upload over its limit"
    assert refused["status"] == 413
    assert "MADRONE_MAX_UPLOAD_MB" in refused["message"]
    assert site.storage_files() == files_before
    assert not site.api("GET", "/api/datasets?q=big")[1]["datasets"]
