"""End to end through the Python API on real Sentinel-2 data: values, georeferencing,
offsets, masks, every source kind, byte-identical tiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from madrone import process
from madrone.errors import ImplausibleReflectanceWarning

T18 = "L1C_T18SVG_20160112_crop"
T29 = "L2A_T29RKH_20200219_100m"
TINY = "L1C_T32UPC_tiny_offsets"
STAC = "stac_L2A_T33TWL_T33TWM_202308/sentinel-2-l2a"


def read(path: Path | str, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(band)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalized difference in float64, NaN where undefined: the independent reference."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    out[~np.isfinite(out)] = np.nan
    return out


def dn_ratio(a_dn: np.ndarray, b_dn: np.ndarray) -> np.ndarray:
    """Normalized difference of two DN bands at offset 0; DN 0 is Sentinel-2's NODATA."""
    out = ratio(a_dn / 1e4, b_dn / 1e4)
    out[(a_dn == 0) | (b_dn == 0)] = np.nan
    return out


def assert_close_with_nan(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-6) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    valid = ~np.isnan(expected)
    assert valid.sum() > 0
    np.testing.assert_allclose(actual[valid], expected[valid], atol=atol, rtol=0)


def test_ndvi_ndsi_match_numpy_and_keep_the_input_grid(data_dir: Path, tmp_path: Path) -> None:
    folder = data_dir / T18
    result = process([str(folder)], ["ndvi", "ndsi"], str(tmp_path), resampling="nearest",
                     workers=1)  # fmt: skip
    red, nir, green = (read(folder / f"{b}.tif") for b in ("B04", "B08", "B03"))
    ndvi_path = result.products["NDVI"].files["cog"]
    assert_close_with_nan(read(ndvi_path), dn_ratio(nir, red))

    # B11 (20 m, its grid offset by 10 m) onto the 10 m grid by nearest neighbour, in numpy.
    with rasterio.open(folder / "B04.tif") as b04, rasterio.open(folder / "B11.tif") as b11:
        swir = b11.read(1)
        xs = b04.transform.c + (np.arange(b04.width) + 0.5) * b04.transform.a
        ys = b04.transform.f + (np.arange(b04.height) + 0.5) * b04.transform.e
        cols = np.floor((xs - b11.transform.c) / b11.transform.a).astype(int)
        rows = np.floor((ys - b11.transform.f) / b11.transform.e).astype(int)
        inside_c = (cols >= 0) & (cols < b11.width)
        inside_r = (rows >= 0) & (rows < b11.height)
        swir_10m = np.zeros(red.shape, dtype=np.float64)
        swir_10m[np.ix_(inside_r, inside_c)] = swir[np.ix_(rows[inside_r], cols[inside_c])]
        swir_10m[swir_10m == 0] = np.nan
        expected_crs, expected_transform = b04.crs, b04.transform
    ndsi = read(result.products["NDSI"].files["cog"])
    assert_close_with_nan(ndsi, ratio(green / 1e4, swir_10m / 1e4))

    for key in ("NDVI", "NDSI"):
        with rasterio.open(result.products[key].files["cog"]) as product:
            assert product.crs == expected_crs
            assert product.transform == expected_transform
            assert product.dtypes[0] == "float32"
            assert np.isnan(product.nodata)
            assert product.tags()["index"] == key
            assert product.descriptions[0] == key
            assert product.overviews(1), "the COG has overviews"
    stats = result.products["NDVI"].stats
    assert stats["min"] == pytest.approx(float(np.nanmin(read(ndvi_path))), abs=1e-6)
    assert -0.6 < stats["min"] < -0.4 and 0.75 < stats["max"] < 0.9  # PROVENANCE: -0.53..0.82


@pytest.mark.parametrize("png_max_size", [300, 4096])
def test_png_drawn_while_encoding_equals_one_drawn_from_the_cog(
    data_dir: Path, tmp_path: Path, png_max_size: int
) -> None:
    """The PNG is drawn from the values before the COG exists (decimated through their
    overview levels at 300 px): byte for byte what the COG itself gives, and the COG's
    overviews are those levels."""
    from madrone.config import Settings
    from madrone.products.render import render_png, style_for

    settings = Settings(png_max_size=png_max_size)
    result = process([str(data_dir / T29)], ["ndvi"], str(tmp_path / "out"), workers=1,
                     settings=settings)  # fmt: skip
    files = result.products["NDVI"].files
    again = render_png(files["cog"], str(tmp_path / "again.png"), style_for("NDVI", None),
                       png_max_size)  # fmt: skip
    assert Path(again["path"]).read_bytes() == Path(files["png"]).read_bytes()
    assert (tmp_path / "again.pgw").read_bytes() == Path(files["png"][:-4] + ".pgw").read_bytes()
    with rasterio.open(files["cog"]) as cog, rasterio.open(files["png"]) as png:
        assert cog.overviews(1) == [2, 4] and png.width == min(png_max_size, cog.width)


def test_the_codec_is_one_setting_away_and_changes_no_value(data_dir: Path, tmp_path: Path) -> None:
    """ZSTD by default; MADRONE_COG_CODEC=deflate writes DEFLATE: the same values and
    overviews, the same PNG."""
    from madrone.config import Settings

    cogs, pngs = {}, {}
    for codec in ("zstd", "deflate"):
        settings = Settings.from_env({"MADRONE_COG_CODEC": codec, "MADRONE_COG_ZLEVEL": "2"})
        result = process([str(data_dir / T29)], ["ndvi"], str(tmp_path / codec), workers=2,
                         settings=settings)  # fmt: skip
        cogs[codec], pngs[codec] = (Path(result.products["NDVI"].files[kind])
                                    for kind in ("cog", "png"))  # fmt: skip
        with rasterio.open(cogs[codec]) as cog:
            assert cog.compression.name == codec
            assert cog.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
    assert Settings().cog_codec == "zstd"
    assert pngs["zstd"].read_bytes() == pngs["deflate"].read_bytes()
    for level in (None, 0, 1):
        with (
            rasterio.open(cogs["zstd"], overview_level=level) as ours,
            rasterio.open(cogs["deflate"], overview_level=level) as theirs,
        ):
            assert np.array_equal(ours.read(1), theirs.read(1), equal_nan=True)


def test_cog_is_valid_and_png_is_placed(data_dir: Path, tmp_path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    result = process([str(data_dir / T29)], ["ndvi"], str(tmp_path), workers=1)
    files = result.products["NDVI"].files
    valid, errors, _warnings = cog_validate(files["cog"])
    assert valid, errors
    with rasterio.open(files["png"]) as png, rasterio.open(files["cog"]) as cog:
        assert png.count == 4 and png.dtypes[0] == "uint8"
        assert png.crs == cog.crs
        assert png.bounds == pytest.approx(cog.bounds)
    assert Path(files["legend"]).stat().st_size > 1000
    item = json.loads(Path(files["json"]).read_text())
    assert item["type"] == "Feature"
    assert item["properties"]["madrone:index"]["name"] == "NDVI"
    assert sorted(tmp_path.iterdir()) == sorted(
        tmp_path / n
        for n in (
            f"{T29}_ndvi.tif",
            f"{T29}_ndvi.png",
            f"{T29}_ndvi.pgw",
            f"{T29}_ndvi.png.aux.xml",
            f"{T29}_ndvi.legend.png",
            f"{T29}_ndvi.json",
        )
    ), "only the products, nothing left from staging"


def test_tile_sizes_and_workers_give_byte_identical_products(
    data_dir: Path, tmp_path: Path
) -> None:
    runs = {}
    for tile_size, workers in ((256, 1), (512, 2), (1024, 1)):
        out = tmp_path / f"t{tile_size}"
        process([str(data_dir / T29)], ["ndvi", "ndsi"], str(out), tile_size=tile_size,
                workers=workers)  # fmt: skip
        runs[tile_size] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len(runs[256]) == 12
    assert runs[256] == runs[512] == runs[1024]


def test_offset_rule_matches_the_toa_reference_for_both_baselines(
    data_dir: Path, tmp_path: Path
) -> None:
    for product, offset in (
        ("S2B_MSIL1C_20200406T101559_N0209_R065_T32UPC_20200406T130159", 0),
        ("S2B_MSIL1C_20220615T101559_N0400_R065_T32UPC_20220615T122549", -1000),
    ):
        stack = data_dir / TINY / f"{product}.tif"
        result = process([str(stack)], ["ndvi"], str(tmp_path / product), workers=1)
        toa = data_dir / TINY / f"{product}_toa.tif"
        expected = ratio(read(toa, 8), read(toa, 4))  # ESA order: band 8 = B08, band 4 = B04
        # DN 0 is the NODATA special value in the product metadata; the reference keeps it
        # as reflectance 0 (or -0.1), madrone makes it NaN.
        expected[(read(stack, 8) == 0) | (read(stack, 4) == 0)] = np.nan
        actual = read(result.products["NDVI"].files["cog"])
        assert_close_with_nan(actual, expected)
        without_offset = ratio(read(stack, 8) / 1e4, read(stack, 4) / 1e4)
        differs = np.nanmax(np.abs(without_offset - expected)) > 1e-3
        assert differs == (offset != 0), "the offset changes NDVI only for baseline 04.00"
        item = json.loads(Path(result.products["NDVI"].files["json"]).read_text())
        radiometry = item["properties"]["madrone:sources"][0]["radiometry"]
        assert str(offset) in radiometry


def test_scl_masks_clouds_and_keeps_snow_for_ndsi(data_dir: Path, tmp_path: Path) -> None:
    item = data_dir / STAC / "S2A_33TWM_20230818_0_L2A" / "S2A_33TWM_20230818_0_L2A.json"
    folder = item.parent
    result = process([str(item)], ["ndvi", "ndwi"], str(tmp_path), workers=1,
                     expressions={"snowy": "(green-nir)/(green+nir)"})  # fmt: skip
    scl = read(folder / "SCL.tif")
    assert read(folder / "B04.tif").shape == scl.shape, "this item's SCL is on the band grid"
    ndvi = read(result.products["NDVI"].files["cog"])
    red, nir = read(folder / "B04.tif"), read(folder / "B08.tif")
    expected = dn_ratio(nir, red)  # offset already applied: earthsearch flag
    masked = np.isin(scl, (0, 1, 3, 8, 9, 10, 11)) | (scl > 11)
    assert masked.sum() > 100_000, "the 08-18 date is cloudy"
    expected[masked] = np.nan
    assert_close_with_nan(ndvi, expected)


def test_snow_is_masked_except_for_snow_indices(data_dir: Path, tmp_path: Path) -> None:
    # The L2A scene has B03, B04, B08, B11 and SCL but no snow: mark a block of its SCL as
    # snow (class 11) in a copy, so NDSI (a snow index) and NDVI must treat it differently.
    folder = tmp_path / "T29RKH_20200219"
    folder.mkdir()
    for band in ("B03", "B04", "B08", "B11", "SCL"):
        (folder / f"{band}.tif").write_bytes((data_dir / T29 / f"{band}.tif").read_bytes())
    with rasterio.open(folder / "SCL.tif", "r+") as scl:
        classes = scl.read(1)
        classes[100:200, 100:200] = 11
        scl.write(classes, 1)
    result = process([str(folder)], ["ndvi", "ndsi"], str(tmp_path / "out"), workers=1)
    ndvi = read(result.products["NDVI"].files["cog"])
    ndsi = read(result.products["NDSI"].files["cog"])
    snow = np.zeros(ndvi.shape, dtype=bool)
    snow[200:400, 200:400] = True  # SCL is 200 m, the output 100 m
    assert np.isnan(ndvi[snow]).all()
    assert np.isfinite(ndsi[snow]).mean() > 0.99
    clear = np.isfinite(ndvi) & ~snow
    assert clear.sum() > 800_000 and np.isfinite(ndsi[clear]).mean() > 0.99


def test_stac_flag_is_honoured_and_a_wrong_offset_warns(data_dir: Path, tmp_path: Path) -> None:
    item_path = data_dir / STAC / "S2A_33TWM_20230815_0_L2A" / "S2A_33TWM_20230815_0_L2A.json"
    result = process([str(item_path)], ["ndvi"], str(tmp_path / "ok"), workers=1)
    assert result.warnings == []
    red = read(item_path.parent / "B04.tif")
    assert np.median(red[red > 0]) < 1500, "offset already removed from these pixels"

    item = json.loads(item_path.read_text())
    item["properties"]["earthsearch:boa_offset_applied"] = False
    for asset in item["assets"].values():
        if not asset["href"].startswith(("http", "s3")):
            asset["href"] = str(item_path.parent / asset["href"])
    broken = tmp_path / "flag_false.json"
    broken.write_text(json.dumps(item))
    with pytest.warns(ImplausibleReflectanceWarning, match=r"B04.*negative.*-1000"):
        result = process([str(broken)], ["ndvi"], str(tmp_path / "bad"), workers=1)
    assert any("B04" in note for note in result.warnings)


def test_jpeg2000_band_folder(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "L1C_T19UDP_20170729_900m"
    folder = tmp_path / "jp2"
    folder.mkdir()
    for band in ("B04", "B08"):
        with rasterio.open(source / f"{band}.tif") as src:
            profile = src.profile | {"driver": "JP2OpenJPEG", "QUALITY": "100",
                                     "REVERSIBLE": "YES"}  # fmt: skip
            for key in ("tiled", "blockxsize", "blockysize", "compress", "interleave"):
                profile.pop(key, None)
            with rasterio.open(folder / f"T19UDP_20170729T153911_{band}_900m.jp2", "w",
                               **profile) as dst:  # fmt: skip
                dst.write(src.read())
    result = process([str(folder)], ["ndvi"], str(tmp_path / "out"), workers=1)
    expected = dn_ratio(read(source / "B08.tif"), read(source / "B04.tif"))
    assert_close_with_nan(read(result.products["NDVI"].files["cog"]), expected)


def test_two_sources_mosaic_first_valid_wins(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "L1C_T19UDP_20170729_900m"
    halves = {"20170729_west": Window(0, 0, 70, 122), "20170729_east": Window(50, 0, 72, 122)}
    for half, window in halves.items():
        (tmp_path / half).mkdir()
        for band in ("B04", "B08"):
            with rasterio.open(source / f"{band}.tif") as src:
                data = src.read(1, window=window)
                if half.endswith("east"):
                    data = data // 2 + 1  # different values where the halves overlap
                profile = src.profile | {"width": window.width, "height": window.height,
                                         "transform": src.window_transform(window)}  # fmt: skip
                with rasterio.open(tmp_path / half / f"{band}.tif", "w", **profile) as dst:
                    dst.write(data, 1)
    result = process([str(tmp_path / h) for h in halves], ["ndvi"],
                     str(tmp_path / "out"), workers=1)  # fmt: skip
    mosaic_path = result.products["NDVI"].files["cog"]
    with rasterio.open(mosaic_path) as mosaic, rasterio.open(source / "B04.tif") as whole:
        assert mosaic.transform == whole.transform and mosaic.shape == whole.shape
    mosaic = read(mosaic_path)
    west = dn_ratio(read(source / "B08.tif"), read(source / "B04.tif"))
    east_dir = tmp_path / "20170729_east"
    east = dn_ratio(read(east_dir / "B08.tif"), read(east_dir / "B04.tif"))
    # West first: its valid pixels win; where it is nodata, the east half fills in.
    expected = np.full(mosaic.shape, np.nan)
    expected[:, 50:] = east
    expected[:, :70] = np.where(np.isnan(west[:, :70]), expected[:, :70], west[:, :70])
    assert_close_with_nan(mosaic, expected)


def test_the_full_resolution_is_staged_only_when_something_reads_it() -> None:
    """Tiles holding whole blocks of every level and a PNG drawn from an overview leave
    the full resolution out of the staging files; cut blocks or a full-size PNG keep it."""
    from types import SimpleNamespace

    from madrone.engine.run import _full_resolution_read
    from madrone.grid import Grid, iter_tiles

    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 2000, 1500)

    def job(tile_size: int, products: tuple[str, ...]) -> SimpleNamespace:
        return SimpleNamespace(grid=grid, tiles=list(iter_tiles(grid, tile_size)),
                               spec=SimpleNamespace(products=products))  # fmt: skip

    assert not _full_resolution_read(job(512, ("cog", "png")), 1000)  # PNG from level 2
    assert not _full_resolution_read(job(512, ("cog",)), 4096)
    assert _full_resolution_read(job(512, ("cog", "png")), 1001)  # may read full res
    assert _full_resolution_read(job(512, ("cog", "png")), 0)  # full-size PNG
    assert _full_resolution_read(job(250, ("cog",)), 4096)  # 250 cuts level 4's blocks
