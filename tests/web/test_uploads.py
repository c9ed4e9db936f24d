"""Uploads through POST /api/uploads: content decides what a file is, files are stored under
generated names, and a refused upload leaves nothing (no temporary file, no stored object,
no catalog row)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from werkzeug.test import EnvironBuilder

from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.storage import Storage
from madrone.web import create_app
from tests.conftest import sentinel2_dir
from tests.support.s3 import create_bucket, list_objects, moto_s3, use_s3_env

LIMIT_MB = 20
B04 = sentinel2_dir() / "L1C_T19UDP_20170729_900m" / "B04.tif"


class Site:
    """A fresh app with its own catalog, storage and temporary folder; an editor and a
    viewer token."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.settings = Settings(**{"storage_url": str(root / "storage"), **settings})
        self.catalog = Catalog(f"sqlite:///{root / 'catalog.sqlite'}", upgrade=True)
        self.client = create_app(self.settings, catalog=self.catalog).test_client()
        self.tokens = {}
        for name, role in (("eve", "editor"), ("vic", "viewer")):
            add_user(self.catalog, name, role)
            self.tokens[name] = create_token(self.catalog, name).token

    def upload(self, user: str | None = "eve", **fields: Any):
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        builder = EnvironBuilder(path="/api/uploads", method="POST", data=fields,
                                 headers=headers, content_type="multipart/form-data")  # fmt: skip
        environ = builder.get_environ()
        try:
            return self.client.open(environ)
        finally:
            environ["wsgi.input"].close()  # a large body is a temporary file: close it

    def stored(self) -> list[str]:
        with Storage.from_settings(self.settings) as storage:
            return storage.list()

    def rows(self) -> list[str]:
        return [d.name for d in search_datasets(self.catalog, DatasetQuery()).items]

    def assert_nothing_left(self) -> None:
        assert self.stored() == []
        assert self.rows() == []
        assert os.listdir(self.root / "tmp") == []


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    made = Site(tmp_path, max_upload_mb=LIMIT_MB)
    yield made
    made.catalog.dispose()


def a_file(content: bytes, filename: str) -> tuple[io.BytesIO, str]:
    return io.BytesIO(content), filename


def write_raster(
    path: Path, driver: str = "GTiff", crs: str | None = "EPSG:32619", size: int = 32
) -> bytes:
    """A square raster (3 bands of bytes for PNG/JPEG), with or without a CRS; a GeoTIFF is
    written in strips, so not as a COG."""
    count, dtype = (3, "uint8") if driver in ("PNG", "JPEG") else (1, "uint16")
    profile = {"driver": driver, "width": size, "height": size, "count": count, "dtype": dtype}
    if crs:
        profile.update(crs=crs, transform=from_origin(400000.0, 5300000.0, 90.0, 90.0))
    data = (np.arange(size * size * count) % 250).reshape(count, size, size).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as target:
            target.write(data)
    return path.read_bytes()


def test_a_geotiff_is_stored_under_a_generated_name(site: Site) -> None:
    response = site.upload(file=a_file(B04.read_bytes(), "../../etc/passwd.tif"),
                           description="red band")  # fmt: skip
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert (dataset["kind"], dataset["name"], dataset["owner"]) == ("geotiff", "passwd", "eve")
    assert (dataset["description"], dataset["crs"]) == ("red band", "EPSG:32619")
    assert site.stored() == [f"{site.settings.storage_url}/datasets/{dataset['id']}/data.tif"]
    assert dataset["assets"]["data"]["href"] == site.stored()[0]
    assert [p.name for p in site.root.rglob("passwd*")] == []
    assert os.listdir(site.root / "tmp") == []
    assert site.rows() == ["passwd"]


def test_a_geotiff_that_is_not_a_cog_is_written_as_one(site: Site, tmp_path: Path) -> None:
    plain = write_raster(tmp_path / "plain.tif", size=1200)
    response = site.upload(file=a_file(plain, "plain.tif"), name="plain")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["properties"]["converted_to_cog"] is True
    valid, errors, _ = cog_validate(site.stored()[0], quiet=True)
    assert valid, errors


def test_html_named_tif_is_refused_and_leaves_nothing(site: Site) -> None:
    page = b"<!doctype html><html><script>alert(1)</script></html>"
    response = site.upload(file=a_file(page, "scene.tif"))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["type"] == "UploadRefused"
    assert error["message"].startswith("scene.tif: not a raster")
    assert str(site.root / "tmp") not in error["message"]
    site.assert_nothing_left()


def test_an_image_without_corners_asks_for_them(site: Site, tmp_path: Path) -> None:
    png = write_raster(tmp_path / "photo.png", "PNG", crs=None)
    asked = site.upload(file=a_file(png, "photo.png"))
    assert asked.status_code == 422
    assert asked.get_json()["error"]["type"] == "CornersNeeded"
    assert "photo.png" in asked.get_json()["error"]["message"]
    site.assert_nothing_left()
    placed = site.upload(file=a_file(png, "photo.png"), corners="48.5,-70.0,48.0,-69.0")
    assert placed.status_code == 201, placed.get_json()
    dataset = placed.get_json()
    assert (dataset["kind"], dataset["bbox"]) == ("image", [-70.0, 48.0, -69.0, 48.5])
    assert dataset["assets"]["image"]["type"] == "image/png"
    assert site.stored()[0].endswith(f"/datasets/{dataset['id']}/image.png")


def test_a_geotiff_without_crs_asks_for_corners_and_is_placed_by_them(
    site: Site, tmp_path: Path
) -> None:
    bare = write_raster(tmp_path / "bare.tif", crs=None)
    asked = site.upload(file=a_file(bare, "bare.tif"))
    assert (asked.status_code, asked.get_json()["error"]["type"]) == (422, "CornersNeeded")
    site.assert_nothing_left()
    placed = site.upload(file=a_file(bare, "bare.tif"), corners="48.5,-70.0,48.0,-69.0")
    assert placed.status_code == 201, placed.get_json()
    dataset = placed.get_json()
    assert (dataset["kind"], dataset["crs"]) == ("geotiff", "EPSG:4326")
    assert dataset["bbox"] == [-70.0, 48.0, -69.0, 48.5]


def test_geojson_is_checked_and_stored(site: Site) -> None:
    ring = [[-70.0, 48.0], [-69.0, 48.0], [-69.0, 48.5], [-70.0, 48.0]]
    feature = {"type": "Feature", "properties": {"name": "field"},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip
    response = site.upload(file=a_file(json.dumps(feature).encode(), "field.geojson"))
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert (dataset["kind"], dataset["name"]) == ("vector", "field")
    assert dataset["bbox"] == [-70.0, 48.0, -69.0, 48.5]
    open_ring = {**feature, "geometry": {"type": "Polygon", "coordinates": [ring[:3]]}}
    refused = site.upload(file=a_file(json.dumps(open_ring).encode(), "open.json"))
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"].startswith("open.json: ")
    assert len(site.stored()) == 1 and site.rows() == ["field"]


def test_a_million_vertices_are_refused_fast(site: Site) -> None:
    count = 1_000_001
    coordinates = ",".join(["[1.5,2.5]"] * count)
    line = f'{{"type":"LineString","coordinates":[{coordinates}]}}'.encode()
    started = time.process_time()  # CPU time: the machine's load from others does not count
    response = site.upload(file=a_file(line, "huge.geojson"))
    elapsed = time.process_time() - started
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "huge.geojson" in message and "1,000,001 vertices" in message
    assert elapsed < 10, elapsed
    site.assert_nothing_left()


def test_an_oversize_upload_is_413_naming_the_limit(site: Site) -> None:
    response = site.upload(file=a_file(b"\0" * (LIMIT_MB * 2**20 + 1), "big.tif"))
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert (error["status"], error["type"]) == (413, "RequestEntityTooLarge")
    assert f"{LIMIT_MB} MiB" in error["message"] and "MADRONE_MAX_UPLOAD_MB" in error["message"]
    site.assert_nothing_left()


def test_names_are_stored_verbatim(site: Site) -> None:
    name = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = site.upload(file=a_file(B04.read_bytes(), "b4.tif"), name=name,
                           description="<b>bold</b>")  # fmt: skip
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    assert (response.get_json()["name"], response.get_json()["description"]) == (
        name, "<b>bold</b>")  # fmt: skip
    assert site.rows() == [name]


def test_a_point(site: Site) -> None:
    response = site.upload(kind="point", lat="48.2", lon="-69.5", name="well",
                           description="a well")  # fmt: skip
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert (dataset["kind"], dataset["bbox"]) == ("point", [-69.5, 48.2, -69.5, 48.2])
    assert dataset["footprint"] == {"type": "Point", "coordinates": [-69.5, 48.2]}
    for fields, word in (({"lon": "1", "name": "n"}, "lat"),
                         ({"lat": "100", "lon": "1", "name": "n"}, "latitude"),
                         ({"lat": "x", "lon": "1", "name": "n"}, "latitude")):  # fmt: skip
        refused = site.upload(kind="point", **fields)
        assert refused.status_code == 400, fields
        assert word in refused.get_json()["error"]["message"]
    assert site.rows() == ["well"]


def test_who_may_upload(site: Site) -> None:
    assert site.upload(None, file=a_file(B04.read_bytes(), "b4.tif")).status_code == 401
    viewer = site.upload("vic", file=a_file(B04.read_bytes(), "b4.tif"))
    assert viewer.status_code == 403
    assert "editor" in viewer.get_json()["error"]["message"]
    nothing = site.upload(name="no file")
    assert nothing.status_code == 400
    assert "file" in nothing.get_json()["error"]["message"]
    empty = site.upload(file=a_file(b"", "empty.tif"))
    assert empty.status_code == 422
    assert "empty.tif: the file is empty" in empty.get_json()["error"]["message"]
    site.assert_nothing_left()


def test_upload_download_and_delete_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path with the app's storage in a bucket of moto's S3 server."""
    use_s3_env(monkeypatch, tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    with moto_s3() as endpoint:
        bucket = f"madrone-{uuid.uuid4().hex[:12]}"
        create_bucket(endpoint, bucket)
        options = json.dumps({"client_kwargs": {"endpoint_url": endpoint}})
        site = Site(tmp_path, storage_url=f"s3://{bucket}/p", storage_options=options)
        try:
            refused = site.upload(file=a_file(b"<html></html>", "page.tif"))
            assert refused.status_code == 422
            assert list_objects(endpoint, bucket) == {}
            created = site.upload(file=a_file(B04.read_bytes(), "b4.tif"), name="b4")
            assert created.status_code == 201, created.get_json()
            dataset = created.get_json()
            assert list(list_objects(endpoint, bucket)) == [f"p/datasets/{dataset['id']}/data.tif"]
            headers = {"Authorization": f"Bearer {site.tokens['vic']}"}
            download = site.client.get(f"/api/datasets/{dataset['id']}/assets/data",
                                       headers=headers)  # fmt: skip
            assert download.status_code == 200
            assert download.headers["Content-Disposition"] == "attachment; filename=b4.tif"
            href = dataset["assets"]["data"]["href"]
            with Storage.from_settings(site.settings) as storage, storage.open(href) as handle:
                assert download.data == handle.read()
            download.close()
            editor = {"Authorization": f"Bearer {site.tokens['eve']}"}
            deleted = site.client.delete(f"/api/datasets/{dataset['id']}", headers=editor)
            assert deleted.status_code == 200
            assert list_objects(endpoint, bucket) == {}
            assert site.rows() == []
        finally:
            site.catalog.dispose()
