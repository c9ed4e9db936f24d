"""A user's own data into the catalog, on SQLite and PostGIS with a local-folder storage:
rasters become verified COGs, images are placed by corners, GeoJSON is validated, points
are points; content decides, not names; a failure registers nothing and stores nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

from madrone.area import area_from_corners
from madrone.catalog import ingest
from madrone.catalog.datasets import DatasetQuery, get_dataset, search_datasets
from madrone.catalog.db import Catalog
from madrone.catalog.ingest import (
    add_file,
    add_geojson,
    add_image,
    add_point,
    add_raster,
    band_stats,
)
from madrone.errors import CatalogError, InputError, StorageError
from madrone.storage import Storage

UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)
WHO = {"owner": "ana", "description": "mine"}


@pytest.fixture
def storage(tmp_path: Path):
    with Storage.from_url(str(tmp_path / "storage")) as store:
        yield store


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine = UTM,
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
    driver: str = "GTiff",
    **options: Any,
) -> Path:
    """A plain GeoTIFF (striped, no overviews: not a COG) of one or more bands."""
    bands = data if data.ndim == 3 else data[np.newaxis]
    profile = {
        "driver": driver,
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype.name,
        "transform": transform,
        "nodata": nodata,
        **options,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.Env(), rasterio.open(path, "w", **profile) as out:
        out.write(bands)
        if tags:
            out.update_tags(**tags)
    return path


def write_image(path: Path, driver: str, shape=(3, 40, 60)) -> Path:
    data = (np.arange(np.prod(shape)) % 251).astype("uint8").reshape(shape)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        write_tif(path, data, crs=None, transform=Affine.identity(), driver=driver)
    return path


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_files(storage: Storage) -> list[str]:
    return storage.list() if Path(storage.url).exists() else []


def all_datasets(catalog: Catalog) -> list:
    return search_datasets(catalog, DatasetQuery(limit=1000)).items


def local_path(storage: Storage, url: str) -> Path:
    return Path(storage.gdal_path(url))


# -- rasters ------------------------------------------------------------------------------


def test_plain_geotiff_becomes_a_valid_cog_with_identical_pixels(
    catalog: Catalog, storage: Storage, uploads: Path
) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(-500, 3000, size=(1200, 1030)).astype("int16")
    data[:20, :] = -9999
    upload = write_tif(
        uploads / "my field (final).tif",
        data,
        nodata=-9999,
        tags={"TIFFTAG_DATETIME": "2023:08:10 10:20:30"},
    )
    assert not cog_validate(str(upload), quiet=True)[0]
    dataset = add_raster(catalog, storage, upload, name="field", **WHO)

    asset = dataset.assets["data"]
    assert asset["href"] == storage.url_for(f"datasets/{dataset.id}/data.tif")
    stored = local_path(storage, asset["href"])
    assert cog_validate(str(stored), quiet=True)[0]
    assert (asset["size"], asset["sha256"]) == (stored.stat().st_size, sha256(stored))
    with rasterio.open(stored) as cog:
        assert (cog.crs.to_epsg(), cog.transform, cog.nodata) == (32633, UTM, -9999)
        np.testing.assert_array_equal(cog.read(1), data)
        assert cog.overviews(1)
    valid = data[data != -9999]
    assert dataset.stats == {
        "min": float(valid.min()),
        "max": float(valid.max()),
        "mean": pytest.approx(float(valid.mean())),
        "valid_pixels": valid.size,
    }
    assert (dataset.kind, dataset.crs, dataset.resolution) == ("geotiff", "EPSG:32633", 10.0)
    assert dataset.date_start == dataset.date_end == datetime(2023, 8, 10, 10, 20, 30, tzinfo=UTC)
    assert dataset.properties["converted_to_cog"] is True
    expected = transform_bounds("EPSG:32633", "EPSG:4326", 500000, 4488000, 510300, 4500000)
    assert dataset.bbox == pytest.approx(expected, abs=1e-7)
    assert dataset.footprint["type"] == "Polygon"
    assert stored_files(storage) == [asset["href"]]
    again = get_dataset(catalog, dataset.id)
    assert (again.assets, again.stats, again.owner, again.scope) == (
        dataset.assets,
        dataset.stats,
        "ana",
        "local",
    )


def test_sentinel2_cog_is_stored_as_it_is(
    catalog: Catalog, storage: Storage, data_dir: Path
) -> None:
    band = data_dir / "L2A_T29RKH_20200219_100m" / "B04.tif"
    dataset = add_file(catalog, storage, band, name="T29RKH red", scope="shared", **WHO)
    asset = dataset.assets["data"]
    assert asset["sha256"] == sha256(band) and asset["size"] == band.stat().st_size
    assert dataset.properties["converted_to_cog"] is False
    with rasterio.open(band) as source:
        pixels = source.read(1, masked=True)
        expected = transform_bounds(source.crs, "EPSG:4326", *source.bounds, densify_pts=21)
        assert dataset.crs == f"EPSG:{source.crs.to_epsg()}" == "EPSG:32629"
    assert dataset.resolution == 100.0 and dataset.scope == "shared"
    assert dataset.stats["min"] == float(pixels.min()) and dataset.stats["max"] == float(
        pixels.max()
    )
    assert dataset.stats["mean"] == pytest.approx(float(pixels.mean()), rel=1e-12)
    assert dataset.stats["valid_pixels"] == int(pixels.count())
    assert dataset.bbox == pytest.approx(expected, abs=1e-6)
    found = search_datasets(catalog, DatasetQuery(bbox=(-11.5, 24.5, -11.4, 24.6)))
    assert [d.id for d in found.items] == [dataset.id]


def test_stats_are_read_in_bounded_windows(monkeypatch: pytest.MonkeyPatch, uploads: Path) -> None:
    data = np.linspace(-1, 1, 50 * 70, dtype="float32").reshape(50, 70)
    data[3, :] = np.nan
    data[10:12, 5:9] = -2.0
    path = write_tif(uploads / "f.tif", data, nodata=-2.0, tiled=True, blockxsize=16, blockysize=16)
    windows: list = []
    original = ingest._stat_windows

    def counted(source, band):
        for window in original(source, band):
            windows.append(window)
            yield window

    monkeypatch.setattr(ingest, "STATS_CHUNK_PIXELS", 70 * 16)
    monkeypatch.setattr(ingest, "_stat_windows", counted)
    with rasterio.open(path) as source:
        stats = band_stats(source, 1)
    valid = data[np.isfinite(data) & (data != -2.0)]
    assert len(windows) == 4 and all(w.height <= 16 for w in windows)
    assert stats["min"] == float(valid.min()) and stats["max"] == float(valid.max())
    assert stats["mean"] == pytest.approx(float(valid.astype("float64").mean()))
    assert stats["valid_pixels"] == valid.size


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"ACQUISITION_DATE": "2020-02-19"}, datetime(2020, 2, 19, tzinfo=UTC)),
        (
            {"ACQUISITION_DATE": "2020-02-19T11:22:33Z", "TIFFTAG_DATETIME": "2024:01:01 00:00:00"},
            datetime(2020, 2, 19, 11, 22, 33, tzinfo=UTC),
        ),
        ({"TIFFTAG_DATETIME": "yesterday"}, None),
        ({}, None),
    ],
)
def test_acquisition_date_from_tags(
    catalog: Catalog, storage: Storage, uploads: Path, tags, expected
) -> None:
    path = write_tif(uploads / "d.tif", np.ones((8, 8), "uint8"), tags=tags)
    assert add_raster(catalog, storage, path, name="d", **WHO).date_start == expected


def test_raster_across_the_antimeridian(catalog: Catalog, storage: Storage, uploads: Path) -> None:
    transform = Affine(1000.0, 0.0, 700000.0, 0.0, -1000.0, 5200000.0)
    path = write_tif(
        uploads / "a.tif", np.ones((200, 200), "uint8"), crs="EPSG:32660", transform=transform
    )
    dataset = add_raster(catalog, storage, path, name="dateline", **WHO)
    assert dataset.footprint["type"] == "MultiPolygon"
    assert (dataset.west, dataset.east) == (-180.0, 180.0)
    assert 44.9 < dataset.south < 45.2 and 46.9 < dataset.north < 47.0
    for bbox in [(179.7, 45.5, 179.9, 46.0), (-179.0, 45.5, -178.5, 46.0)]:
        assert [d.id for d in search_datasets(catalog, DatasetQuery(bbox=bbox)).items] == [
            dataset.id
        ]


def test_html_named_tif_is_refused(catalog: Catalog, storage: Storage, uploads: Path) -> None:
    page = uploads / "scene.tif"
    page.write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    for add in (add_raster, add_file):
        with pytest.raises(InputError, match=r"scene\.tif: not a raster GDAL can read"):
            add(catalog, storage, page, name="x", **WHO)
    assert all_datasets(catalog) == [] and stored_files(storage) == []


def test_raster_without_crs_needs_corners_and_is_placed_by_them(
    catalog: Catalog, storage: Storage, uploads: Path
) -> None:
    values = np.arange(64, dtype="uint8").reshape(8, 8)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        path = write_tif(uploads / "n.tif", values, crs=None, transform=Affine.identity())
    for add in (add_raster, add_file):
        with pytest.raises(InputError, match=r"n\.tif: the raster has no CRS.*give its corners"):
            add(catalog, storage, path, name="n", **WHO)
    assert all_datasets(catalog) == [] and stored_files(storage) == []
    dataset = add_file(catalog, storage, path, name="n", corners=(10, 0, 0, 20), **WHO)
    assert (dataset.kind, dataset.crs, dataset.bbox) == ("geotiff", "EPSG:4326", (0, 0, 20, 10))
    assert dataset.properties["placed_by_corners"] is True
    with rasterio.open(storage.gdal_path(dataset.assets["data"]["href"])) as stored:
        assert stored.crs.to_epsg() == 4326
        assert stored.transform.almost_equals(Affine(2.5, 0, 0, 0, -1.25, 10))
        np.testing.assert_array_equal(stored.read(1), values)
    placed = add_raster(catalog, storage, dataset_path(storage, dataset), name="p", **WHO)
    with pytest.raises(InputError, match="placed by its own CRS; give no corners"):
        add_file(catalog, storage, dataset_path(storage, placed), name="q", corners=(1, 0, 0, 1),
                 **WHO)  # fmt: skip


def dataset_path(storage: Storage, dataset) -> str:
    return storage.gdal_path(dataset.assets["data"]["href"])


def test_vrt_pointing_at_other_files_is_refused(
    catalog: Catalog, storage: Storage, uploads: Path, data_dir: Path
) -> None:
    band = data_dir / "L1C_T19UDP_20170729_900m" / "B04.tif"
    vrt = uploads / "innocent.tif"
    with rasterio.open(band) as source:
        rasterio.shutil.copy(source, str(vrt), driver="VRT")
    with pytest.raises(InputError, match="refer to other files"):
        add_file(catalog, storage, vrt, name="v", **WHO)
    assert all_datasets(catalog) == [] and stored_files(storage) == []


# -- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "driver, asset, media", [("PNG", "image.png", "image/png"), ("JPEG", "image.jpg", "image/jpeg")]
)
def test_image_placed_by_corners_is_stored_as_it_is(
    catalog: Catalog, storage: Storage, uploads: Path, driver: str, asset: str, media: str
) -> None:
    upload = write_image(uploads / "holiday photo.tif", driver)  # the name lies
    with pytest.raises(InputError, match="needs its corners"):
        add_file(catalog, storage, upload, name="p", **WHO)
    dataset = add_file(catalog, storage, upload, name="p", corners="45.5,10.25,45,11", **WHO)
    image = dataset.assets["image"]
    assert image["href"] == storage.url_for(f"datasets/{dataset.id}/{asset}")
    assert image["sha256"] == sha256(upload) and image["type"] == media
    assert sha256(local_path(storage, image["href"])) == sha256(upload)
    assert dataset.kind == "image" and dataset.bbox == (10.25, 45.0, 11.0, 45.5)
    assert dataset.footprint == {
        "type": "Polygon",
        "coordinates": [[[10.25, 45.0], [11.0, 45.0], [11.0, 45.5], [10.25, 45.5], [10.25, 45.0]]],
    }
    assert dataset.properties["corners"] == {
        "upper_left": [45.5, 10.25],
        "lower_right": [45.0, 11.0],
    }
    assert dataset.properties["driver"] == driver


@pytest.mark.parametrize("corners", [
    (95, 10, 40, 20), (50, 200, 40, 20), (50, 10, 40, -181), (50, 10, -91, 20),
    (40, 10, 50, 20), (50, 20, 40, 10), (50, 10, 50, 20), (1, 2, 3), "a,b,c,d",
])  # fmt: skip
def test_bad_corners_are_refused_as_the_area_refuses_them(
    catalog: Catalog, storage: Storage, uploads: Path, corners
) -> None:
    with pytest.raises(InputError) as expected:
        area_from_corners(corners)
    upload = write_image(uploads / "i.png", "PNG")
    with pytest.raises(InputError) as refused:
        add_image(catalog, storage, upload, name="i", corners=corners, **WHO)
    assert str(refused.value) == str(expected.value)
    assert all_datasets(catalog) == [] and stored_files(storage) == []


def test_bad_corner_messages_name_the_coordinate(
    catalog: Catalog, storage: Storage, uploads: Path
) -> None:
    upload = write_image(uploads / "i.png", "PNG")
    for corners, message in [
        ((95, 10, 40, 20), "upper-left latitude 95 is out of range"),
        ((50, 10, 40, 190), "lower-right longitude 190 is out of range"),
    ]:
        with pytest.raises(InputError, match=message):
            add_image(catalog, storage, upload, name="i", corners=corners, **WHO)


def test_image_across_the_antimeridian(catalog: Catalog, storage: Storage, uploads: Path) -> None:
    upload = write_image(uploads / "i.png", "PNG")
    dataset = add_image(catalog, storage, upload, name="fiji", corners=(-16, 177, -20, -178), **WHO)
    assert dataset.footprint["type"] == "MultiPolygon" and dataset.bbox == (-180, -20, 180, -16)
    assert dataset.properties["corners"] == {"upper_left": [-16, 177], "lower_right": [-20, -178]}
    for bbox, hits in [
        ((178, -19, 179, -17), 1),
        ((-179, -19, -178.5, -17), 1),
        ((0, -19, 1, -17), 0 if catalog.is_postgres else 1),
    ]:
        assert len(search_datasets(catalog, DatasetQuery(bbox=bbox)).items) == hits


# -- GeoJSON ------------------------------------------------------------------------------

FIELDS = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {"crop": "maize"},
         "geometry": {"type": "Polygon", "coordinates": [
             [[10.0, 45.0], [10.5, 45.0], [10.5, 45.4], [10.0, 45.4], [10.0, 45.0]],
             [[10.1, 45.1], [10.1, 45.2], [10.2, 45.2], [10.1, 45.1]]]}},
        {"type": "Feature", "properties": None,
         "geometry": {"type": "Point", "coordinates": [11.25, 44.5, 120.0]}},
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "Feature", "properties": {}, "geometry": {"type": "GeometryCollection",
         "geometries": [{"type": "LineString", "coordinates": [[10.2, 44.9], [10.3, 45.0]]}]}},
    ],
}  # fmt: skip


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_geojson_is_validated_and_stored_as_it_is(
    catalog: Catalog, storage: Storage, uploads: Path
) -> None:
    upload = write_json(uploads / "fields.tif", FIELDS)  # the name lies: content decides
    dataset = add_file(catalog, storage, upload, name="fields", **WHO)
    asset = dataset.assets["data"]
    assert asset["href"] == storage.url_for(f"datasets/{dataset.id}/data.geojson")
    assert asset["type"] == "application/geo+json" and asset["sha256"] == sha256(upload)
    assert local_path(storage, asset["href"]).read_bytes() == upload.read_bytes()
    assert (dataset.kind, dataset.bbox) == ("vector", (10.0, 44.5, 11.25, 45.4))
    assert dataset.footprint == {
        "type": "Polygon",
        "coordinates": [[[10.0, 44.5], [11.25, 44.5], [11.25, 45.4], [10.0, 45.4], [10.0, 44.5]]],
    }
    assert dataset.properties == {
        "features": 4,
        "vertices": 12,
        "geometry_types": ["GeometryCollection", "LineString", "Point", "Polygon"],
    }


@pytest.mark.parametrize("document, footprint", [
    ({"type": "Point", "coordinates": [5, 6]}, {"type": "Point", "coordinates": [5.0, 6.0]}),
    ({"type": "Feature", "properties": {}, "geometry": {"type": "MultiLineString",
      "coordinates": [[[1, 2], [3, 2]], [[4, 2], [5, 2]]]}},
     {"type": "LineString", "coordinates": [[1.0, 2.0], [5.0, 2.0]]}),
])  # fmt: skip
def test_geojson_without_area_gets_a_point_or_line_footprint(
    catalog: Catalog, storage: Storage, uploads: Path, document, footprint
) -> None:
    dataset = add_geojson(
        catalog, storage, write_json(uploads / "g.json", document), name="g", **WHO
    )
    assert dataset.footprint == footprint
    assert get_dataset(catalog, dataset.id).footprint == footprint


def polygon_feature(ring: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]


@pytest.mark.parametrize("document, message", [
    ({"type": "FeatureCollection", "features": [polygon_feature([*SQUARE[:-1], [0, 0.5]])]},
     r"features\[0\]\.geometry\.coordinates\[0\]: the ring is not closed"),
    ({"type": "FeatureCollection", "features": [polygon_feature(SQUARE[:3])]},
     r"features\[0\]\.geometry\.coordinates\[0\]: a polygon ring needs 4 or more"),
    (polygon_feature([[0, 0], [1, 0], [1, 95], [0, 0]]),
     r"geometry\.coordinates\[0\]\[2\]: latitude 95 is out of range \[-90, 90\]"),
    ({"type": "Point", "coordinates": [-180.5, 0]},
     r"coordinates: longitude -180.5 is out of range \[-180, 180\]"),
    ({"type": "Point", "coordinates": ["1", 2]}, r'\["1", 2\] is not a position'),
    ({"type": "Point", "coordinates": [1, 2, 3, 4]}, "is not a position"),
    ({"type": "Point", "coordinates": [True, 2]}, "is not a position"),
    ({"type": "LineString", "coordinates": [[1, 2]]}, "a LineString needs 2 or more"),
    ({"type": "Circle", "coordinates": [1, 2]}, "type 'Circle' is not a GeoJSON Feature"),
    ({"type": "Feature", "properties": {}, "geometry": {"type": "Circle"}},
     "geometry: 'Circle' is not a GeoJSON geometry type"),
    ({"type": "Topology"}, "type 'Topology' is not a GeoJSON Feature"),
    ([1, 2], "type None is not a GeoJSON"),
    ({"type": "FeatureCollection"}, "features: a FeatureCollection needs a 'features' array"),
    ({"type": "FeatureCollection", "features": [{"type": "Point", "coordinates": [1, 2]}]},
     r"features\[0\]: is not a Feature"),
    ({"type": "Feature", "properties": []}, "geometry: a Feature needs a 'geometry'"),
    ({"type": "Feature", "geometry": None, "properties": [1]},
     "properties: must be an object or null"),
    ({"type": "FeatureCollection", "features": []}, "holds no coordinates"),
    ({"type": "Feature", "geometry": None, "properties": None}, "holds no coordinates"),
    ({"type": "MultiPolygon", "coordinates": [[SQUARE], "x"]},
     r"coordinates\[1\]: Polygon coordinates must be an array"),
])  # fmt: skip
def test_bad_geojson_is_refused_naming_what_is_wrong(
    catalog: Catalog, storage: Storage, uploads: Path, document, message: str
) -> None:
    upload = write_json(uploads / "bad.geojson", document)
    with pytest.raises(InputError, match=rf"bad\.geojson: .*{message}"):
        add_file(catalog, storage, upload, name="bad", **WHO)
    assert all_datasets(catalog) == [] and stored_files(storage) == []


@pytest.mark.parametrize("text, message", [
    ('{"type": "Point", "coordinates": [NaN, 1]}', "NaN is not a JSON number"),
    ('{"type": "Point", "coordinates": [1, 2]', "not valid JSON"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"type": "Point"}\xff', "not valid JSON"),
])  # fmt: skip
def test_malformed_json_is_refused(
    catalog: Catalog, storage: Storage, uploads: Path, text: str, message: str
) -> None:
    upload = uploads / "bad.json"
    upload.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match=message):
        add_file(catalog, storage, upload, name="bad", **WHO)


def multipoint(count: int) -> dict[str, Any]:
    return {"type": "MultiPoint", "coordinates": [[n, n] for n in range(count)]}


def test_vertex_and_size_limits(catalog: Catalog, storage: Storage, uploads: Path) -> None:
    count = ingest.MAX_VERTICES + 1
    line = uploads / "long.geojson"
    with line.open("w") as out:
        out.write('{"type": "LineString", "coordinates": [')
        out.write(
            ",".join(f"[{(n % 3600) / 20 - 90:g},{(n % 1700) / 20 - 85:g}]" for n in range(count))
        )
        out.write("]}")
    with pytest.raises(InputError, match=r"long\.geojson: 1,000,001 vertices, over the limit"):
        add_geojson(catalog, storage, line, name="long", **WHO)
    ten = write_json(uploads / "ten.geojson", multipoint(10))
    assert add_geojson(catalog, storage, ten, name="ok", max_vertices=10, **WHO).kind == "vector"
    eleven = write_json(uploads / "eleven.geojson", multipoint(11))
    with pytest.raises(InputError, match="11 vertices, over the limit of 10"):
        add_geojson(catalog, storage, eleven, name="no", max_vertices=10, **WHO)
    with pytest.raises(InputError, match=r"ten\.geojson: 0\.0 MiB, over the GeoJSON limit"):
        add_geojson(catalog, storage, ten, name="small", max_bytes=100, **WHO)
    assert [d.name for d in all_datasets(catalog)] == ["ok"]
    assert len(stored_files(storage)) == 1


# -- points -------------------------------------------------------------------------------


def test_point(catalog: Catalog) -> None:
    dataset = add_point(catalog, lat=45.5, lon=-122.25, name="well", description="deep", owner="bo")
    back = get_dataset(catalog, dataset.id)
    assert (back.kind, back.assets, back.owner, back.description) == ("point", {}, "bo", "deep")
    assert back.footprint == {"type": "Point", "coordinates": [-122.25, 45.5]}
    assert back.bbox == (-122.25, 45.5, -122.25, 45.5)
    hits = search_datasets(catalog, DatasetQuery(bbox=(-123, 45, -122, 46))).items
    assert [d.id for d in hits] == [dataset.id]
    assert search_datasets(catalog, DatasetQuery(bbox=(-122, 45, -121, 46))).items == []


@pytest.mark.parametrize("lat, lon, message", [
    (91, 0, "point latitude 91 is out of range"), (0, -180.5, "point longitude -180.5 is out"),
    ("north", 0, "point latitude 'north' is not a number"), (float("nan"), 0, "latitude nan"),
])  # fmt: skip
def test_bad_point_is_refused(catalog: Catalog, lat, lon, message: str) -> None:
    with pytest.raises(InputError, match=message):
        add_point(catalog, lat=lat, lon=lon, name="p", description="", owner="bo")
    assert all_datasets(catalog) == []


# -- failures leave nothing ---------------------------------------------------------------


def test_failed_registration_removes_the_stored_files(
    catalog: Catalog, storage: Storage, uploads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tif(uploads / "r.tif", np.ones((8, 8), "uint8"))

    def refuse(*_args: Any) -> None:
        raise CatalogError("catalog went away")

    monkeypatch.setattr(ingest, "add_dataset", refuse)
    with pytest.raises(CatalogError, match="went away"):
        add_raster(catalog, storage, path, name="r", **WHO)
    assert stored_files(storage) == []
    monkeypatch.undo()
    assert all_datasets(catalog) == []


def test_failed_storage_registers_nothing(catalog: Catalog, tmp_path: Path, uploads: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "datasets").write_text("a file where the folder should be")
    path = write_tif(uploads / "r.tif", np.ones((8, 8), "uint8"))
    with Storage.from_url(str(blocked)) as storage, pytest.raises(StorageError):
        storage.cleanup_delays = (0.0,)
        add_raster(catalog, storage, path, name="r", **WHO)
    assert all_datasets(catalog) == []
    assert sorted(p.name for p in blocked.rglob("*")) == ["datasets"]


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "dataset name ''"), ("name", "x" * 201, "dataset name"),
    ("owner", "", "dataset owner ''"), ("scope", "world", "dataset scope 'world'"),
])  # fmt: skip
def test_bad_fields_are_refused_before_storing(
    catalog: Catalog, storage: Storage, uploads: Path, field: str, value: str, message: str
) -> None:
    path = write_tif(uploads / "r.tif", np.ones((8, 8), "uint8"))
    fields = {"name": "r", "owner": "ana", "scope": "local", field: value}
    with pytest.raises(InputError, match=message):
        add_raster(catalog, storage, path, **fields)
    assert stored_files(storage) == [] and all_datasets(catalog) == []


def test_missing_file_is_refused(catalog: Catalog, storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"gone\.tif: no such file"):
        add_file(catalog, storage, tmp_path / "gone.tif", name="g", **WHO)


def test_hostile_names_are_kept_verbatim_and_never_used_as_file_names(
    catalog: Catalog, storage: Storage, uploads: Path
) -> None:
    hostile = "x'); DROP TABLE datasets; --"
    upload = uploads / "..%2F..%2Fetc passwd.tif"
    shutil.copy(write_tif(uploads / "r.tif", np.ones((8, 8), "uint8")), upload)
    dataset = add_file(catalog, storage, upload, name=hostile, description=hostile, owner="ana")
    back = get_dataset(catalog, dataset.id)
    assert (back.name, back.description) == (hostile, hostile)
    assert stored_files(storage) == [storage.url_for(f"datasets/{dataset.id}/data.tif")]
    assert {"datasets", "jobs"} <= catalog.tables()
