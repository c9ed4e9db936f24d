"""The CLI: exit codes, one-line messages naming the culprit, nothing partial left behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from madrone.cli.main import cli

T18 = "L1C_T18SVG_20160112_crop"
DEMO = Path(__file__).resolve().parents[2] / "src/madrone/data/demo/L1C_T18SVG_20160112_demo"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_refused(result, outdir: Path, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("madrone: error:"), result.output
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert sorted(p.name for p in outdir.iterdir()) == ["keep.txt"], "nothing partial left"


def copy_demo(tmp_path: Path, bands: tuple[str, ...]) -> Path:
    folder = tmp_path / "T18SVG_20160112"
    folder.mkdir()
    for band in bands:
        shutil.copy(DEMO / f"{band}.tif", folder / f"{band}.tif")
    return folder


def test_process_writes_products_and_exits_0(tmp_path: Path, outdir: Path) -> None:
    result = invoke("process", str(DEMO), "--index", "ndvi,ndsi", "-o", str(outdir),
                    "--expr", "green_red=(B03-B04)/(B03+B04)", "--name", "t")  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in outdir.iterdir()}
    for index in ("ndvi", "ndsi", "green_red"):
        assert {f"t_{index}.tif", f"t_{index}.png", f"t_{index}.json"} <= names
    assert "NDVI: mean 0.3" in result.output


def test_missing_source(outdir: Path) -> None:
    result = invoke("process", "/no/such/scene_20200101", "-o", str(outdir))
    assert_refused(result, outdir, "/no/such/scene_20200101")


def test_corrupt_header(tmp_path: Path, outdir: Path) -> None:
    folder = copy_demo(tmp_path, ("B08",))
    (folder / "B04.tif").write_bytes(b"not a tiff at all")
    assert_refused(invoke("process", str(folder), "-o", str(outdir)), outdir, "B04.tif")


def test_truncated_pixels(tmp_path: Path, outdir: Path) -> None:
    folder = copy_demo(tmp_path, ("B04", "B08"))
    data = (folder / "B04.tif").read_bytes()
    (folder / "B04.tif").write_bytes(data[: len(data) // 2])
    result = invoke("process", str(folder), "-o", str(outdir), "--workers", "2")
    assert_refused(result, outdir, "B04.tif", "corrupt")


def test_band_missing_lists_what_the_source_has(tmp_path: Path, outdir: Path) -> None:
    folder = copy_demo(tmp_path, ("B03", "B04", "B08"))
    result = invoke("process", str(folder), "--index", "ndsi", "-o", str(outdir))
    assert_refused(result, outdir, "B11", "B03, B04, B08")


def test_sources_in_two_crs_need_crs(data_dir: Path, outdir: Path) -> None:
    result = invoke("process", str(data_dir / T18), str(data_dir / "L1C_T19UDP_20170729_900m"),
                    "-o", str(outdir))  # fmt: skip
    assert_refused(result, outdir, "EPSG:32618", "EPSG:32619", "--crs")


def test_bbox_outside_the_data(outdir: Path) -> None:
    result = invoke("process", str(DEMO), "--bbox", "10,45,10.1,45.1", "-o", str(outdir))
    assert_refused(result, outdir, "bbox 10,45,10.1,45.1", "does not overlap")


def test_bbox_clips_to_the_area(tmp_path: Path) -> None:
    # The demo covers about -75.71..-75.61 E, 37.66..37.74 N.
    result = invoke("process", str(DEMO), "--bbox", "-75.68,37.68,-75.66,37.70", "-o",
                    str(tmp_path), "--products", "cog", "--name", "clip")  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "clip_ndvi.tif") as clipped, rasterio.open(DEMO / "B04.tif") as b:
        assert clipped.res == b.res
        assert 150 < clipped.width < 200 and 200 < clipped.height < 250
        col = (clipped.transform.c - b.transform.c) / b.res[0]
        assert col == int(col), "the clipped grid keeps the source's pixel edges"


def test_unknown_index_suggests(outdir: Path) -> None:
    result = invoke("process", str(DEMO), "--index", "ndvii", "-o", str(outdir))
    assert_refused(result, outdir, "ndvii", "NDVI")


def test_bad_expression(outdir: Path) -> None:
    result = invoke("process", str(DEMO), "--expr", "(B08-B04)/(B08+banana)", "-o", str(outdir))
    assert_refused(result, outdir, "banana")


@pytest.mark.parametrize("value", ["0", "-10", "nan"])
def test_non_positive_resolution(value: str, outdir: Path) -> None:
    result = invoke("process", str(DEMO), "--resolution", value, "-o", str(outdir))
    assert_refused(result, outdir, "resolution")


def test_usage_errors_exit_2(outdir: Path) -> None:
    assert invoke("process", str(DEMO), "--resampling", "lanczos", "-o", str(outdir)).exit_code == 2
    assert invoke("process", "-o", str(outdir)).exit_code == 2


def test_indices_lists_the_catalog() -> None:
    result = invoke("indices")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) > 100
    ndvi = next(line for line in lines if line.startswith("NDVI "))
    assert "(N-R)/(N+R)" in ndvi and "B04,B08" in ndvi


def test_demo_runs_as_a_real_command(tmp_path: Path) -> None:
    madrone = Path(sys.executable).with_name("madrone")
    done = subprocess.run([str(madrone), "demo", "--no-serve", "-o", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "demo") in done.stdout
    with rasterio.open(tmp_path / "demo" / "demo_T18SVG_20160112_ndvi.tif") as ndvi:
        assert ndvi.shape == (800, 800)
        assert ndvi.tags()["index"] == "NDVI"
        mean = float(np.nanmean(ndvi.read(1)))
    assert 0.25 < mean < 0.4, "fields and marsh outweigh the open water in the demo"


def test_implausible_reflectance_is_a_warning_not_an_error(data_dir: Path, tmp_path: Path) -> None:
    # A wrong --offset override makes most reflectance negative: madrone still writes the
    # products, and says which band and which offset look wrong.
    result = invoke("process", str(DEMO), "-o", str(tmp_path), "--offset", "-5000",
                    "--products", "cog", "--name", "w")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "madrone: warning:" in result.output
    assert "B04: implausible reflectance" in result.output and "-5000" in result.output
    assert (tmp_path / "w_ndvi.tif").exists()


def test_progress_reports_every_tile(tmp_path: Path) -> None:
    from madrone import process

    seen: list[tuple[int, int]] = []
    process([str(DEMO)], ["ndvi"], str(tmp_path), tile_size=256, workers=2,
            products=["cog"], progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen == [(i, 16) for i in range(1, 17)]


def test_output_folder_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = invoke("process", str(DEMO), "-o", str(blocker / "out"))
    assert result.exit_code == 2
    assert f"{blocker} is a file, not a folder" in result.output
