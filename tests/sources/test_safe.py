"""SAFE products: metadata parsing, radiometry, band discovery in folders and zips."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from madrone.bands import ESA_ORDER
from madrone.errors import SourceError
from madrone.sources.safe import (
    find_product_metadata,
    parse_product_metadata,
    radiometry,
    read_safe,
)
from tests.support.safe import build_mini_safe, zip_folder

TINY = "L1C_T32UPC_tiny_offsets"
NEW = "S2B_MSIL1C_20220615T101559_N0400_R065_T32UPC_20220615T122549"
OLD = "S2B_MSIL1C_20200406T101559_N0209_R065_T32UPC_20200406T130159"
COMPACT = "S2A_MSIL1C_20170226T102021_N0204_R065_T32TNM_20170226T102458"
L2A_TILE_MTD = (
    "S2A_MSIL2A_20181229T095411_N0211_R079_T33SVB_20181229T112231/"
    "S2A_MSIL2A_20181229T095411_N0211_R079_T33SVB_20181229T112231.SAFE"
)


def _mtd(data_dir: Path, product: str) -> Path:
    return data_dir / TINY / f"{product}_MTD.xml"


# --- parse_product_metadata and radiometry on real product metadata ---------------------------


def test_parse_baseline_0400_reads_offsets_and_special_values(data_dir: Path) -> None:
    path = _mtd(data_dir, NEW)
    meta = parse_product_metadata(path.read_bytes(), path.name)
    assert (meta.level, meta.product_type, meta.processing_baseline) == ("L1C", "S2MSI1C", "04.00")
    assert meta.quantification == 10000
    assert dict(meta.offsets) == {band_id: -1000.0 for band_id in ESA_ORDER}
    assert (meta.nodata, meta.saturated) == (0, 65535)
    assert meta.datetime == "2022-06-15T10:15:59.025000+00:00"
    assert (meta.spacecraft, meta.platform) == ("Sentinel-2B", "sentinel-2b")
    assert meta.tile_id == "32UPC"
    assert meta.product_uri == f"{NEW}.SAFE"
    assert list(meta.image_files) == list(ESA_ORDER)
    assert meta.image_files["B8A"] == (
        "GRANULE/L1C_T32UPC_A027547_20220615T102248/IMG_DATA/T32UPC_20220615T101559_B8A"
    )


def test_radiometry_baseline_0400_uses_radio_add_offset(data_dir: Path) -> None:
    path = _mtd(data_dir, NEW)
    offsets, scale, sentence = radiometry(parse_product_metadata(path.read_bytes(), path.name))
    assert offsets == {band_id: -1000.0 for band_id in ESA_ORDER}
    assert scale == pytest.approx(1e-4)
    assert sentence == (
        f"offset -1000 DN from RADIO_ADD_OFFSET in {path.name} (baseline 04.00), scale 1/10000"
    )


def test_radiometry_baseline_0209_has_no_offset(data_dir: Path) -> None:
    path = _mtd(data_dir, OLD)
    meta = parse_product_metadata(path.read_bytes(), path.name)
    assert meta.offsets == {}
    assert meta.processing_baseline == "02.09"
    offsets, scale, sentence = radiometry(meta)
    assert set(offsets.values()) == {0.0}
    assert scale == pytest.approx(1e-4)
    assert sentence.startswith("offset 0 DN")
    assert "no RADIO_ADD_OFFSET list" in sentence and "02.09" in sentence


def test_radiometry_without_offset_list_falls_back_on_baseline(data_dir: Path) -> None:
    xml = _mtd(data_dir, NEW).read_bytes()
    stripped = re.sub(
        rb"<Radiometric_Offset_List>.*?</Radiometric_Offset_List>", b"", xml, flags=re.S
    )
    assert b"RADIO_ADD_OFFSET" not in stripped
    meta = parse_product_metadata(stripped, "MTD_MSIL1C.xml")
    assert meta.offsets == {}
    offsets, _scale, sentence = radiometry(meta)
    assert set(offsets.values()) == {-1000.0}
    assert "implied by baseline 04.00" in sentence
    assert "MTD_MSIL1C.xml has no RADIO_ADD_OFFSET list" in sentence


def test_radiometry_without_quantification_uses_default(data_dir: Path) -> None:
    xml = _mtd(data_dir, OLD).read_bytes()
    stripped = re.sub(rb"<QUANTIFICATION_VALUE[^>]*>\d+</QUANTIFICATION_VALUE>", b"", xml)
    meta = parse_product_metadata(stripped, "MTD_MSIL1C.xml")
    assert meta.quantification is None
    _offsets, scale, sentence = radiometry(meta)
    assert scale == pytest.approx(1e-4)
    assert "default: MTD_MSIL1C.xml has no QUANTIFICATION_VALUE" in sentence


def test_parse_refuses_bad_xml_naming_the_file() -> None:
    with pytest.raises(SourceError, match=r"broken\.xml: not valid XML"):
        parse_product_metadata(b"<Level-1C_User_Product><oops>", "broken.xml")


def test_parse_refuses_other_xml() -> None:
    with pytest.raises(SourceError, match=r"other\.xml: not Sentinel-2 product metadata"):
        parse_product_metadata(b"<kml><Document/></kml>", "other.xml")


def test_parse_refuses_non_numeric_offset(data_dir: Path) -> None:
    xml = (
        _mtd(data_dir, NEW)
        .read_bytes()
        .replace(b'<RADIO_ADD_OFFSET band_id="3">-1000<', b'<RADIO_ADD_OFFSET band_id="3">n/a<')
    )
    with pytest.raises(SourceError, match=r"x\.xml: RADIO_ADD_OFFSET is 'n/a', not a number"):
        parse_product_metadata(xml, "x.xml")


def test_tile_level_l2a_metadata_is_refused_clearly(data_dir: Path) -> None:
    """The shipped L2A MTD_MSIL2A.xml is really a granule's MTD_TL content."""
    safe = data_dir / "SAFE_metadata" / L2A_TILE_MTD
    path = safe / "MTD_MSIL2A.xml"
    with pytest.raises(SourceError, match="tile-level metadata") as caught:
        parse_product_metadata(path.read_bytes(), str(path))
    assert "Level-2A_Tile_ID" in str(caught.value)
    with pytest.raises(SourceError, match="tile-level metadata") as caught:
        read_safe(str(safe))
    assert str(path) in str(caught.value)


# What ESA's L2A products hold per resolution folder (space-separated names).
L2A_FILES = {
    "R10m": "AOT B02 B03 B04 B08 TCI WVP",
    "R20m": "AOT B01 B02 B03 B04 B05 B06 B07 B11 B12 B8A SCL",
    "R60m": "AOT B01 B02 B03 B04 B05 B06 B07 B09 B11 B12 B8A SCL TCI WVP",
}
L2A_GRANULE = "GRANULE/L2A_T32UPC_A027547_20220615T102248/IMG_DATA"
L2A_NAME = "S2B_MSIL2A_20220615T101559_N0400_R065_T32UPC_20220615T142145"


def _l2a_mtd() -> bytes:
    """An L2A product MTD laid out like ESA's (the data folder has no product-level one)."""
    files = "".join(
        f"<IMAGE_FILE>{L2A_GRANULE}/{res}/T32UPC_20220615T101559_{b}_{res[1:]}</IMAGE_FILE>"
        for res, names in L2A_FILES.items()
        for b in names.split()
    )
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
 <n1:General_Info>
  <Product_Info>
   <PRODUCT_START_TIME>2022-06-15T10:15:59.025Z</PRODUCT_START_TIME>
   <PRODUCT_URI>{L2A_NAME}.SAFE</PRODUCT_URI>
   <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
   <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
   <PROCESSING_BASELINE>04.00</PROCESSING_BASELINE>
   <Datatake datatakeIdentifier="GS2B_20220615T101559_027547_N04.00">
    <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
   </Datatake>
   <Product_Organisation><Granule_List><Granule imageFormat="JPEG2000">{files}</Granule>
   </Granule_List></Product_Organisation>
  </Product_Info>
  <Product_Image_Characteristics>
   <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
    <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
   <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
    <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
   <QUANTIFICATION_VALUES_LIST>
    <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
    <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
   </QUANTIFICATION_VALUES_LIST>
   <BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>
  </Product_Image_Characteristics>
 </n1:General_Info>
</n1:Level-2A_User_Product>""".encode()


def test_parse_l2a_keeps_finest_resolution_and_boa_values() -> None:
    meta = parse_product_metadata(_l2a_mtd(), "MTD_MSIL2A.xml")
    assert (meta.level, meta.product_type, meta.quantification) == ("L2A", "S2MSI2A", 10000)
    assert set(meta.offsets.values()) == {-1000.0} and len(meta.offsets) == 13
    resolutions = {b: rel.split("/")[-2] for b, rel in meta.image_files.items()}
    assert resolutions == {
        "B01": "R20m", "B02": "R10m", "B03": "R10m", "B04": "R10m", "B05": "R20m",
        "B06": "R20m", "B07": "R20m", "B08": "R10m", "B8A": "R20m", "B09": "R60m",
        "B11": "R20m", "B12": "R20m", "SCL": "R20m",
    }  # fmt: skip
    assert "B10" not in meta.image_files  # L2A drops the cirrus band
    _offsets, _scale, sentence = radiometry(meta)
    assert sentence.startswith("offset -1000 DN from BOA_ADD_OFFSET in MTD_MSIL2A.xml")


def test_read_safe_l2a_folder(tmp_path: Path) -> None:
    safe = tmp_path / f"{L2A_NAME}.SAFE"
    safe.mkdir()
    (safe / "MTD_MSIL2A.xml").write_bytes(_l2a_mtd())
    for res, names in L2A_FILES.items():
        (safe / L2A_GRANULE / res).mkdir(parents=True)
        for b in names.split():
            (safe / L2A_GRANULE / res / f"T32UPC_20220615T101559_{b}_{res[1:]}.jp2").touch()
    scene = read_safe(str(safe))
    assert scene.name == L2A_NAME
    assert scene.metadata["level"] == "L2A"
    assert scene.band("B04").uri.endswith("/R10m/T32UPC_20220615T101559_B04_10m.jp2")
    assert scene.band("B09").uri.endswith("_B09_60m.jp2")
    scl = scene.band("SCL")
    assert scl.uri.endswith("/R20m/T32UPC_20220615T101559_SCL_20m.jp2")
    assert (scl.scale, scl.offset, scl.nodata) == (1.0, 0.0, 0.0)
    assert scene.band("B8A").offset == -1000.0


# --- read_safe on the real SAFE trees (empty band images: discovery and metadata only) --------


def test_read_compact_safe_folder(data_dir: Path) -> None:
    safe = data_dir / "SAFE_metadata" / "compact_safe" / f"{COMPACT}.SAFE"
    scene = read_safe(str(safe))
    assert scene.name == COMPACT
    assert sorted(scene.bands) == sorted(ESA_ORDER)  # TCI is not a band
    b04 = scene.band("B04")
    assert b04.uri == str(
        safe / "GRANULE/L1C_T32TNM_A008785_20170226T102458/IMG_DATA/T32TNM_20170226T102021_B04.jp2"
    )
    assert (b04.offset, b04.scale, b04.nodata, b04.saturated) == (0.0, 1e-4, 0.0, 65535.0)
    assert all(os.path.isfile(ref.uri) for ref in scene.bands.values())
    assert scene.metadata["processing_baseline"] == "02.04"
    assert scene.metadata["tile"] == "32TNM"
    assert scene.metadata["platform"] == "sentinel-2a"
    assert scene.metadata["datetime"] == "2017-02-26T10:20:21.026000+00:00"
    assert scene.metadata["href"] == str(safe)
    assert "baseline 02.04" in scene.metadata["radiometry"]


def test_read_safe_accepts_the_mtd_file_itself(data_dir: Path) -> None:
    safe = data_dir / "SAFE_metadata" / "compact_safe" / f"{COMPACT}.SAFE"
    scene = read_safe(str(safe / "MTD_MSIL1C.xml"))
    assert scene.name == COMPACT and len(scene.bands) == 13


@pytest.mark.parametrize(
    ("zip_name", "tile"),
    [
        ("S2A_MSIL1C_20170809T100031_N0205_R122_T32TQT_20170809T100028.zip", "32TQT"),
        ("S2A_MSIL1C_20170908T100031_N0205_R122_T33UWP_20170908T100655.zip", "33UWP"),
    ],
)
def test_read_zipped_safe(data_dir: Path, zip_name: str, tile: str) -> None:
    path = data_dir / "SAFE_metadata" / "zipped_safe" / zip_name
    scene = read_safe(str(path))
    product = zip_name.removesuffix(".zip")
    assert scene.name == product
    assert sorted(scene.bands) == sorted(ESA_ORDER)
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
    prefix = f"/vsizip/{os.path.abspath(path)}/"
    for band_id, ref in scene.bands.items():
        assert ref.uri.startswith(prefix + f"{product}.SAFE/GRANULE/")
        assert ref.uri.removeprefix(prefix) in members
        assert ref.uri.endswith(f"_{band_id}.jp2")
    assert scene.metadata["tile"] == tile
    assert scene.metadata["processing_baseline"] == "02.05"
    assert {ref.offset for ref in scene.bands.values()} == {0.0}


# --- a real mini SAFE built from the tiny 13-band products: pixels through the BandRefs ---------


def _assert_b04_matches_reference(scene, data_dir: Path, product: str) -> None:
    ref = scene.band("B04")
    with rasterio.open(ref.uri) as band:
        dn = band.read(ref.band_index).astype("float64")
    with rasterio.open(data_dir / TINY / f"{product}_toa.tif") as toa:
        expected = toa.read(4).astype("float64")
    valid = dn != ref.nodata
    assert valid.mean() > 0.9
    reflectance = (dn + ref.offset) * ref.scale
    np.testing.assert_allclose(reflectance[valid], expected[valid], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("product", "offset"), [(NEW, -1000.0), (OLD, 0.0)])
def test_mini_safe_folder_reflectance_matches_reference(
    tmp_path: Path, data_dir: Path, product: str, offset: float
) -> None:
    safe = build_mini_safe(tmp_path, data_dir, product)
    scene = read_safe(str(safe))
    assert scene.name == product
    assert sorted(scene.bands) == sorted(ESA_ORDER)
    assert {ref.offset for ref in scene.bands.values()} == {offset}
    _assert_b04_matches_reference(scene, data_dir, product)


def test_mini_safe_zip_reads_through_vsizip(tmp_path: Path, data_dir: Path) -> None:
    safe = build_mini_safe(tmp_path / "build", data_dir, NEW)
    archive = zip_folder(safe, tmp_path / f"{NEW}.zip")
    scene = read_safe(str(archive))
    assert sorted(scene.bands) == sorted(ESA_ORDER)
    assert {ref.offset for ref in scene.bands.values()} == {-1000.0}
    assert scene.band("B04").uri.startswith(f"/vsizip/{archive}/{NEW}.SAFE/GRANULE/")
    assert "RADIO_ADD_OFFSET" in scene.metadata["radiometry"]
    _assert_b04_matches_reference(scene, data_dir, NEW)


def test_bands_found_by_name_when_image_file_list_is_absent(tmp_path: Path, data_dir: Path) -> None:
    safe = build_mini_safe(tmp_path, data_dir, NEW)
    mtd = safe / "MTD_MSIL1C.xml"
    xml = re.sub(
        rb"<Product_Organisation>.*?</Product_Organisation>", b"", mtd.read_bytes(), flags=re.S
    )
    mtd.write_bytes(xml)
    assert parse_product_metadata(xml, "MTD_MSIL1C.xml").image_files == {}
    scene = read_safe(str(safe))
    assert sorted(scene.bands) == sorted(ESA_ORDER)
    _assert_b04_matches_reference(scene, data_dir, NEW)


# --- errors name the path --------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.SAFE"
    with pytest.raises(SourceError, match=f"{re.escape(str(missing))}: no such file or folder"):
        read_safe(str(missing))


def test_folder_without_mtd(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"{re.escape(str(tmp_path))}: no MTD_MSIL1C.xml"):
        read_safe(str(tmp_path))


def test_corrupt_zip(tmp_path: Path) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(SourceError, match=f"{re.escape(str(bad))}: cannot read as a zip"):
        read_safe(str(bad))


def test_zip_without_mtd(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("X.SAFE/manifest.safe", "<xfdu/>")
    with pytest.raises(SourceError, match=f"{re.escape(str(archive))}: no MTD_MSIL1C.xml"):
        read_safe(str(archive))


def test_plain_file_is_not_a_safe(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SourceError, match=f"{re.escape(str(path))}: not a SAFE product"):
        read_safe(str(path))


def test_safe_without_band_images(tmp_path: Path, data_dir: Path) -> None:
    safe = tmp_path / f"{NEW}.SAFE"
    safe.mkdir()
    (safe / "MTD_MSIL1C.xml").write_bytes(_mtd(data_dir, NEW).read_bytes())
    with pytest.raises(SourceError, match=f"{re.escape(str(safe))}: no band images found"):
        read_safe(str(safe))


def test_find_product_metadata(data_dir: Path, tmp_path: Path) -> None:
    stack = data_dir / TINY / f"{NEW}.tif"
    assert find_product_metadata(str(stack)) == str(data_dir / TINY / f"{NEW}_MTD.xml")
    assert find_product_metadata(str(data_dir / TINY / f"{NEW}_toa.tif")) is None
    assert find_product_metadata(str(tmp_path / "absent.tif")) is None
    assert find_product_metadata(str(data_dir / TINY / f"{NEW}_MTD.xml")) is None
