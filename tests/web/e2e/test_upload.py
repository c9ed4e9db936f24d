"""Uploading through the upload page: a GeoTIFF is listed in the local table, shared to the
central catalog (then listed in the shared table) and drawn on the map as a grey ramp of its
own values; an unplaced raster asks for corners; a PNG placed by corners is an image overlay
there; the point form adds a point."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.errors
from PIL import Image
from rasterio.transform import from_origin

from tests.web.e2e.conftest import (
    MapView,
    Site,
    pixels,
    raster_values,
    screenshot,
    wait_for_tiles,
)

NAME = "e2e gradient upload"
COLUMNS, ROWS = 120, 90


def write_gradient(path: Path) -> None:
    """A float32 GeoTIFF (UTM 33N, 30 m) whose value is its column: 0 west to 119 east."""
    data = np.tile(np.arange(COLUMNS, dtype=np.float32), (ROWS, 1))
    profile = {"driver": "GTiff", "width": COLUMNS, "height": ROWS, "count": 1,
               "dtype": "float32", "crs": "EPSG:32633", "nodata": -9999.0,
               "transform": from_origin(500000.0, 5000000.0, 30.0, 30.0)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)


def test_upload_list_share_and_draw_a_geotiff(
    page: Any, site: Site, login: Callable[..., None], tmp_path: Path
) -> None:
    source = tmp_path / "gradient.tif"
    write_gradient(source)
    login(page)
    page.goto("/upload")
    page.set_input_files("#upload-file", str(source))
    page.fill("#upload-name", NAME)
    page.fill("#upload-description", "a west-to-east ramp")
    page.click("#upload-submit")
    status = page.locator("#upload-status")
    status.locator("a").first.wait_for()
    assert "error" not in (status.get_attribute("class") or "")
    assert NAME in status.inner_text()

    found = site.api("GET", f"/api/datasets?q={NAME.replace(' ', '+')}")[1]["datasets"]
    assert [d["name"] for d in found] == [NAME]
    dataset = found[0]
    assert dataset["kind"] == "geotiff"
    assert dataset["stats"]["min"] == 0 and dataset["stats"]["max"] == COLUMNS - 1
    stored = site.raster_path(dataset, "data")
    assert Path(stored).name != source.name, "the upload kept its file name in storage"

    # Listed in the local table.
    page.goto("/datasets")
    row = page.locator(f"#local-table tr[data-dataset-id='{dataset['id']}']")
    row.wait_for()
    assert row.locator(".name").inner_text() == NAME
    assert row.locator(".kind").inner_text() == "geotiff"
    assert row.locator(".owner").inner_text() == site.admin

    # Shared: in the central catalog and the shared table.
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator(".share").click()
    shared_row = page.locator("#shared-table tr[data-dataset-id]", has_text=NAME)
    shared_row.first.wait_for()
    shared = site.api("GET", f"/api/datasets?catalog=shared&q={NAME.replace(' ', '+')}")[1]
    assert [d["name"] for d in shared["datasets"]] == [NAME]
    assert shared_row.first.get_attribute("data-dataset-id") == shared["datasets"][0]["id"]
    assert shared_row.locator(".name").first.inner_text() == NAME

    # Drawn on the map from the local table's "show on map" link: grey, brighter eastwards,
    # each sampled pixel the grey of the stored raster's value there.
    page.click("#tab-local")
    row.locator("a.show-on-map").click()
    page.wait_for_url(re.compile(r".*#.*layers="))
    wait_for_tiles(page, dataset["id"])
    view = view_from_hash(page)
    west, south, east, north = dataset["bbox"]
    lat = (south + north) / 2
    xs = np.linspace(west + 0.1 * (east - west), east - 0.1 * (east - west), 9)
    points = [view.to_screen(lon, lat) for lon in xs]
    assert all(view.contains(*p) for p in points), "the dataset is not inside the map's view"
    image = screenshot(page)
    seen = np.array([image[int(y), int(x)] for x, y in points])
    assert (seen[:, 0] == seen[:, 1]).all() and (seen[:, 1] == seen[:, 2]).all(), seen
    assert (np.diff(seen[:, 0]) > 0).all(), f"not brighter eastwards: {seen[:, 0]}"
    values = raster_values(stored, [view.to_lonlat(int(x) + 0.5, int(y) + 0.5) for x, y in points])
    expected = np.rint(values / (COLUMNS - 1) * 255)
    assert np.abs(seen[:, 0] - expected).max() <= 8, (seen[:, 0], expected)

    # The shared copy draws too, from the central storage.
    shared_id = shared["datasets"][0]["id"]
    assert shared_id != dataset["id"]
    page.goto("/datasets?tab=shared")
    page.locator(f"#shared-table tr[data-dataset-id='{shared_id}'] a.show-on-map").click()
    page.wait_for_url(re.compile(rf".*layers={shared_id}"))
    wait_for_tiles(page, shared_id)
    view = view_from_hash(page)
    points = [view.to_screen(lon, lat) for lon in xs]
    seen_shared = pixels(screenshot(page), [(int(x), int(y)) for x, y in points])
    assert (np.diff(seen_shared[:, 0]) > 0).all(), f"shared: {seen_shared[:, 0]}"


def view_from_hash(tab: Any) -> MapView:
    """The map's view as its URL hash states it (``map=zoom/lat/lon``)."""
    found = re.search(r"map=(\d+)/([-\d.]+)/([-\d.]+)", tab.evaluate("() => location.hash"))
    assert found, f"no map= view in the hash {tab.url}"
    zoom, lat, lon = int(found[1]), float(found[2]), float(found[3])
    return MapView.of(tab, lon, lat, zoom)


# An image placed by two corners (north-west of the demo product, clear of it).
CORNERS = (37.78, -75.80, 37.74, -75.72)  # ul_lat, ul_lon, lr_lat, lr_lon
TIFF_CORNERS = (37.58, -75.80, 37.54, -75.72)


def write_unplaced_tiff(path: Path) -> None:
    """A GeoTIFF-looking file with no CRS and no transform: it needs corners."""
    data = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint16"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data, 1)


def test_images_are_placed_by_corners(
    page: Any, site: Site, login: Callable[..., None], tmp_path: Path, browser_log: Any
) -> None:
    """A raster without georeferencing: the server asks for corners (the page shows the
    fieldset and the message), then places it by them. A PNG: the page asks up front;
    placed, it is an image overlay whose box on the map is its corners', west half red and
    east half blue as drawn."""
    browser_log.allow(r"status of 422")
    unplaced = tmp_path / "unplaced.tif"
    write_unplaced_tiff(unplaced)
    login(page)
    page.goto("/upload")
    assert page.locator("#upload-corners").is_hidden()
    page.set_input_files("#upload-file", str(unplaced))
    page.click("#upload-submit")
    page.locator("#upload-status.error").wait_for()
    assert "corners" in page.locator("#upload-status").inner_text().lower()
    assert page.locator("#upload-corners").is_visible()
    assert not site.api("GET", "/api/datasets?q=unplaced")[1]["datasets"]
    # Given corners, the same file is placed north-up by them.
    for field, value in zip(("ul-lat", "ul-lon", "lr-lat", "lr-lon"), TIFF_CORNERS, strict=True):
        page.fill(f"#upload-{field}", str(value))
    page.click("#upload-submit")
    page.locator("#upload-status.success a.show-on-map").wait_for()
    placed = site.api("GET", "/api/datasets?q=unplaced")[1]["datasets"]
    assert [d["kind"] for d in placed] == ["geotiff"]
    ul_lat, ul_lon, lr_lat, lr_lon = TIFF_CORNERS
    assert placed[0]["bbox"] == pytest.approx([ul_lon, lr_lat, lr_lon, ul_lat], abs=1e-6)

    photo = tmp_path / "photo.png"
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40] = (200, 30, 30)
    pixels[:, 40:] = (30, 30, 200)
    Image.fromarray(pixels).save(photo)
    page.goto("/upload")
    page.set_input_files("#upload-file", str(photo))
    assert page.locator("#upload-corners").is_visible()  # a PNG needs corners: asked at once
    page.fill("#upload-name", "e2e photo")
    for field, value in zip(("ul-lat", "ul-lon", "lr-lat", "lr-lon"), CORNERS, strict=True):
        page.fill(f"#upload-{field}", str(value))
    page.click("#upload-submit")
    page.locator("#upload-status.success a.show-on-map").wait_for()
    found = site.api("GET", "/api/datasets?q=photo")[1]["datasets"]
    assert [d["name"] for d in found] == ["e2e photo"]
    image = found[0]
    assert image["kind"] == "image"
    ul_lat, ul_lon, lr_lat, lr_lon = CORNERS
    assert image["bbox"] == pytest.approx([ul_lon, lr_lat, lr_lon, ul_lat], abs=1e-6)

    page.click("#upload-status a.show-on-map")
    overlay = page.locator(f"#map img.leaflet-image-layer[src*='/api/datasets/{image['id']}/']")
    overlay.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 80", arg=overlay.element_handle()
    )
    view = view_from_hash(page)
    box = overlay.bounding_box()
    left, top = view.to_screen(ul_lon, ul_lat)
    right, bottom = view.to_screen(lr_lon, lr_lat)
    assert box["x"] == pytest.approx(left, abs=2) and box["y"] == pytest.approx(top, abs=2)
    assert box["x"] + box["width"] == pytest.approx(right, abs=2)
    assert box["y"] + box["height"] == pytest.approx(bottom, abs=2)
    shot = screenshot(page)
    west_half = shot[int(top + box["height"] / 2), int(left + box["width"] / 4)]
    east_half = shot[int(top + box["height"] / 2), int(left + 3 * box["width"] / 4)]
    assert west_half[0] > west_half[2] + 100 and east_half[2] > east_half[0] + 100


def test_the_point_form_adds_a_point(page: Any, site: Site, login: Callable[..., None]) -> None:
    login(page)
    page.goto("/upload")
    page.fill("#point-lat", "37.61")
    page.fill("#point-lon", "-75.70")
    page.fill("#point-name", "e2e well")
    page.fill("#point-description", "a sampling well")
    page.click("#point-submit")
    page.locator("#point-status.success a").first.wait_for()
    found = site.api("GET", "/api/datasets?q=well")[1]["datasets"]
    assert [(d["name"], d["kind"], d["description"]) for d in found] == [
        ("e2e well", "point", "a sampling well")
    ]
    assert found[0]["bbox"] == pytest.approx([-75.70, 37.61, -75.70, 37.61], abs=1e-9)


def test_geojson_is_a_vector_layer_with_text_popups(
    page: Any, site: Site, login: Callable[..., None], tmp_path: Path
) -> None:
    ring = [[-75.80, 37.60], [-75.76, 37.60], [-75.76, 37.63], [-75.80, 37.63], [-75.80, 37.60]]
    feature = {
        "type": "Feature",
        "properties": {"field": "north marsh", "area_ha": 12.5},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    source = tmp_path / "marsh.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    login(page)
    page.goto("/upload")
    page.set_input_files("#upload-file", str(source))
    assert page.locator("#upload-corners").is_hidden()
    page.fill("#upload-name", "e2e marsh")
    page.click("#upload-submit")
    page.locator("#upload-status.success a.show-on-map").wait_for()
    found = site.api("GET", "/api/datasets?q=marsh")[1]["datasets"]
    assert [(d["name"], d["kind"]) for d in found] == [("e2e marsh", "vector")]
    assert found[0]["bbox"] == pytest.approx([-75.80, 37.60, -75.76, 37.63], abs=1e-9)

    page.click("#upload-status a.show-on-map")
    page.locator(f"#layers li[data-layer-id='{found[0]['id']}']").wait_for()
    shape = page.locator("#map path.leaflet-interactive").first
    shape.wait_for()
    view = view_from_hash(page)
    box = shape.bounding_box()
    left, top = view.to_screen(-75.80, 37.63)
    right, bottom = view.to_screen(-75.76, 37.60)
    assert box["x"] == pytest.approx(left, abs=3) and box["y"] == pytest.approx(top, abs=3)
    assert box["x"] + box["width"] == pytest.approx(right, abs=3)
    assert box["y"] + box["height"] == pytest.approx(bottom, abs=3)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    popup = page.locator("#map .leaflet-popup-content")
    popup.wait_for()
    assert "north marsh" in popup.inner_text() and "12.5" in popup.inner_text()
