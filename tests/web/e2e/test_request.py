"""Requesting a mosaic from the map: draw a rectangle over the bundled sample mosaic, submit,
watch the job's live progress reach its end, and see its product appear as a layer; an area
the source does not cover is refused beside the form before anything is queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import rasterio

from tests.web.e2e.conftest import JOB_SECONDS, SAMPLE_MOSAIC, MapView, Site, open_map

# Inside the sample mosaic (W -11.6, S 24.68, E -10.9, N 25.28): its suggested wadi area.
CENTRE = (-11.37, 25.03)
ZOOM = 12
DRAWN = (-11.40, 25.05, -11.35, 25.01)  # west, north, east, south


def corner_values(tab: Any) -> list[float]:
    ids = ("#corner-ul-lat", "#corner-ul-lon", "#corner-lr-lat", "#corner-lr-lon")
    return [float(tab.locator(i).input_value() or "nan") for i in ids]


def submit_and_wait(page: Any) -> tuple[Any, str]:
    """Submit the request form; its job's item in #jobs and id once the page shows it
    succeeded."""
    page.click("#request-submit")
    item = page.locator("#jobs [data-job-id]").first
    item.wait_for()
    job_id = item.get_attribute("data-job-id")
    page.wait_for_function(
        """id => {
            const item = document.querySelector(`#jobs [data-job-id="${id}"]`);
            return item && item.querySelector('.job-state').textContent.includes('succeeded');
        }""",
        arg=job_id,
        timeout=JOB_SECONDS * 1000,
    )
    return item, job_id


def test_draw_submit_follow_and_see_the_layer(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    west, north, east, south = DRAWN
    with rasterio.open(SAMPLE_MOSAIC) as mosaic:  # the default source, in degrees
        assert mosaic.bounds.left < west < east < mosaic.bounds.right
        assert mosaic.bounds.bottom < south < north < mosaic.bounds.top
    login(page)
    lon, lat = CENTRE
    open_map(page, lat, lon, ZOOM)
    view = MapView.of(page, lon, lat, ZOOM)
    start = view.to_screen(west, north)
    end = view.to_screen(east, south)
    assert view.contains(*start) and view.contains(*end)

    page.click("#draw-rectangle")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.up()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    page.mouse.move(*end, steps=5)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('corner-lr-lon').value !== ''")
    ul_lat, ul_lon, lr_lat, lr_lon = corner_values(page)
    # One screen pixel at zoom 12 is about 0.0003 degree.
    assert ul_lat == pytest.approx(north, abs=0.001)
    assert ul_lon == pytest.approx(west, abs=0.001)
    assert lr_lat == pytest.approx(south, abs=0.001)
    assert lr_lon == pytest.approx(east, abs=0.001)

    _, before = site.api("GET", "/api/jobs")
    known = {job["id"] for job in before["jobs"]}
    page.select_option("#request-index", "ndvi")
    page.fill("#request-name", "drawn wadi")
    item, job_id = submit_and_wait(page)
    assert job_id not in known
    bar = item.locator("progress.job-progress")
    assert float(bar.get_attribute("max") or bar.evaluate("b => b.max")) > 0
    assert bar.evaluate("b => b.value === b.max && b.max > 0")
    assert item.locator(".job-error").inner_text().strip() == ""

    status, job = site.api("GET", f"/api/jobs/{job_id}")
    assert status == 200 and job["status"] == "succeeded"
    assert job["name"] == "drawn wadi"
    assert job["requester"] == site.admin
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    layer = page.locator(f"#layers li[data-layer-id='{job['dataset_id']}']")
    layer.wait_for()
    assert layer.locator(".layer-visible").is_checked()
    dataset = site.dataset(job["dataset_id"])
    assert dataset["index"] == "NDVI"
    d_west, d_south, d_east, d_north = dataset["bbox"]
    assert d_west == pytest.approx(ul_lon, abs=0.005)
    assert d_north == pytest.approx(ul_lat, abs=0.005)
    assert d_east == pytest.approx(lr_lon, abs=0.005)
    assert d_south == pytest.approx(lr_lat, abs=0.005)


def test_preflight_error_shows_beside_the_form_and_queues_nothing(
    page: Any, site: Site, login: Callable[..., None], browser_log: Any
) -> None:
    browser_log.allow(r"status of 4\d\d")
    login(page)
    lon, lat = CENTRE
    open_map(page, lat, lon, ZOOM)
    _, before = site.api("GET", "/api/jobs")
    # 10 degrees north-east of the sample mosaic: the default source does not cover it.
    for selector, value in (
        ("#corner-ul-lat", "35.05"),
        ("#corner-ul-lon", "-1.40"),
        ("#corner-lr-lat", "35.01"),
        ("#corner-lr-lon", "-1.35"),
    ):
        page.fill(selector, value)
    page.click("#request-submit")
    errors = page.locator("#request-errors")
    page.wait_for_function("() => document.getElementById('request-errors').textContent.trim()")
    assert errors.is_visible()
    # The engine's own message, as the API's preflight gives it for the same area.
    status, answer = site.api(
        "POST",
        "/api/jobs/preflight",
        {"corners": [35.05, -1.40, 35.01, -1.35], "indices": ["ndvi"]},
    )
    assert status >= 400, answer
    assert answer["error"]["message"] in errors.inner_text()
    _, after = site.api("GET", "/api/jobs")
    assert [job["id"] for job in after["jobs"]] == [job["id"] for job in before["jobs"]]
    assert page.locator("#jobs [data-job-id]").count() == 0


def test_a_drawn_polygon_is_the_requested_area(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    """A triangle drawn with #draw-polygon: the corners show its bounds, the job's product
    has data inside the triangle and none in the other half of its bounding box."""
    triangle = [(-11.42, 25.06), (-11.34, 25.06), (-11.42, 24.99)]  # lon, lat; right angle NW
    login(page)
    lon, lat = CENTRE
    open_map(page, lat, lon, ZOOM)
    view = MapView.of(page, lon, lat, ZOOM)
    page.click("#draw-polygon")
    for vertex in [*triangle, triangle[0]]:  # the first vertex again closes it
        x, y = view.to_screen(*vertex)
        page.mouse.move(x, y, steps=4)
        page.mouse.down()
        page.mouse.up()
    page.wait_for_function("() => document.getElementById('corner-lr-lon').value !== ''")
    assert "3 vertices" in page.locator("#request-area").inner_text()
    assert corner_values(page) == pytest.approx([25.06, -11.42, 24.99, -11.34], abs=0.001)

    page.fill("#request-name", "drawn triangle")
    _, job_id = submit_and_wait(page)
    job = site.api("GET", f"/api/jobs/{job_id}")[1]
    assert job["spec"]["area"] is not None
    page.locator(f"#layers li[data-layer-id='{job['dataset_id']}']").wait_for()

    def value_at(lon: float, lat: float) -> Any:
        query = f"/api/values?lon={lon}&lat={lat}&ids={job['dataset_id']}"
        status, body = site.api("GET", query)
        assert status == 200, body
        return body["values"][0]["value"]

    assert isinstance(value_at(-11.41, 25.05), float)  # inside, by the right angle
    assert value_at(-11.35, 25.00) is None  # in the bbox, beyond the hypotenuse
