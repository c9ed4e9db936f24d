"""The layer list's controls reach the pixels and the URL: hiding a layer leaves the map's
background, half opacity blends the product with it, and the hash records both; the swipe
shows one product left of its divider and the other right of it, following the divider."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.web.e2e.conftest import (
    MapView,
    Site,
    inner_points,
    open_map,
    pixels,
    product_colours,
    screenshot,
    wait_for_tiles,
)

ZOOM = 13


def centre_of(dataset: dict[str, Any]) -> tuple[float, float]:
    west, south, east, north = dataset["bbox"]
    return (west + east) / 2, (south + north) / 2


def wait_for_hash(tab: Any, pattern: str) -> None:
    tab.wait_for_function("p => new RegExp(p).test(location.hash)", arg=pattern)


def test_hiding_and_opacity_reach_the_pixels_and_the_url(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    product = site.product
    layer_id = product["id"]
    login(page)
    lon, lat = centre_of(product)
    open_map(page, lat, lon, ZOOM, f"{layer_id}:1")
    wait_for_tiles(page, layer_id)
    view = MapView.of(page, lon, lat, ZOOM)
    points = inner_points(product, view, 8)
    shown = pixels(screenshot(page), points)
    expected = product_colours(site, product, [view.to_lonlat(x + 0.5, y + 0.5) for x, y in points])
    assert np.mean(np.abs(shown - expected).max(axis=1) <= 1) >= 0.95

    item = page.locator(f"#layers li[data-layer-id='{layer_id}']")
    item.locator(".layer-visible").uncheck()
    wait_for_hash(page, f"layers=~{layer_id}:1")
    page.wait_for_timeout(300)
    hidden = pixels(screenshot(page), points)
    assert np.mean(np.abs(hidden - shown).max(axis=1) > 10) >= 0.9, "hiding changed nothing"

    item.locator(".layer-visible").check()
    item.locator(".layer-opacity").evaluate(
        """input => {
            input.value = "0.5";
            input.dispatchEvent(new Event("input", { bubbles: true }));
            input.dispatchEvent(new Event("change", { bubbles: true }));
        }"""
    )
    wait_for_hash(page, f"layers={layer_id}:0\\.5(&|$)")
    wait_for_tiles(page, layer_id)
    half = pixels(screenshot(page), points)
    blend = (shown + hidden) / 2
    assert np.abs(half - blend).max() <= 2, np.abs(half - blend).max(axis=1)

    # The URL now reproduces the view: a fresh page from it shows the same half-opaque layer.
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    page.locator(f"#layers li[data-layer-id='{layer_id}']").wait_for()
    wait_for_tiles(page, layer_id)
    again = pixels(screenshot(page), points)
    assert np.abs(again - half).max() <= 1
    assert (
        float(page.locator(f"#layers li[data-layer-id='{layer_id}'] .layer-opacity").input_value())
        == 0.5
    )


def test_swipe_shows_each_product_on_its_side(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    ndvi, ndwi = site.products["NDVI"], site.products["NDWI"]
    login(page)
    lon, lat = centre_of(ndvi)
    open_map(page, lat, lon, ZOOM, f"{ndvi['id']}:1,{ndwi['id']}:1&swipe={ndvi['id']},{ndwi['id']}")
    wait_for_tiles(page, ndvi["id"])
    wait_for_tiles(page, ndwi["id"])
    assert page.locator("#swipe-left").input_value() == ndvi["id"]
    assert page.locator("#swipe-right").input_value() == ndwi["id"]
    assert page.locator("#swipe-toggle").get_attribute("aria-pressed") == "true"
    divider = page.locator("#swipe-divider")
    assert divider.is_visible()
    view = MapView.of(page, lon, lat, ZOOM)
    points = inner_points(ndvi, view, 12)

    def check_sides(at: float) -> None:
        image = screenshot(page)
        lonlats = [view.to_lonlat(x + 0.5, y + 0.5) for x, y in points]
        left = [i for i, (x, _) in enumerate(points) if x < at - 3]
        right = [i for i, (x, _) in enumerate(points) if x > at + 3]
        assert len(left) > 10 and len(right) > 10, (at, len(left), len(right))
        seen = pixels(image, points)
        for side, dataset in ((left, ndvi), (right, ndwi)):
            want = product_colours(site, dataset, [lonlats[i] for i in side])
            match = np.mean(np.abs(seen[side] - want).max(axis=1) <= 1)
            assert match >= 0.95, f"{dataset['index']} on {len(side)} pixels: {match:.0%}"

    box = divider.bounding_box()
    middle = box["x"] + box["width"] / 2
    assert view.contains(middle, view.top + view.height / 2), (middle, view.left, view.width)
    check_sides(middle)

    # Drag the divider a third of the way left: more of the right product shows.
    target = middle - (middle - view.to_screen(ndvi["bbox"][0], lat)[0]) / 2
    page.mouse.move(middle, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(target, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    box = divider.bounding_box()
    moved = box["x"] + box["width"] / 2
    assert abs(moved - target) <= 3, (moved, target)
    check_sides(moved)
    assert re.search(f"swipe={ndvi['id']},{ndwi['id']}", page.url)


def test_order_remove_zoom_and_the_stored_view(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    """Two overlapping products: the last listed draws on top; moving the other up puts it on
    top (pixels and hash); removing it leaves the first; "zoom to layer" fits the product;
    the map keeps its view's bbox in localStorage."""
    ndvi, ndwi = site.products["NDVI"], site.products["NDWI"]
    login(page)
    lon, lat = centre_of(ndvi)
    open_map(page, lat, lon, ZOOM, f"{ndvi['id']}:1,{ndwi['id']}:1")
    wait_for_tiles(page, ndvi["id"])
    wait_for_tiles(page, ndwi["id"])
    # The list shows the top layer first.
    assert page.eval_on_selector_all(
        "#layers li[data-layer-id]", "items => items.map(i => i.dataset.layerId)"
    ) == [ndwi["id"], ndvi["id"]]
    view = MapView.of(page, lon, lat, ZOOM)
    points = inner_points(ndvi, view, 8)
    lonlats = [view.to_lonlat(x + 0.5, y + 0.5) for x, y in points]

    def showing(dataset: dict[str, Any]) -> float:
        seen = pixels(screenshot(page), points)
        return np.mean(np.abs(seen - product_colours(site, dataset, lonlats)).max(axis=1) <= 1)

    assert showing(ndwi) >= 0.95
    page.locator(f"#layers li[data-layer-id='{ndvi['id']}'] .layer-up").click()
    wait_for_hash(page, f"layers={ndwi['id']}:1,{ndvi['id']}:1")
    page.wait_for_timeout(300)
    assert showing(ndvi) >= 0.95
    assert page.locator(f"#layers li[data-layer-id='{ndvi['id']}'] .layer-up").is_disabled()

    page.locator(f"#layers li[data-layer-id='{ndvi['id']}'] .layer-remove").click()
    page.locator(f"#layers li[data-layer-id='{ndvi['id']}']").wait_for(state="detached")
    wait_for_hash(page, f"layers={ndwi['id']}:1($|&)")
    page.wait_for_timeout(300)
    assert showing(ndwi) >= 0.95

    stored = page.evaluate("() => JSON.parse(localStorage.getItem('madrone.view'))")
    west, north = view.to_lonlat(view.left, view.top)
    east, south = view.to_lonlat(view.left + view.width, view.top + view.height)
    assert stored["bbox"] == pytest.approx([west, south, east, north], abs=1e-4)

    # Far away, then "zoom to layer": the view fits the product again.
    open_map(page, 10.0, 10.0, 5, f"{ndwi['id']}:1")
    page.locator(f"#layers li[data-layer-id='{ndwi['id']}'] .layer-zoom").click()
    page.wait_for_function(
        "([lon, lat]) => { const m = /map=(\\d+)\\/([-\\d.]+)\\/([-\\d.]+)/.exec(location.hash);"
        " return m && Math.abs(m[2] - lat) < 0.01 && Math.abs(m[3] - lon) < 0.01; }",
        arg=[lon, lat],
    )
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('madrone.view'))")
    w, s, e, n = ndwi["bbox"]
    assert stored["bbox"][0] <= w and stored["bbox"][1] <= s
    assert stored["bbox"][2] >= e and stored["bbox"][3] >= n
    assert (stored["bbox"][2] - stored["bbox"][0]) < 4 * (e - w)  # fitted, not a world view
