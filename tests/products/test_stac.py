"""Tests for madrone.products.stac: a valid, placeable, reproducible STAC item."""

from __future__ import annotations

import json
import os

import numpy as np
import pystac
import pytest
from affine import Affine
from pyproj import Transformer
from pystac.errors import STACValidationError
from pystac.validation import validate_dict

from madrone.errors import ProcessingError
from madrone.products.stac import build_item, write_json
from madrone.products.stats import compute_stats
from tests.support.rasters import TRANSFORM, write_raster

INDEX = {
    "name": "NDVI",
    "formula": "(N - R) / (N + R)",
    "bands": ["N", "R"],
    "domain": "vegetation",
}
SOURCES = [
    {
        "name": "S2B_MSIL2A_20230716T100559_N0509_R022_T33TWL",
        "href": "S2B_MSIL2A_20230716.zip",
        "datetime": "2023-07-16T10:15:59.024Z",
        "radiometry": "L2A BOA reflectance = (DN - 1000) / 10000",
    },
    {
        "name": "S2A_MSIL2A_20230711T100601_N0509_R022_T33TWL",
        "href": "S2A_MSIL2A_20230711.zip",
        "datetime": "2023-07-11T10:16:01Z",
        "radiometry": "L2A BOA reflectance = (DN - 1000) / 10000",
    },
]

ASSETS = {"cog": "ndvi.tif", "png": "ndvi.png", "legend": "ndvi.legend.png", "json": "ndvi.json"}


def write_ramp(path, crs="EPSG:32633", transform=TRANSFORM, shape=(500, 700)) -> str:
    """Write an NDVI-like float32 ramp with a NaN hole."""
    height, width = shape
    data = np.tile(np.linspace(-1.0, 1.0, width, dtype=np.float32), (height, 1))
    data[100:150, 200:260] = np.nan
    return write_raster(path, data, transform=transform, crs=crs)


@pytest.fixture
def raster(tmp_path) -> str:
    return write_ramp(tmp_path / "ndvi.tif")


def make_item(raster_path: str, **overrides) -> dict:
    arguments = {
        "item_id": "ndvi",
        "raster_path": raster_path,
        "index": INDEX,
        "stats": compute_stats(raster_path, (-1.0, 1.0), bins=10),
        "sources": SOURCES,
        "assets": ASSETS,
        "properties": {"madrone:resampling": "bilinear"},
    }
    arguments.update(overrides)
    return build_item(**arguments)


def test_item_validates_through_pystac(raster):
    item = make_item(raster)
    parsed = pystac.Item.from_dict(item)
    assert parsed.id == "ndvi"
    assert item["type"] == "Feature"
    assert item["stac_version"] == pystac.get_stac_version()
    assert parsed.to_dict(include_self_link=False, transform_hrefs=False) == item
    assert set(item["stac_extensions"]) >= {
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    }


def pystac_reference(item: dict, raster_path: str, stats: dict) -> dict:
    """The same item built by pystac's own classes and extension helpers, from the raster
    and the statistics (the geometry, dates and madrone's fields taken from ``item``)."""
    import rasterio
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import (
        DataType,
        Histogram,
        RasterBand,
        RasterExtension,
        Statistics,
    )
    from pystac.utils import str_to_datetime

    props = dict(item["properties"])
    times = {k: props.pop(k, None) for k in ("datetime", "start_datetime", "end_datetime")}
    times = {k: str_to_datetime(v) if v else None for k, v in times.items()}
    mine = {k: v for k, v in props.items() if not k.startswith("proj:")}
    with rasterio.open(raster_path) as ds:
        crs, transform, shape, bounds = ds.crs, ds.transform, ds.shape, ds.bounds
    reference = pystac.Item(
        id=item["id"],
        geometry=item["geometry"],
        bbox=item["bbox"],
        datetime=times["datetime"],
        start_datetime=times["start_datetime"],
        end_datetime=times["end_datetime"],
        properties=mine,
        stac_extensions=["https://stac-extensions.github.io/processing/v1.2.0/schema.json"],
    )
    epsg = crs.to_epsg()
    ProjectionExtension.ext(reference, add_if_missing=True).apply(
        epsg=epsg,
        wkt2=None if epsg else crs.to_wkt(version="WKT2_2019"),
        shape=list(shape),
        transform=list(transform)[:6],
        bbox=list(bounds),
    )
    for key, asset in item["assets"].items():
        reference.add_asset(
            key,
            pystac.Asset(
                href=asset["href"],
                title=asset.get("title"),
                media_type=asset.get("type"),
                roles=asset["roles"],
            ),
        )
        if "raster:bands" not in asset:
            continue
        edges, counts = stats["histogram"]["edges"], stats["histogram"]["counts"]
        band = RasterBand.create(
            nodata="nan",
            data_type=DataType.FLOAT32,
            spatial_resolution=abs(transform.a),
            statistics=Statistics.create(
                minimum=stats["min"],
                maximum=stats["max"],
                mean=stats["mean"],
                stddev=stats["std"],
                valid_percent=round(100.0 * stats["valid_fraction"], 6),
            ),
            histogram=Histogram.create(len(counts), edges[0], edges[-1], list(counts)),
        )
        RasterExtension.ext(reference.assets[key], add_if_missing=True).bands = [band]
    return reference.to_dict(include_self_link=False, transform_hrefs=False)


@pytest.mark.parametrize("dated", [True, False])
@pytest.mark.parametrize("crs", ["EPSG:32633", "laea"])
def test_item_equals_the_one_pystac_builds(tmp_path, crs, dated):
    if crs == "laea":
        crs = "+proj=laea +lat_0=52 +lon_0=11 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
        transform = Affine(10.0, 0.0, 4321000.0, 0.0, -10.0, 3210000.0)
    else:
        transform = TRANSFORM
    raster = write_ramp(tmp_path / "ndvi.tif", crs=crs, transform=transform)
    stats = compute_stats(raster, (-1.0, 1.0), bins=10)
    item = make_item(raster, stats=stats, sources=SOURCES if dated else [{"name": "undated"}])
    assert json.dumps(item, sort_keys=True) == json.dumps(
        pystac_reference(item, raster, stats), sort_keys=True
    )


def test_geometry_and_bbox_cover_the_footprint(raster):
    item = make_item(raster)
    west, south, east, north = item["bbox"]
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    corners = [(500000, 5000000), (507000, 5000000), (507000, 4995000), (500000, 4995000)]
    for x, y in [*corners, (503500, 4997500)]:
        lon, lat = to_lonlat.transform(x, y)
        assert west <= lon <= east and south <= lat <= north
    # 500000 m easting is zone 33's central meridian, 15° E.
    assert west == pytest.approx(15.0, abs=1e-6)
    assert north == pytest.approx(45.1534772, abs=1e-6)
    ring = item["geometry"]["coordinates"][0]
    assert item["geometry"]["type"] == "Polygon"
    assert ring[0] == ring[-1] and len(ring) > 5
    assert ring[0] == pytest.approx([15.0, 45.1534772], abs=1e-7)


def test_projection_and_raster_fields(raster):
    item = make_item(raster)
    props = item["properties"]
    assert props["proj:code"] == "EPSG:32633"
    assert props["proj:shape"] == [500, 700]
    assert props["proj:transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0]
    assert props["proj:bbox"] == [500000.0, 4995000.0, 507000.0, 5000000.0]
    band = item["assets"]["cog"]["raster:bands"][0]
    assert band["data_type"] == "float32" and band["nodata"] == "nan"
    stats = props["madrone:stats"]
    assert band["statistics"]["mean"] == stats["mean"]
    assert band["statistics"]["valid_percent"] == pytest.approx(100 * stats["valid_fraction"])
    assert band["histogram"]["buckets"] == stats["histogram"]["counts"]


def test_non_epsg_crs_is_written_as_wkt2(tmp_path):
    crs = "+proj=laea +lat_0=52 +lon_0=11 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    transform = Affine(10.0, 0.0, 4321000.0, 0.0, -10.0, 3210000.0)
    item = make_item(write_ramp(tmp_path / "laea.tif", crs=crs, transform=transform))
    props = item["properties"]
    assert "proj:code" not in props or props["proj:code"] is None
    assert props["proj:wkt2"].startswith("PROJCRS")
    west, south, east, north = item["bbox"]
    assert west <= 11.0 <= east and south <= 52.0 <= north


def test_footprint_across_the_antimeridian(tmp_path):
    # At 60° N, 180° lies about 332 km east in UTM zone 1: this raster spans 300-370 km.
    transform = Affine(100.0, 0.0, 300000.0, 0.0, -100.0, 6660000.0)
    raster = write_ramp(tmp_path / "am.tif", crs="EPSG:32601", transform=transform)
    item = make_item(raster)
    west, _, east, _ = item["bbox"]
    assert item["geometry"]["type"] == "MultiPolygon"
    assert west > 170.0 and east < -170.0  # bbox wraps: west > east
    pystac.Item.from_dict(item)


def test_assets_have_relative_hrefs_and_roles(raster):
    assets = make_item(raster)["assets"]
    assert {k: a["href"] for k, a in assets.items()} == ASSETS
    assert assets["cog"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert assets["cog"]["roles"] == ["data"]
    assert assets["png"]["type"] == "image/png" and "visual" in assets["png"]["roles"]
    assert assets["legend"]["roles"] == ["legend"]
    assert assets["json"]["roles"] == ["metadata"]
    extra = make_item(raster, assets={"data": "x.tif", "worldfile": "x.pgw"})["assets"]
    assert extra["data"]["roles"] == ["data"] and "raster:bands" in extra["data"]
    assert extra["worldfile"]["roles"] == ["worldfile"]


@pytest.mark.parametrize("href", ["/tmp/ndvi.tif", "s3://bucket/ndvi.tif", "../ndvi.tif"])
def test_absolute_hrefs_are_refused(raster, href):
    with pytest.raises(ValueError, match="relative"):
        make_item(raster, assets={"cog": href})


def test_madrone_properties(raster):
    from madrone import __version__

    props = make_item(raster)["properties"]
    assert props["madrone:index"] == INDEX
    assert props["madrone:sources"] == SOURCES
    assert props["madrone:resampling"] == "bilinear"
    assert props["processing:software"] == {"madrone": __version__}


def test_datetime_from_properties(raster):
    item = make_item(raster, properties={"datetime": "2023-07-16T10:15:59Z"})
    props = item["properties"]
    assert props["datetime"] == "2023-07-16T10:15:59Z"
    assert "start_datetime" not in props


def test_datetime_range_from_sources(raster):
    props = make_item(raster)["properties"]
    assert props["datetime"] is None
    assert props["start_datetime"] == "2023-07-11T10:16:01Z"
    assert props["end_datetime"] == "2023-07-16T10:15:59.024000Z"


def test_no_date_at_all_is_an_unknown_date_that_stac_accepts(raster):
    item = make_item(raster, sources=[{"name": "undated"}])
    props = item["properties"]
    assert props["datetime"] is None
    assert props["madrone:datetime"] == "unknown"
    assert props["start_datetime"] == "2015-06-23T00:00:00Z"
    assert props["end_datetime"] == "9999-12-31T23:59:59Z"
    parsed = pystac.Item.from_dict(item)
    assert parsed.datetime is None
    assert parsed.common_metadata.start_datetime.year == 2015
    assert parsed.common_metadata.end_datetime.year == 9999
    # The core STAC item schema (bundled with pystac) accepts it; without the range it would not.
    validate_dict(item, extensions=[])
    rangeless = {**item, "properties": {**props}}
    del rangeless["properties"]["start_datetime"], rangeless["properties"]["end_datetime"]
    with pytest.raises(STACValidationError):
        validate_dict(rangeless, extensions=[])


def test_a_known_date_is_never_marked_unknown(raster):
    assert "madrone:datetime" not in make_item(raster)["properties"]
    dated = make_item(raster, properties={"datetime": "2023-07-16T10:15:59Z"}, sources=[])
    assert "madrone:datetime" not in dated["properties"]


def test_item_is_reproducible(raster, tmp_path):
    write_json(str(tmp_path / "a.json"), make_item(raster))
    write_json(str(tmp_path / "b.json"), make_item(raster))
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()
    props = json.loads(text)["properties"]
    assert not {"created", "updated"} & set(props)


def test_write_json_is_sorted_indented_and_atomic(tmp_path):
    path = str(tmp_path / "item.json")
    write_json(path, {"b": 1, "a": {"d": [1, 2], "c": "é"}})
    text = (tmp_path / "item.json").read_text(encoding="utf-8")
    expected = ["{", '  "a": {', '    "c": "é",', '    "d": [', "      1,", "      2", "    ]"]
    expected += ["  },", '  "b": 1', "}", ""]
    assert text == "\n".join(expected)
    assert os.listdir(tmp_path) == ["item.json"]
    (tmp_path / "plain.txt").write_text("x")  # permissions follow the umask, like any file
    assert os.stat(path).st_mode == os.stat(tmp_path / "plain.txt").st_mode


def test_write_json_leaves_nothing_on_failure(tmp_path):
    os.mkdir(tmp_path / "item.json")
    with pytest.raises(ProcessingError, match=r"item\.json"):
        write_json(str(tmp_path / "item.json"), {"a": 1})
    assert os.listdir(tmp_path) == ["item.json"]
    assert os.listdir(tmp_path / "item.json") == []
