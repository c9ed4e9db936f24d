"""The datasets page against the REST API: each search (text, index, in the map's view), sort
and page lists exactly the rows the API gives for it; a download link returns the stored
file's bytes; deleting a dataset removes its row, its catalog entry and its files."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from madrone.catalog.db import Catalog
from madrone.catalog.ingest import add_point
from tests.web.e2e.conftest import Site

PAGE = 50  # rows per page of the datasets page, the API's default limit

DOOMED = {
    "type": "Feature",
    "properties": {"n": 1},
    "geometry": {"type": "Point", "coordinates": [-75.6, 37.6]},
}


def row_ids(tab: Any, table: str) -> list[str]:
    return tab.eval_on_selector_all(
        f"{table} tbody tr[data-dataset-id]", "rows => rows.map(r => r.dataset.datasetId)"
    )


def expect_rows(tab: Any, table: str, expected: list[str], seconds: float = 15) -> None:
    """Wait until the table lists exactly ``expected`` (in order); fail showing both."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if row_ids(tab, table) == expected:
            return
        tab.wait_for_timeout(100)
    assert row_ids(tab, table) == expected


def api_ids(site: Site, **query: str) -> list[str]:
    status, body = site.api("GET", "/api/datasets?" + urlencode({"limit": "50", **query}))
    assert status == 200, body
    return [dataset["id"] for dataset in body["datasets"]]


def test_searches_and_sort_list_what_the_api_finds(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    login(page)
    page.goto("/datasets")
    expect_rows(page, "#local-table", api_ids(site))

    page.fill("#search-index", "ndwi")
    page.click("#search-submit")
    expect_rows(page, "#local-table", api_ids(site, index="ndwi"))
    assert row_ids(page, "#local-table") == [site.products["NDWI"]["id"]]
    assert page.locator("#local-table tbody tr .index").inner_text().upper() == "NDWI"

    page.fill("#search-index", "")
    page.fill("#search-q", "demo")
    page.click("#search-submit")
    expected = api_ids(site, q="demo")
    assert set(expected) >= {site.products["NDVI"]["id"], site.products["NDWI"]["id"]}
    expect_rows(page, "#local-table", expected)

    # Only what is in the map's last view (the map keeps it in localStorage).
    page.fill("#search-q", "")
    west, south, east, north = site.product["bbox"]
    page.evaluate(
        "bbox => localStorage.setItem('madrone.view', JSON.stringify({bbox}))",
        [west, south, east, north],
    )
    page.goto("/datasets")
    page.check("#search-in-view")
    page.click("#search-submit")
    in_view = api_ids(site, bbox=f"{west},{south},{east},{north}")
    assert site.product["id"] in in_view
    expect_rows(page, "#local-table", in_view)
    page.uncheck("#search-in-view")

    # Sorted by name, one way then the other.
    page.click("#search-submit")
    page.click("th button[data-sort=name]")
    page.wait_for_timeout(300)
    ascending = api_ids(site, sort="name", asc="1")
    descending = api_ids(site, sort="name")
    first = row_ids(page, "#local-table")
    if first != ascending:
        expect_rows(page, "#local-table", descending)
    page.click("th button[data-sort=name]")
    expect_rows(page, "#local-table", descending if first == ascending else ascending)


def test_download_gives_the_stored_bytes(page: Any, site: Site, login: Callable[..., None]) -> None:
    login(page)
    page.goto("/datasets")
    product = site.product
    row = page.locator(f"#local-table tr[data-dataset-id='{product['id']}']")
    row.wait_for()
    links = row.locator("a.download")
    assert links.count() >= 1
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    cog = [href for href in hrefs if href.endswith("/assets/cog")]
    assert cog, f"no download link for the COG among {hrefs}"
    response = page.request.get(cog[0])
    assert response.status == 200
    assert "attachment" in response.headers.get("content-disposition", "")
    stored = Path(site.raster_path(product)).read_bytes()
    assert hashlib.sha256(response.body()).hexdigest() == hashlib.sha256(stored).hexdigest()


def test_delete_removes_the_row_the_entry_and_the_files(
    page: Any, site: Site, login: Callable[..., None], browser: Any
) -> None:
    doomed = site.upload(
        browser,
        {
            "file": {
                "name": "doomed.geojson",
                "mimeType": "application/geo+json",
                "buffer": json.dumps(DOOMED).encode(),
            },
            "name": "doomed e2e geojson",
        },
    )
    files = {asset["href"] for asset in doomed["assets"].values()}
    assert files
    before = site.storage_files()
    assert any(str(path).endswith(href.split("/")[-1]) for href in files for path in before)

    login(page)
    page.goto("/datasets")
    row = page.locator(f"#local-table tr[data-dataset-id='{doomed['id']}']")
    row.wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator(".delete").click()
    row.wait_for(state="detached")
    assert site.api("GET", f"/api/datasets/{doomed['id']}")[0] == 404
    gone = set(before) - set(site.storage_files())
    assert gone and all(any(str(p).endswith(h.split("/")[-1]) for h in files) for p in gone)
    assert not any(str(p).endswith(h.split("/")[-1]) for h in files for p in site.storage_files())


def test_pages_follow_the_apis_cursor(page: Any, site: Site, login: Callable[..., None]) -> None:
    """More matches than a page holds: Next shows the rest, Previous the first page again,
    each exactly the API's pages for the same search."""
    catalog = Catalog(site.env["MADRONE_DB_URL"])
    try:
        for number in range(PAGE + 3):  # far from the other tests' data
            add_point(catalog, lat=-40.0 - number / 100, lon=150.0, name=f"paged pt {number:02d}",
                      description="", owner=site.admin)  # fmt: skip
    finally:
        catalog.dispose()
    status, first = site.api("GET", f"/api/datasets?q=paged&limit={PAGE}")
    assert status == 200 and first["next_cursor"]
    rest = site.api("GET", f"/api/datasets?q=paged&limit={PAGE}&cursor={first['next_cursor']}")[1]
    assert len(rest["datasets"]) == 3

    login(page)
    page.goto("/datasets")
    page.fill("#search-q", "paged")
    page.click("#search-submit")
    expect_rows(page, "#local-table", [d["id"] for d in first["datasets"]])
    assert page.locator("#prev-page").is_disabled()
    page.click("#next-page")
    expect_rows(page, "#local-table", [d["id"] for d in rest["datasets"]])
    assert page.locator("#next-page").is_disabled()
    page.click("#prev-page")
    expect_rows(page, "#local-table", [d["id"] for d in first["datasets"]])
