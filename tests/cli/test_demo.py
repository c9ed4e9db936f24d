"""``madrone demo`` ends by serving the map: its products are datasets of a site in the
output folder, with tiles, behind a one-time login link printed for the first admin."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.processes import stop


def read_until(stream, pattern: str, deadline: float) -> re.Match:
    """Lines of ``stream`` until one matches ``pattern`` (fails at ``deadline``)."""
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def test_demo_serves_its_products_on_the_map(tmp_path: Path) -> None:
    madrone = Path(sys.executable).with_name("madrone")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "MADRONE_USER": "ana"}
    env.pop("MADRONE_DB_URL", None)
    process = subprocess.Popen(
        [str(madrone), "demo", "-q", "-o", str(tmp_path / "demo"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        site = read_until(process.stdout, r"the map: (http://127\.0\.0\.1:\d+)/", deadline)
        link = read_until(process.stderr, r"first admin 'ana': open (\S+/login/link/\S+)", deadline)
        base = site.group(1)
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with opener.open(link.group(1), timeout=30) as response:
            assert response.status == 200 and response.url.rstrip("/") == base
        with opener.open(f"{base}/api/datasets", timeout=30) as response:
            datasets = json.load(response)["datasets"]
        names = sorted(d["name"] for d in datasets)
        assert names == [
            "demo_T18SVG_20160112 NDSI",
            "demo_T18SVG_20160112 NDVI",
            "demo_mosaic_T29RKH_20200219 NDSI",
            "demo_mosaic_T29RKH_20200219 NDVI",
        ]
        ndvi = next(d for d in datasets if d["name"] == "demo_T18SVG_20160112 NDVI")
        assert ndvi["owner"] == "ana" and set(ndvi["assets"]) >= {"cog", "png"}
        stored = Path(ndvi["assets"]["cog"]["href"].removeprefix("file://"))
        assert (tmp_path / "demo" / "site" / "storage") in stored.parents
        with opener.open(f"{base}/tiles/{ndvi['id']}/legend", timeout=30) as response:
            assert json.load(response)["colormap"] == "RdYlGn"
    finally:
        code, _, err = stop(process)
    assert code in (0, 143), err
