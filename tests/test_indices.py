"""The index catalog: built-ins, the spectral index catalog, lookup and user expressions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import spyndex

from madrone.bands import SPECTRAL_BANDS, catalog_letter_to_band
from madrone.errors import BandMissingError, ExpressionError, UnknownIndexError
from madrone.indices import (
    BUILTINS,
    IndexDef,
    index_from_expression,
    list_indices,
    resolve_index,
    unavailable_indices,
)

NAN = np.nan


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ((a - b) / (a + b)).astype(np.float32)
    out[~np.isfinite(out)] = NAN
    return out


def reflectance(seed: int, shape: tuple[int, int] = (3, 4)) -> dict[str, np.ndarray]:
    """Plausible reflectance for every band, with a NaN pixel at (0, 0) and zeros at (0, 1)."""
    rng = np.random.default_rng(seed)
    arrays = {band: rng.uniform(0.02, 0.6, shape).astype(np.float32) for band in SPECTRAL_BANDS}
    for array in arrays.values():
        array[0, 0] = NAN
        array[0, 1] = 0.0
    return arrays


def test_ndvi_matches_numpy():
    red = np.array([[0.1, 0.0, NAN], [0.2, 0.3, 0.05]], dtype=np.float32)
    nir = np.array([[0.5, 0.0, 0.4], [NAN, 0.3, 0.45]], dtype=np.float32)
    out = resolve_index("NDVI").compute({"B04": red, "B08": nir, "B03": red})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, normalized_difference(nir, red), rtol=1e-6, equal_nan=True)
    assert np.isnan(out[0, 1]) and np.isnan(out[0, 2]) and np.isnan(out[1, 0])
    assert out[1, 1] == 0.0
    assert out[0, 0] == pytest.approx(0.4 / 0.6, rel=1e-6)


def test_ndsi_matches_numpy():
    green = np.array([0.6, 0.0, NAN, 0.3], dtype=np.float32)
    swir = np.array([0.1, 0.0, 0.2, 0.3], dtype=np.float32)
    index = resolve_index("NDSI")
    out = index.compute({"B03": green, "B11": swir})
    np.testing.assert_allclose(out, normalized_difference(green, swir), rtol=1e-6, equal_nan=True)
    assert out[0] == pytest.approx(0.5 / 0.7, rel=1e-6)
    assert np.isnan(out[1]) and np.isnan(out[2]) and out[3] == 0.0
    assert index.keeps_snow and not resolve_index("NDVI").keeps_snow


def test_evi_uses_catalog_defaults():
    index = resolve_index("EVI")
    assert dict(index.constants) == {"g": 2.5, "C1": 6.0, "C2": 7.5, "L": 1.0}
    assert index.bands == ("B02", "B04", "B08")
    blue, red, nir = 0.05, 0.1, 0.4
    arrays = {
        "B02": np.array([blue, NAN], dtype=np.float32),
        "B04": np.array([red, 0.1], dtype=np.float32),
        "B08": np.array([nir, 0.4], dtype=np.float32),
    }
    expected = 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)
    out = index.compute(arrays)
    assert out[0] == pytest.approx(expected, rel=1e-6)
    assert np.isnan(out[1])


@pytest.mark.parametrize("builtin", sorted(BUILTINS))
def test_builtins_agree_with_the_catalog(builtin):
    index, entry = BUILTINS[builtin], spyndex.indices[builtin]
    assert index.formula == entry.formula
    assert index.long_name == entry.long_name
    assert index.domain == entry.application_domain
    assert index.reference == entry.reference
    assert dict(index.variables) == {s: catalog_letter_to_band(s) for s in entry.bands}
    # No catalog name collides with a built-in once case is ignored (resolve_index relies on it).
    assert [n for n in spyndex.indices if n.upper() == builtin] == [builtin]


@pytest.mark.parametrize("name", ["ndvi", "NDVI", "Ndvi", " ndvi "])
def test_lookup_is_case_insensitive(name):
    assert resolve_index(name) is resolve_index("NDVI")


def test_catalog_lookup_is_case_insensitive():
    assert resolve_index("evi") == resolve_index("EVI")
    assert resolve_index("msavi").name == "MSAVI"


def test_names_differing_only_in_case_need_exact_spelling():
    assert resolve_index("BAI").long_name == "Burned Area Index"
    assert resolve_index("BaI").long_name == "Bareness Index"
    with pytest.raises(UnknownIndexError, match="ambiguous: BAI, BaI"):
        resolve_index("bai")


def test_unknown_index_suggests_close_names():
    with pytest.raises(UnknownIndexError, match="unknown index 'NDVX'") as info:
        resolve_index("NDVX")
    message = str(info.value)
    assert "did you mean" in message and "NDVI" in message
    suggested = message.split("did you mean ")[1].rstrip("?").split(", ")
    assert 1 <= len(suggested) <= 3


def test_unknown_index_without_close_names():
    with pytest.raises(UnknownIndexError, match="'zzzzqqq'") as info:
        resolve_index("zzzzqqq")
    assert "did you mean" not in str(info.value)


def test_thermal_index_is_refused_with_reason():
    with pytest.raises(UnknownIndexError, match="not computable from Sentinel-2") as info:
        resolve_index("ndvit")
    assert "T (Thermal Infrared)" in str(info.value)
    assert "Thermal" in unavailable_indices()["NDVIT"]


def test_index_needing_constant_without_default_is_refused():
    with pytest.raises(UnknownIndexError, match="PAR"):
        resolve_index("NIRvP")


def test_catalog_split_is_consistent():
    available = list_indices()
    names = [index.name for index in available]
    unavailable = unavailable_indices()
    assert len(available) > 200
    assert names == sorted(names, key=lambda n: (n.lower(), n))
    assert not set(names) & set(unavailable)
    assert set(names) | set(unavailable) == set(spyndex.indices)
    assert all(reason for reason in unavailable.values())
    assert all(i.keeps_snow == (i.domain == "snow") for i in available)
    assert {"radar", "kernel"}.isdisjoint(i.domain for i in available)


@pytest.mark.parametrize("index", list_indices(), ids=lambda index: index.name)
def test_every_available_index_evaluates(index):
    arrays = reflectance(seed=7)
    out = index.compute(arrays)
    assert out.shape == (3, 4)
    assert out.dtype == np.float32
    assert not np.isinf(out).any()
    assert np.isnan(out[0, 0])  # nodata stays nodata
    assert np.isfinite(out[1:]).any()  # plausible reflectance gives numbers


@pytest.mark.parametrize("index", list_indices(), ids=lambda index: index.name)
def test_every_available_index_matches_spyndex(index):
    arrays = reflectance(seed=11)
    out = index.compute(arrays)
    params = {letter: arrays[band].astype(np.float64) for letter, band in index.variables}
    params |= dict(index.constants)
    with np.errstate(all="ignore"):
        expected = np.asarray(spyndex.computeIndex(index.name, params=params))
    expected = np.where(np.isfinite(expected), expected, NAN)
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=1e-5, equal_nan=True)


def test_compute_names_missing_band():
    with pytest.raises(BandMissingError, match=r"NDVI needs band\(s\) B08; given: B04"):
        resolve_index("NDVI").compute({"B04": np.zeros(2, dtype=np.float32)})


def test_to_dict_is_json_able():
    data = json.loads(json.dumps(resolve_index("EVI").to_dict()))
    assert data["name"] == "EVI"
    assert data["formula"] == "g*(N-R)/(N+C1*R-C2*B+L)"
    assert data["bands"] == ["B02", "B04", "B08"]
    assert data["constants"] == {"C1": 6.0, "C2": 7.5, "L": 1.0, "g": 2.5}
    assert data["domain"] == "vegetation"
    assert data["reference"].startswith("https://")


def test_user_expression_computes_like_ndvi():
    index = index_from_expression("(nir - red) / (nir + red)")
    assert isinstance(index, IndexDef)
    assert index.name == "EXPR"
    assert index.domain == "custom"
    assert index.bands == ("B04", "B08")
    assert not index.keeps_snow
    arrays = reflectance(seed=3)
    np.testing.assert_array_equal(index.compute(arrays), resolve_index("NDVI").compute(arrays))


def test_user_expression_mixing_aliases_of_one_band():
    index = index_from_expression("B8 - N + b08", name="triple_nir")
    assert index.name == "triple_nir"
    assert index.bands == ("B08",)
    out = index.compute({"B08": np.array([0.3], dtype=np.float32)})
    np.testing.assert_allclose(out, [0.3], rtol=1e-6)


def test_user_expression_is_checked():
    with pytest.raises(ExpressionError, match="unknown name 'thermal'"):
        index_from_expression("thermal - B04")
    with pytest.raises(ExpressionError, match="SCL"):
        index_from_expression("SCL")


@pytest.mark.parametrize("name", ["", "has space", "../etc", "x" * 65])
def test_user_expression_name_is_checked(name):
    with pytest.raises(ExpressionError, match="index name"):
        index_from_expression("B04", name=name)


def test_user_expression_cannot_take_a_catalog_name():
    with pytest.raises(ExpressionError, match="taken by a catalog index"):
        index_from_expression("B8A - B04", name="ndvi")


def test_importing_indices_does_not_import_spyndex():
    code = "import sys, madrone.indices; print('spyndex' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
