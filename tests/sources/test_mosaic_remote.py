"""A mosaic in object storage: ``s3://`` read through GDAL from moto's S3 server on
127.0.0.1, credentials from the environment only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from madrone.sources.mosaic import SAMPLE_CORNERS, sample_mosaic
from tests.support.s3 import gdal_s3_env, moto_s3, upload

CORNERS = ",".join(f"{v:g}" for v in SAMPLE_CORNERS)


def run_mosaic(source: str, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "madrone.cli", "mosaic", "--corners", CORNERS, "--source",
               source, "-o", str(out), "--products", "cog", "--workers", "1", "-q"]  # fmt: skip
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)


def test_s3_mosaic_equals_the_local_one(tmp_path: Path) -> None:
    local = run_mosaic(sample_mosaic(), tmp_path / "local", {})
    assert local.returncode == 0, local.stderr
    with moto_s3() as endpoint:
        upload(endpoint, "mosaics", "2020/sample.tif", sample_mosaic())
        done = run_mosaic("s3://mosaics/2020/sample.tif", tmp_path / "s3", gdal_s3_env(endpoint))
        keyless = {k: v for k, v in gdal_s3_env(endpoint).items() if not k.startswith("AWS_SEC")}
        keyless.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                       AWS_CONFIG_FILE=str(tmp_path / "none"))  # fmt: skip
        unsigned = run_mosaic("s3://mosaics/2020/sample.tif", tmp_path / "denied", keyless)
        missing = run_mosaic(
            "s3://mosaics/2019/gone.tif", tmp_path / "denied", gdal_s3_env(endpoint)
        )
    assert done.returncode == 0, done.stderr
    stem = Path(sample_mosaic()).stem
    with (
        rasterio.open(tmp_path / "local" / f"{stem}_ndvi.tif") as a,
        rasterio.open(tmp_path / "s3" / "sample_ndvi.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert b.tags()["sources"] == "sample"
    # Without credentials in the environment GDAL cannot sign: refused, naming the file.
    assert unsigned.returncode == 2, unsigned.stderr
    assert "s3://mosaics/2020/sample.tif: cannot open" in unsigned.stderr
    assert missing.returncode == 2 and "s3://mosaics/2019/gone.tif" in missing.stderr
    assert not (tmp_path / "denied").exists() or not any((tmp_path / "denied").iterdir())


def test_azure_mosaic_equals_the_local_one(tmp_path: Path) -> None:
    from tests.support.azurite import azurite
    from tests.support.azurite import upload as upload_blob

    local = run_mosaic(sample_mosaic(), tmp_path / "local", {})
    with azurite(tmp_path / "azurite") as connection:
        upload_blob(connection, "mosaics", "2020/sample.tif", sample_mosaic())
        env = {"AZURE_STORAGE_CONNECTION_STRING": connection}
        done = run_mosaic("az://mosaics/2020/sample.tif", tmp_path / "az", env)
        missing = run_mosaic("az://mosaics/2019/gone.tif", tmp_path / "denied", env)
    assert local.returncode == 0 and done.returncode == 0, done.stderr
    stem = Path(sample_mosaic()).stem
    with (
        rasterio.open(tmp_path / "local" / f"{stem}_ndvi.tif") as a,
        rasterio.open(tmp_path / "az" / "sample_ndvi.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert missing.returncode == 2 and "az://mosaics/2019/gone.tif" in missing.stderr
