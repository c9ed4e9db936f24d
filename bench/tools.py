"""The tools the benchmark runs: how to call each one and where it leaves its NDVI."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PYTHON = "/usr/bin/python3"
WORKERS = 2


@functools.cache
def output_codec() -> tuple[str, int]:
    """The codec and level madrone writes (its settings: MADRONE_COG_CODEC and
    MADRONE_COG_ZLEVEL); every peer and the lower bound write the same, for a fair run."""
    from madrone.config import Settings

    settings = Settings.from_env()
    return settings.cog_codec.lower(), settings.cog_zlevel


def codec_args() -> list[str]:
    codec, level = output_codec()
    return ["--codec", codec, "--level", str(level)]


# gdal_calc of GDAL 3.6 poisons every pixel with NaN when --NoDataValue is nan and an input
# declares nodata (it blends with ``mask * result + nodata * ~mask``), so the inputs' nodata
# is hidden and the formula masks DN 0 itself.
GDAL_CALC_FORMULA = (
    "where((A == 0) | (B == 0), nan, (A / 10000.0 - B / 10000.0) / (A / 10000.0 + B / 10000.0))"
)


@dataclass(frozen=True)
class Inputs:
    """One scene in one format: the folder and the two bands NDVI needs."""

    folder: Path
    red: Path
    nir: Path


@dataclass(frozen=True)
class Tool:
    """A way to compute the scene's NDVI, run as a subprocess writing into ``out``."""

    name: str
    label: str
    command: Callable[[Inputs, Path], list[str]]
    output_glob: str = "ndvi.tif"
    lower_bound: bool = False

    def find_output(self, out: Path) -> Path | None:
        found = sorted(out.glob(self.output_glob))
        return found[0] if found else None


@functools.cache
def madrone_executable() -> str | None:
    """The madrone CLI, if it is installed and has the ``process`` command."""
    exe = VENV_BIN / "madrone"
    if not exe.exists():
        exe = shutil.which("madrone")
        if exe is None:
            return None
    try:
        done = subprocess.run(
            [str(exe), "process", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return str(exe) if done.returncode == 0 else None


def _madrone(products: list[str]) -> Callable[[Inputs, Path], list[str]]:
    def command(inputs: Inputs, out: Path) -> list[str]:
        exe = madrone_executable() or str(VENV_BIN / "madrone")
        return [
            exe,
            "process",
            str(inputs.folder),
            "--index",
            "ndvi",
            "-o",
            str(out),
            *products,
            "--quiet",
            "--workers",
            str(WORKERS),
        ]

    return command


def _gdal_calc_command(inputs: Inputs, out: Path, codec_options: list[str]) -> list[str]:
    command = [
        SYSTEM_PYTHON,
        shutil.which("gdal_calc.py") or "/usr/bin/gdal_calc.py",
        "-A",
        str(inputs.nir),
        "-B",
        str(inputs.red),
        "--outfile",
        str(out / "ndvi.tif"),
        "--calc",
        GDAL_CALC_FORMULA,
        "--type",
        "Float32",
        "--format",
        "GTiff",
    ]
    options = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "PREDICTOR=3", *codec_options]
    for option in options:
        command += ["--co", option]
    return [*command, "--NoDataValue", "nan", "--hideNoData", "--quiet"]


def _gdal_calc(inputs: Inputs, out: Path) -> list[str]:
    """gdal_calc.py writing what madrone writes (codec and level)."""
    codec, level = output_codec()
    level_option = f"ZSTD_LEVEL={level}" if codec == "zstd" else f"ZLEVEL={level}"
    return _gdal_calc_command(inputs, out, [f"COMPRESS={codec.upper()}", level_option])


def _gdal_calc_usual(inputs: Inputs, out: Path) -> list[str]:
    """gdal_calc.py as users call it: tiled DEFLATE with predictor 3 at GDAL's default
    level (6); the issue's 0.5x target is against this."""
    return _gdal_calc_command(inputs, out, ["COMPRESS=DEFLATE"])


def _peer(script: str, *extra: str) -> Callable[[Inputs, Path], list[str]]:
    def command(inputs: Inputs, out: Path) -> list[str]:
        return [
            sys.executable,
            str(PEERS / script),
            str(inputs.red),
            str(inputs.nir),
            str(out / "ndvi.tif"),
            *extra,
            *codec_args(),
        ]

    return command


TOOLS: tuple[Tool, ...] = (
    Tool(
        "lower-bound",
        f"lower bound: (decode + encode) / {WORKERS} cores",
        _peer("lower_bound.py", "--cores", str(WORKERS)),
        lower_bound=True,
    ),
    Tool(
        "madrone",
        f"madrone, COG only ({WORKERS} workers)",
        _madrone(["--products", "cog"]),
        output_glob="*_ndvi.tif",
    ),
    Tool(
        "madrone-all",
        f"madrone, all products ({WORKERS} workers)",
        _madrone([]),
        output_glob="*_ndvi.tif",
    ),
    Tool("rasterio", "rasterio + numpy (1 process)", _peer("rasterio_numpy.py")),
    Tool(
        "rioxarray-dask",
        f"rioxarray + dask (threaded scheduler, {WORKERS} threads)",
        _peer("rioxarray_dask.py", "--workers", str(WORKERS)),
    ),
    Tool("gdal_calc", "gdal_calc.py (1 process)", _gdal_calc),
    Tool(
        "gdal_calc-usual",
        "gdal_calc.py, usual settings: DEFLATE level 6 (1 process)",
        _gdal_calc_usual,
    ),
)
TOOL_NAMES = tuple(tool.name for tool in TOOLS)
