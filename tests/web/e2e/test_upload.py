"""Uploading a GeoTIFF through the upload page: it is listed in the local table, shared to
the central catalog (then listed in the shared table), and drawn on the map as a grey ramp
of its own values."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from tests.web.e2e.conftest import MapView, Site, raster_values, wait_for_tiles

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
    image = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    seen = np.array([image[int(y), int(x)] for x, y in points])
    assert (seen[:, 0] == seen[:, 1]).all() and (seen[:, 1] == seen[:, 2]).all(), seen
    assert (np.diff(seen[:, 0]) > 0).all(), f"not brighter eastwards: {seen[:, 0]}"
    values = raster_values(stored, [view.to_lonlat(int(x) + 0.5, int(y) + 0.5) for x, y in points])
    expected = np.rint(values / (COLUMNS - 1) * 255)
    assert np.abs(seen[:, 0] - expected).max() <= 8, (seen[:, 0], expected)


def view_from_hash(tab: Any) -> MapView:
    """The map's view as its URL hash states it (``map=zoom/lat/lon``)."""
    found = re.search(r"map=(\d+)/([-\d.]+)/([-\d.]+)", tab.evaluate("() => location.hash"))
    assert found, f"no map= view in the hash {tab.url}"
    zoom, lat, lon = int(found[1]), float(found[2]), float(found[3])
    return MapView.of(tab, lon, lat, zoom)
