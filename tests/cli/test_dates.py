"""The CLI on sources of unknown acquisition date: every default product, one warning line
naming the source, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from madrone.cli.main import cli
from madrone.sources.mosaic import SAMPLE_CORNERS
from tests.engine.test_dates import undated_folder, undated_mosaic

CORNERS = ",".join(f"{v:g}" for v in SAMPLE_CORNERS)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_process_band_files_without_a_date(data_dir: Path, tmp_path: Path) -> None:
    folder = undated_folder(data_dir, tmp_path / "field", {"B04": "red.tif", "B08": "nir.tif"})
    out = tmp_path / "out"
    result = invoke("process", str(folder), "-o", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("madrone: warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(
        "madrone: warning: field: acquisition date unknown"
    )
    names = {p.name for p in out.iterdir()}
    assert names == {"field_ndvi.json", "field_ndvi.legend.png", "field_ndvi.png",
                     "field_ndvi.png.aux.xml", "field_ndvi.pgw", "field_ndvi.tif"}  # fmt: skip
    props = json.loads((out / "field_ndvi.json").read_text())["properties"]
    assert props["datetime"] is None and props["madrone:datetime"] == "unknown"


def test_process_datetime_option_records_the_date(data_dir: Path, tmp_path: Path) -> None:
    folder = undated_folder(data_dir, tmp_path / "field", {"B04": "B04.tif", "B08": "B08.tif"})
    out = tmp_path / "out"
    result = invoke("process", str(folder), "-o", str(out), "--workers", "1",
                    "--datetime", "2017-07-29", "--products", "cog,json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "madrone: warning" not in result.output
    props = json.loads((out / "field_ndvi.json").read_text())["properties"]
    assert props["datetime"] == "2017-07-29T00:00:00Z"


def test_mosaic_raster_without_acquisition_date(tmp_path: Path) -> None:
    source = undated_mosaic(tmp_path / "mosaic.tif")
    out = tmp_path / "out"
    result = invoke("mosaic", "--corners", CORNERS, "--source", str(source), "-o", str(out),
                    "--index", "ndvi", "--workers", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "madrone: warning: mosaic: acquisition date unknown" in result.output
    assert "give --datetime" in result.output
    props = json.loads((out / "mosaic_ndvi.json").read_text())["properties"]
    assert props["datetime"] is None and props["start_datetime"] == "2015-06-23T00:00:00Z"
    assert {p.suffix for p in out.iterdir()} >= {".tif", ".png", ".json"}
