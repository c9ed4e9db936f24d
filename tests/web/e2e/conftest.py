"""End-to-end harness: a real ``madrone serve`` (web app and master on the local pool) on a
free port of 127.0.0.1 with its own catalogs and storage, real NDVI and NDWI products made by
the engine from the bundled demo scene, and headless Chromium (Debian's ``/usr/bin/chromium``
driven by Playwright).

One server and its products serve the whole session; every test gets a fresh browser context
(no cookies) of 1280 x 800 whose page errors fail it. Without ``/usr/bin/chromium`` every
test here is skipped, saying so; CI installs it (``make system-packages``).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform

from madrone.catalog.db import Catalog
from madrone.catalog.users import create_token
from madrone.products.render import colorize, style_for
from madrone.storage import Storage
from tests.support.processes import stop

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
DEMO_SCENE = REPO_ROOT / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
SAMPLE_MOSAIC = REPO_ROOT / "src/madrone/data/mosaic/S2A_L2A_T29RKH_20200219_mosaic.tif"
SCREENSHOT = REPO_ROOT / "docs/images/map.png"
MADRONE = str(Path(sys.executable).with_name("madrone"))
ADMIN = "ana"
PASSWORD = "a long test passphrase 7"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 20_000
MAX_UPLOAD_MB = 2  # small, so a test can go over it; the tests' own uploads are far smaller
START_SECONDS = 60
JOB_SECONDS = 90


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is absent: install Debian's chromium (make system-packages)"
    )
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


# -- the server --------------------------------------------------------------------------------
@dataclass
class Site:
    """A running ``madrone serve`` and what the tests know about it."""

    url: str
    root: Path
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    token: str
    admin: str
    password: str | None
    password_note: str
    storage_url: str
    central_storage_url: str
    product: dict[str, Any] = field(default_factory=dict)  # the NDVI of the demo scene
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # NDVI and NDWI

    def api(
        self, method: str, path: str, body: Any = None, token: str | None = "admin"
    ) -> tuple[int, Any]:
        """A JSON request to the server (with the admin's token unless ``token=None``)."""
        return http_json(method, self.url + path, body, self.token if token == "admin" else token)

    def upload(self, browser: Any, multipart: dict[str, Any]) -> dict[str, Any]:
        """POST /api/uploads with the admin's token, as any client could; the new dataset."""
        context = browser.new_context(base_url=self.url)
        try:
            response = context.request.post(
                "/api/uploads",
                headers={"Authorization": f"Bearer {self.token}"},
                multipart=multipart,
            )
            assert response.status == 201, response.text()
            return response.json()
        finally:
            context.close()

    def wait_for_job(self, job_id: str, seconds: float = JOB_SECONDS) -> dict[str, Any]:
        """The job once it has ended (any final state); fails on a timeout."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, job = self.api("GET", f"/api/jobs/{job_id}")
            assert status == 200, job
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        pytest.fail(f"job {job_id} did not end in {seconds} s:\n{self.log_tail()}")

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/datasets/{dataset_id}")
        assert status == 200, body
        return body

    def raster_path(self, dataset: dict[str, Any], key: str = "cog") -> str:
        """GDAL's path of a dataset's raster asset in the local (or central) storage."""
        shared = dataset.get("scope") == "shared"
        url = self.central_storage_url if shared else self.storage_url
        with Storage.from_url(url) as storage:
            return storage.gdal_path(dataset["assets"][key]["href"])

    def storage_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "storage").rglob("*") if p.is_file())

    def log_tail(self) -> str:
        """The end of the server's log without its request lines."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if "werkzeug" not in line)[-4000:]


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Status and parsed JSON body (or text) of one HTTP request, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    """The process environment without the developer's MADRONE_* settings, data under root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")}
    env.update(XDG_DATA_HOME=str(root / "xdg"), MADRONE_WORKERS="1", **extra)
    return env


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [MADRONE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"madrone {' '.join(args)}: {done.stderr}"
    return done.stdout


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"madrone serve exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/api/openapi.json", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"madrone serve did not answer on {url} in {START_SECONDS} s:\n{log.read_text()}")


def start_serve(env: dict[str, str], root: Path) -> tuple[subprocess.Popen, str, Path]:
    """``madrone serve`` on a free port; its stdout and stderr go to one log file."""
    port = free_port()
    log = root / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [MADRONE, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
    except BaseException:
        stop(process)
        raise
    return process, url, log


def add_admin(env: dict[str, str]) -> tuple[str | None, str]:
    """Add the admin with a password through the CLI; (password or None, why not)."""
    args = [MADRONE, "user", "add", ADMIN, "--role", "admin", "--password-stdin"]
    done = subprocess.run(
        args, env=env, input=PASSWORD, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0 and "--password-stdin" in done.stderr:
        run_cli(env, "user", "add", ADMIN, "--role", "admin")
        return None, f"no way to give a user a password: {done.stderr.strip()}"
    assert done.returncode == 0, f"madrone user add: {done.stderr}"
    return PASSWORD, ""


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``madrone serve`` with a local and a central SQLite catalog, an admin with a password
    and a token, and one NDVI product of the bundled demo scene made by its master."""
    root = tmp_path_factory.mktemp("e2e")
    env = clean_env(
        root,
        MADRONE_DB_URL=f"sqlite:///{root / 'local.sqlite'}",
        MADRONE_STORAGE_URL=str(root / "storage"),
        MADRONE_CENTRAL_DB_URL=f"sqlite:///{root / 'central.sqlite'}",
        MADRONE_CENTRAL_STORAGE_URL=str(root / "central-storage"),
        MADRONE_PUBLIC_READ="0",
        MADRONE_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )
    for url in (env["MADRONE_DB_URL"], env["MADRONE_CENTRAL_DB_URL"]):
        Catalog(url, upgrade=True).dispose()
    password, note = add_admin(env)
    catalog = Catalog(env["MADRONE_DB_URL"])
    try:
        token = create_token(catalog, ADMIN, "e2e").token
    finally:
        catalog.dispose()
    process, url, log = start_serve(env, root)
    site = Site(
        url=url,
        root=root,
        env=env,
        process=process,
        log=log,
        token=token,
        admin=ADMIN,
        password=password,
        password_note=note,
        storage_url=env["MADRONE_STORAGE_URL"],
        central_storage_url=env["MADRONE_CENTRAL_STORAGE_URL"],
    )
    try:
        body = {"sources": [str(DEMO_SCENE)], "indices": ["ndvi", "ndwi"], "name": "demo"}
        status, job = site.api("POST", "/api/jobs", body)
        assert status == 201, job
        job = site.wait_for_job(job["id"])
        assert job["status"] == "succeeded", job["errors"]
        status, found = site.api("GET", f"/api/datasets?job={job['id']}")
        assert status == 200, found
        site.products = {dataset["index"]: dataset for dataset in found["datasets"]}
        assert sorted(site.products) == ["NDVI", "NDWI"], found
        site.product = site.products["NDVI"]
        yield site
    finally:
        code, _, _ = stop(process)
        assert code == 0, f"madrone serve exited {code}:\n{log.read_text()[-4000:]}"


# -- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class BrowserLog:
    """What the page said: uncaught errors always fail the test; console errors fail it
    unless they match a pattern the test expects (e.g. the 401 of a refused write)."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [m for m in self.console_errors if not any(p.search(m) for p in self.allowed)]


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(browser: Any, site: Site, browser_log: BrowserLog) -> Iterator[Any]:
    """A fresh page (own cookies) at 1280 x 800 on the site; fails on page errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=site.url, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("pageerror", lambda error: browser_log.page_errors.append(str(error)))
    tab.on(
        "console",
        lambda message: (
            browser_log.console_errors.append(f"{message.text} ({message.location.get('url')})")
            if message.type == "error"
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert not browser_log.page_errors, f"uncaught errors in the page: {browser_log.page_errors}"
    assert not browser_log.unexpected(), f"console errors: {browser_log.unexpected()}"


def form_login(tab: Any, name: str, password: str) -> None:
    """Log a page in through the login form; returns once the next page has loaded."""
    tab.goto("/login")
    tab.fill("#login-name", name)
    tab.fill("#login-password", password)
    with tab.expect_navigation():
        tab.click("#login-submit")


@pytest.fixture(scope="session")
def admin_cookies(browser: Any, site: Site) -> list[dict[str, Any]]:
    """The cookies of one login of the admin through the form, for the tests to share."""
    if site.password is None:
        return []
    context = browser.new_context(base_url=site.url)
    try:
        tab = context.new_page()
        form_login(tab, site.admin, site.password)
        assert tab.locator("#who").count() == 1, f"the login form did not log in: {tab.url}"
        return context.cookies()
    finally:
        context.close()


@pytest.fixture
def login(site: Site, admin_cookies: list[dict[str, Any]]) -> Callable[..., None]:
    """Log a page's context in as the admin (skips when no password can be set): with the
    session's shared login, or ``fresh=True`` through the form for a session of its own."""

    def log_in(tab: Any, fresh: bool = False) -> None:
        if site.password is None:
            pytest.skip(site.password_note)
        if fresh:
            form_login(tab, site.admin, site.password)
        else:
            tab.context.add_cookies(admin_cookies)

    return log_in


# -- the map's geometry -----------------------------------------------------------------------
TILE = 256


def lonlat_to_world(lon: float, lat: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel coordinates at ``zoom`` (Leaflet's EPSG:3857 projection)."""
    scale = TILE * 2**zoom
    sin = math.sin(math.radians(max(min(lat, 85.0511287798), -85.0511287798)))
    x = (lon + 180.0) / 360.0 * scale
    y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * scale
    return x, y


def world_to_lonlat(x: float, y: float, zoom: int) -> tuple[float, float]:
    scale = TILE * 2**zoom
    lon = x / scale * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / scale))))
    return lon, lat


@dataclass(frozen=True)
class MapView:
    """Where a Leaflet map centred on (lon, lat) at an integer zoom puts things on the page.

    Leaflet places the world at ``round(project(centre) - size / 2)`` (its pixel origin)
    from the map box's top-left corner, so world pixel ``w`` is at page ``left + w - origin``.
    """

    left: float
    top: float
    width: float
    height: float
    lon: float
    lat: float
    zoom: int

    @classmethod
    def of(cls, tab: Any, lon: float, lat: float, zoom: int) -> MapView:
        box = tab.locator("#map").bounding_box()
        assert box, "#map has no box on the page"
        return cls(box["x"], box["y"], box["width"], box["height"], lon, lat, zoom)

    @property
    def origin(self) -> tuple[float, float]:
        cx, cy = lonlat_to_world(self.lon, self.lat, self.zoom)
        return math.floor(cx - self.width / 2 + 0.5), math.floor(cy - self.height / 2 + 0.5)

    def to_screen(self, lon: float, lat: float) -> tuple[float, float]:
        x, y = lonlat_to_world(lon, lat, self.zoom)
        ox, oy = self.origin
        return self.left + x - ox, self.top + y - oy

    def to_lonlat(self, px: float, py: float) -> tuple[float, float]:
        ox, oy = self.origin
        return world_to_lonlat(ox + px - self.left, oy + py - self.top, self.zoom)

    def contains(self, x: float, y: float) -> bool:
        """Whether a page point is inside the map box, away from its edges."""
        return (
            self.left + 2 <= x < self.left + self.width - 2
            and self.top + 2 <= y < self.top + self.height - 2
        )


def raster_values(path: str, lonlats: list[tuple[float, float]]) -> np.ndarray:
    """Band 1 at WGS84 points (NaN for nodata or outside), read with rasterio."""
    with rasterio.open(path) as ds:
        xs, ys = warp_transform(
            "EPSG:4326", ds.crs, [p[0] for p in lonlats], [p[1] for p in lonlats]
        )
        values = np.full(len(lonlats), np.nan, dtype=np.float64)
        band = ds.read(1, masked=True)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            row, col = ds.index(x, y)
            if 0 <= row < ds.height and 0 <= col < ds.width and not band.mask[row, col]:
                values[i] = float(band[row, col])
    return values


def product_colours(site: Site, dataset: dict[str, Any], lonlats: list[Any]) -> np.ndarray:
    """The RGB (n, 3) an index product's style gives its COG's values at WGS84 points."""
    values = raster_values(site.raster_path(dataset), lonlats)
    assert np.isfinite(values).all(), "a point is outside the product or on nodata"
    style = style_for(dataset["index"], None)
    return colorize(values.astype(np.float32)[np.newaxis, :], style)[:3, 0, :].T


def screenshot(tab: Any) -> np.ndarray:
    """The page as an RGB array (rows, cols, 3) of int16, ready for differences."""
    image = Image.open(io.BytesIO(tab.screenshot())).convert("RGB")
    return np.asarray(image).astype(np.int16)


def inner_points(dataset: dict[str, Any], view: MapView, count: int = 15) -> list[tuple[int, int]]:
    """Screen pixels on a grid inside the product's bbox (inset 15%), inside the map box."""
    west, south, east, north = dataset["bbox"]
    points = []
    for fy in np.linspace(0.15, 0.85, count):
        for fx in np.linspace(0.15, 0.85, count):
            lon, lat = west + fx * (east - west), south + fy * (north - south)
            x, y = view.to_screen(lon, lat)
            if view.contains(x, y):
                points.append((int(x), int(y)))
    return points


def pixels(image: np.ndarray, points: list[tuple[int, int]]) -> np.ndarray:
    return np.array([image[y, x] for x, y in points], dtype=np.int16)


def open_map(tab: Any, lat: float, lon: float, zoom: int, layers: str | None = None) -> None:
    """A fresh load of the map page with a view (and layers) from the URL hash, the
    contract's map state; returns once the map's own hash shows that view."""
    hash_text = f"map={zoom}/{lat:.6f}/{lon:.6f}" + (f"&layers={layers}" if layers else "")
    tab.goto("about:blank")  # a hash change alone would not reload the page
    tab.goto(f"/#{hash_text}")
    tab.wait_for_selector("#map")
    tab.wait_for_function(
        """([zoom, lat, lon, pixel]) => {
            const found = /map=(\\d+)\\/([-\\d.]+)\\/([-\\d.]+)/.exec(location.hash);
            return found && Number(found[1]) === zoom && Math.abs(found[2] - lat) < pixel
                && Math.abs(found[3] - lon) < pixel;
        }""",
        arg=[zoom, lat, lon, 360 / (TILE * 2**zoom)],  # within a screen pixel
    )


def wait_for_tiles(tab: Any, dataset_id: str) -> None:
    """Until the map shows at least one tile of ``dataset_id`` and every tile has loaded."""
    tab.wait_for_function(
        """id => {
            const tiles = [...document.querySelectorAll('#map img.leaflet-tile')];
            const ours = tiles.filter(t => t.src.includes('/tiles/' + id + '/'));
            return ours.length > 0 && ours.every(t => t.complete &&
                (t.classList.contains('leaflet-tile-loaded') || t.naturalWidth === 0));
        }""",
        arg=dataset_id,
    )
    tab.wait_for_timeout(300)  # the fade-in of the last tiles


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
