"""The map page with the session's NDVI product as a layer from the URL hash: its tiles on
screen carry the product's colormap at the COG's values, its legend is the product's, and a
click reads the COG's value. Writes the README screenshot (docs/images/map.png) when
MADRONE_WRITE_SCREENSHOT=1 or when the file is missing, so a CI run leaves the tree clean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform

from madrone.products.render import lookup_table, style_for
from tests.web.e2e.conftest import (
    SCREENSHOT,
    MapView,
    Site,
    env_flag,
    inner_points,
    open_map,
    pixels,
    product_colours,
    screenshot,
    wait_for_tiles,
)

ZOOM = 13  # the demo product (8 km) fills about half of the map at 1280 x 800


def hex_colour(rgb: Any) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))


def centre_of(dataset: dict[str, Any]) -> tuple[float, float]:
    west, south, east, north = dataset["bbox"]
    return (west + east) / 2, (south + north) / 2


def test_product_tiles_carry_the_colormap(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    product = site.product
    login(page)
    lon, lat = centre_of(product)
    open_map(page, lat, lon, ZOOM, f"{product['id']}:1")
    item = page.locator(f"#layers li[data-layer-id='{product['id']}']")
    item.wait_for()
    assert item.locator(".layer-visible").is_checked()
    assert float(item.locator(".layer-opacity").input_value()) == 1.0
    wait_for_tiles(page, product["id"])

    # The legend: the product's colormap from -1 to 1, 11 stops, drawn in the layer item.
    legend = page.request.get(f"/tiles/{product['id']}/legend")
    assert legend.status == 200
    legend = legend.json()
    style = style_for(product["index"], None)
    lut = lookup_table(style.colormap)
    assert (legend["min"], legend["max"]) == (style.vmin, style.vmax)
    assert len(legend["colors"]) == 11
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in legend["colors"]])
    want = lut[np.rint(np.linspace(0, 255, 11)).astype(int), :3].astype(int)
    assert np.abs(stops - want).max() <= 1, (legend["colors"], [hex_colour(c) for c in want])
    assert item.locator(".legend").is_visible()
    legend_text = item.locator(".legend").inner_text()
    assert "-1" in legend_text.replace("\u2212", "-") and "1" in legend_text

    image = screenshot(page)
    assert image.shape == (800, 1280, 3)

    # Every sampled screen pixel inside the footprint is the colour the product's style gives
    # the COG's value there (pixel centres mapped through Leaflet's rounded pixel origin).
    view = MapView.of(page, lon, lat, ZOOM)
    points = inner_points(product, view)
    assert len(points) > 100, "the product's footprint is not on the map at this view"
    lonlats = [view.to_lonlat(x + 0.5, y + 0.5) for x, y in points]
    expected = product_colours(site, product, lonlats)
    seen = pixels(image, points)
    difference = np.abs(seen - expected).max(axis=1)
    matched = np.mean(difference <= 1)
    assert matched >= 0.95, (
        f"only {matched:.0%} of {len(points)} pixels in the footprint have the colour of the "
        f"COG's value; worst differences {sorted(difference)[-5:]}"
    )
    # ...and every one of them is a colour of the colormap, whatever value it shows.
    nearest = np.abs(seen[:, np.newaxis, :] - lut[np.newaxis, :, :3].astype(np.int16))
    assert nearest.max(axis=2).min(axis=1).max() <= 2
    # The values cover a range, so this is not one flat colour.
    assert len({tuple(c) for c in seen}) > 20

    # Outside the footprint the map shows its own background (a flat colour, maybe with grid
    # lines), never a colour of the colormap.
    x, _ = view.to_screen(product["bbox"][0], lat)
    left = int(view.left + 40)
    assert x - left > 30, "no room left of the product to look at the background"
    patch = image[int(view.top + view.height / 2) :][:8, left : left + 8].reshape(-1, 3)
    background = parse_rgb(
        page.evaluate("() => getComputedStyle(document.getElementById('map')).backgroundColor")
    )
    assert background in {tuple(int(v) for v in pixel) for pixel in patch}
    patch_to_lut = np.abs(patch[:, np.newaxis, :].astype(np.int16) - lut[np.newaxis, :, :3])
    assert patch_to_lut.max(axis=2).min(axis=1).min() > 2, "product colours outside its bbox"

    # The README's screenshot, once the map is known to be right (see the module docstring).
    if env_flag("MADRONE_WRITE_SCREENSHOT") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(SCREENSHOT, optimize=True)


def parse_rgb(css: str) -> tuple[int, int, int]:
    numbers = css[css.index("(") + 1 : css.index(")")].split(",")
    return tuple(int(float(n)) for n in numbers[:3])  # type: ignore[return-value]


def test_click_reads_the_cogs_value(page: Any, site: Site, login: Callable[..., None]) -> None:
    """Click the centre of a COG pixel (at zoom 17 a screen pixel is 1 m, a COG pixel 10 m):
    the popup's value is the COG's there, to 4 decimals, with the product's date."""
    product = site.product
    path = site.raster_path(product)
    with rasterio.open(path) as ds:
        row, col = ds.height // 3, ds.width // 3
        x, y = ds.xy(row, col)
        value = float(ds.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])
        (lon,), (lat,) = warp_transform(ds.crs, "EPSG:4326", [x], [y])
    login(page)
    open_map(page, lat, lon, 17, f"{product['id']}:1")
    wait_for_tiles(page, product["id"])
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    row_of = f".pixel-values [data-layer-id='{product['id']}']"
    page.wait_for_selector(f"{row_of} .value")
    assert page.locator(f"{row_of} .value").inner_text() == f"{value:.4f}"
    assert "2016" in page.locator(f"{row_of} .date").inner_text()

    # The same layer, clicked where it has no data: the popup says so.
    outside = product["bbox"][0] - 0.05
    open_map(page, lat, outside, 17, f"{product['id']}:1")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f'() => [...document.querySelectorAll("{row_of} .value")]'
        ".some(e => e.textContent === 'no data')"
    )
