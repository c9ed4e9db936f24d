"""Map tiles and point values: a real NDVI dataset from a queued job on the demo scene,
served by a fresh app per test; tile colours are the product's, point values the COG's."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from flask.testing import FlaskClient
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rio_tiler.io import Reader

from madrone import api, team
from madrone.catalog.datasets import DatasetQuery, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.ingest import add_file, add_raster
from madrone.catalog.models import Dataset
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.products.render import Style, colorize, lookup_table, style_for
from madrone.service import Master
from madrone.storage import Storage
from madrone.web import create_app

DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@dataclass(frozen=True)
class Demo:
    """Where the registered demo NDVI lives: settings, its dataset row and COG path."""

    settings: Settings
    dataset: Dataset
    cog: str
    png: str
    geotiff: Dataset
    holed: Dataset
    vector: Dataset


def write_holed_raster(path: Path) -> None:
    """An int16 raster over the demo scene's west half whose western half is nodata."""
    data = np.full((40, 40), 1234, dtype=np.int16)
    data[:, :20] = -9999
    profile = {"driver": "GTiff", "width": 40, "height": 40, "count": 1, "dtype": "int16",
               "crs": "EPSG:32618", "nodata": -9999,
               "transform": from_origin(438730.0, 4175460.0, 100.0, 100.0)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)


def write_vector(path: Path, dataset: Dataset) -> None:
    lon, lat = (dataset.west + dataset.east) / 2, (dataset.south + dataset.north) / 2
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Point", "coordinates": [lon, lat]}}  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("tiles")
    settings = Settings(workers=1, public_read=1, db_url=f"sqlite:///{root / 'cat.sqlite'}",
                        storage_url=str(root / "storage"))  # fmt: skip
    catalog = Catalog(settings.db_url, upgrade=True)
    try:
        team.submit(api.build_spec([str(DEMO)], ["ndvi"]), catalog, settings=settings,
                    name="demo", requester="ana")  # fmt: skip
        storage = Storage.from_settings(settings)
        master = Master(catalog, storage, settings, work_dir=str(root / "work"), name="tiles")
        assert master.run_next()
        (dataset,) = search_datasets(catalog, DatasetQuery()).items
        cog = storage.gdal_path(dataset.assets["cog"]["href"])
        geotiff = add_raster(catalog, storage, cog, name="grey", owner="ana")
        write_holed_raster(root / "holed.tif")
        holed = add_raster(catalog, storage, root / "holed.tif", name="holed", owner="ana")
        write_vector(root / "point.geojson", dataset)
        vector = add_file(catalog, storage, root / "point.geojson", name="pt", owner="ana")
    finally:
        catalog.dispose()
    png = storage.gdal_path(dataset.assets["png"]["href"])
    return Demo(settings, dataset, cog, png, geotiff, holed, vector)


def client_for(demo: Demo, public_read: int = 1) -> Iterator[tuple[FlaskClient, Catalog]]:
    catalog = Catalog(demo.settings.db_url)
    settings = Settings(public_read=public_read, db_url=demo.settings.db_url,
                        storage_url=demo.settings.storage_url)  # fmt: skip
    try:
        yield create_app(settings, catalog=catalog).test_client(), catalog
    finally:
        catalog.dispose()


@pytest.fixture
def client(demo: Demo) -> Iterator[FlaskClient]:
    for client, _ in client_for(demo):
        yield client


def centre_tile(dataset: Dataset, zoom: int = 13) -> morecantile.Tile:
    west, south, east, north = dataset.bbox
    return WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, zoom)


def decode_png(data: bytes) -> np.ndarray:
    """A PNG's pixels, band first (4, rows, cols)."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        return np.moveaxis(np.asarray(image), -1, 0)


def exact_nearest(path: str, tile: morecantile.Tile) -> tuple[np.ndarray, np.ndarray]:
    """An independent nearest-neighbour tile: every pixel centre transformed exactly (no
    interpolation), from the coarsest overview no coarser than the tile's pixels. Returns
    the values (NaN where nodata or outside) and each pixel's distance, in source pixels, to
    the nearest source pixel edge (where a sampler may fairly pick either neighbour)."""
    bounds = WEB_MERCATOR.xy_bounds(tile)
    size = (bounds.right - bounds.left) / 256
    xs = bounds.left + (np.arange(256) + 0.5) * size
    ys = bounds.top - (np.arange(256) + 0.5) * size
    mesh_x, mesh_y = np.meshgrid(xs, ys)
    with rasterio.open(path) as full:
        src_x, src_y = warp_transform("EPSG:3857", full.crs, mesh_x.ravel(), mesh_y.ravel())
        src_x = np.asarray(src_x).reshape(256, 256)
        src_y = np.asarray(src_y).reshape(256, 256)
        step = np.hypot(src_x[128, 129] - src_x[128, 128], src_y[128, 129] - src_y[128, 128])
        levels = [None] + [n for n, f in enumerate(full.overviews(1)) if full.res[0] * f <= step]
    with rasterio.open(path, overview_level=levels[-1]) as level:
        cols, rows = ~level.transform * (src_x, src_y)
        band = level.read(1, masked=True).astype(np.float32).filled(np.nan)
    edge = np.minimum(np.abs(cols - np.rint(cols)), np.abs(rows - np.rint(rows)))
    col, row = np.floor(cols).astype(int), np.floor(rows).astype(int)
    inside = (col >= 0) & (col < band.shape[1]) & (row >= 0) & (row < band.shape[0])
    values = np.full((256, 256), np.nan, np.float32)
    values[inside] = band[row[inside], col[inside]]
    return values, edge


def assert_nearest_colours(rgba: np.ndarray, path: str, tile, style: Style) -> None:
    """The tile's colours are the style's colours of the raster's nearest pixels, but for
    pixels whose centre falls within 1/50 of a source pixel of an edge (at most 1 %)."""
    values, edge = exact_nearest(path, tile)
    expected = colorize(values, style)
    differs = (rgba != expected).any(axis=0)
    assert differs.mean() < 0.01
    assert (edge[differs] < 0.02).all()


def test_tile_has_the_products_colours_for_the_cogs_values(client, demo) -> None:
    t = centre_tile(demo.dataset)
    response = client.get(f"/tiles/{demo.dataset.id}/{t.z}/{t.x}/{t.y}.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    rgba = decode_png(response.data)
    assert rgba.shape == (4, 256, 256)
    assert_nearest_colours(rgba, demo.cog, t, style_for("NDVI", "vegetation"))
    with Reader(demo.cog) as reader:  # the same picture as rio-tiler's warper, near enough
        values = reader.tile(t.x, t.y, t.z, tilesize=256, indexes=1, resampling_method="nearest")
    peer = colorize(np.ma.filled(values.array[0].astype(np.float32), np.nan),
                    style_for("NDVI", "vegetation"))  # fmt: skip
    assert (rgba == peer).all(axis=0).mean() > 0.97
    opaque = rgba[3] == 255
    assert opaque.sum() > 1000 and set(np.unique(rgba[3])) <= {0, 255}
    tile_colours = {tuple(c) for c in rgba[:, opaque].T}
    assert tile_colours <= {tuple(c) for c in lookup_table("RdYlGn")}
    with Image.open(demo.png) as product:
        product_colours = {tuple(c) for c in np.asarray(product.convert("RGBA")).reshape(-1, 4)}
    assert tile_colours <= product_colours


def test_geotiff_tile_is_a_grey_ramp_over_its_stats(client, demo) -> None:
    grey = demo.geotiff
    t = centre_tile(grey, zoom=11)
    response = client.get(f"/tiles/{grey.id}/{t.z}/{t.x}/{t.y}.png")
    assert response.status_code == 200
    rgba = decode_png(response.data)
    style = Style("gray", grey.stats["min"], grey.stats["max"], "grey")
    assert_nearest_colours(rgba, demo.cog, t, style)
    opaque = rgba[3] == 255
    assert opaque.any() and (rgba[0] == rgba[1]).all() and (rgba[1] == rgba[2]).all()


def test_nodata_is_transparent_and_a_null_value(client, demo) -> None:
    holed = demo.holed
    t = centre_tile(holed, zoom=13)
    rgba = decode_png(client.get(f"/tiles/{holed.id}/{t.z}/{t.x}/{t.y}.png").data)
    alpha = rgba[3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert (rgba[:, alpha == 0] == 0).all()
    west, south, east, north = holed.bbox
    lat = (south + north) / 2
    values = []
    for lon in (west + 0.2 * (east - west), west + 0.8 * (east - west)):
        response = client.get(f"/tiles/{holed.id}/point?lon={lon}&lat={lat}")
        assert response.status_code == 200
        values.append(response.get_json()["value"])
    assert values == [None, 1234.0]


def test_a_vector_dataset_has_no_tiles(client, demo) -> None:
    response = client.get(f"/tiles/{demo.vector.id}/13/0/0.png")
    assert response.status_code == 404
    assert "no raster to tile" in response.get_json()["error"]["message"]


def test_tile_far_away_is_no_content(client, demo) -> None:
    t = WEB_MERCATOR.tile(140.0, -30.0, 13)
    response = client.get(f"/tiles/{demo.dataset.id}/{t.z}/{t.x}/{t.y}.png")
    assert response.status_code == 204 and response.data == b""


def test_tile_that_does_not_exist_is_refused(client, demo) -> None:
    response = client.get(f"/tiles/{demo.dataset.id}/2/4/0.png")
    assert response.status_code == 400
    assert "x=4" in response.get_json()["error"]["message"]


def test_point_is_the_cogs_value_there(client, demo) -> None:
    west, south, east, north = demo.dataset.bbox
    lon, lat = west + 0.4 * (east - west), south + 0.6 * (north - south)
    response = client.get(f"/tiles/{demo.dataset.id}/point?lon={lon}&lat={lat}")
    assert response.status_code == 200
    body = response.get_json()
    with rasterio.open(demo.cog) as ds:
        (x,), (y,) = warp_transform("EPSG:4326", ds.crs, [lon], [lat])
        row, col = ds.index(x, y)
        expected = float(ds.read(1)[row, col])
    assert body["value"] == pytest.approx(expected, rel=1e-6)
    assert (body["dataset"], body["index"], body["lon"], body["lat"]) == (
        demo.dataset.id, "NDVI", lon, lat)  # fmt: skip
    assert body["date"] == "2016-01-12T00:00:00+00:00"


def test_point_outside_or_malformed_is_refused(client, demo) -> None:
    outside = client.get(f"/tiles/{demo.dataset.id}/point?lon=140.5&lat=-30")
    assert outside.status_code == 404
    assert "lon=140.5, lat=-30" in outside.get_json()["error"]["message"]
    for query, name in (("lon=abc&lat=1", "lon"), ("lon=1", "lat"), ("lon=1&lat=91", "lat")):
        response = client.get(f"/tiles/{demo.dataset.id}/point?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"]["message"].startswith(name)


def test_unknown_dataset_is_404_json(client) -> None:
    for path in ("/tiles/nope/13/0/0.png", "/tiles/nope/point?lon=0&lat=0"):
        response = client.get(path)
        assert response.status_code == 404
        assert "nope" in response.get_json()["error"]["message"]


def test_tokens_are_needed_without_public_read(demo) -> None:
    t = centre_tile(demo.dataset)
    for client, catalog in client_for(demo, public_read=0):
        tile_path = f"/tiles/{demo.dataset.id}/{t.z}/{t.x}/{t.y}.png"
        assert client.get(tile_path).status_code == 401
        assert client.get(f"/tiles/{demo.dataset.id}/point?lon=0&lat=0").status_code == 401
        add_user(catalog, "vic", "viewer")
        token = create_token(catalog, "vic").token
        response = client.get(tile_path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


@pytest.mark.parametrize("zoom", [9, 10, 11, 12])
def test_tiles_at_coarser_zooms_come_from_the_overviews(client, demo, zoom: int) -> None:
    with rasterio.open(demo.cog) as cog:
        assert cog.overviews(1)  # the product COG has overviews to serve these zooms from
    t = centre_tile(demo.dataset, zoom=zoom)
    response = client.get(f"/tiles/{demo.dataset.id}/{t.z}/{t.x}/{t.y}.png")
    assert response.status_code == 200
    assert_nearest_colours(decode_png(response.data), demo.cog, t, style_for("NDVI", "vegetation"))


def test_legend_gives_the_tiles_colours_and_range(client, demo) -> None:
    response = client.get(f"/tiles/{demo.dataset.id}/legend")
    assert response.status_code == 200
    legend = response.get_json()
    table = lookup_table("RdYlGn")
    assert (legend["min"], legend["max"], legend["colormap"]) == (-1.0, 1.0, "RdYlGn")
    assert len(legend["colors"]) == 11
    assert legend["colors"][0] == "#{:02x}{:02x}{:02x}".format(*table[0, :3])
    assert legend["colors"][-1] == "#{:02x}{:02x}{:02x}".format(*table[255, :3])
    grey = client.get(f"/tiles/{demo.geotiff.id}/legend").get_json()
    assert (grey["min"], grey["max"]) == (demo.geotiff.stats["min"], demo.geotiff.stats["max"])
    assert grey["colors"][0] == "#000000" and grey["colors"][-1] == "#ffffff"
    assert client.get(f"/tiles/{demo.vector.id}/legend").status_code == 404
