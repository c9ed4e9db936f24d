"""Mosaic benchmark: an area's NDVI from one COG mosaic (local and over HTTP) and a 5-date
median composite from a static STAC catalog, madrone against the usual tools.

    python bench/mosaic.py [--quick] [--only madrone,rasterio] [--cases local,http,composite]

The mosaic is synthetic (bench/mosaic_data.py, generated into bench/data/ when missing): 0.6 x
0.6 degree in EPSG:4326 at 0.0001 degree; the request is the 0.4 x 0.4 degree box in its
middle, out onto the UTM zone of its centre at 10 m (about 14 million pixels). Over HTTP the
mosaic is served by tests/support/http.py's range server, whose log gives the bytes each tool
read, set against the compressed bytes of the red and NIR tiles the area covers. The
composite reads the real catalog ../shared/data/sentinel2/stac_L2A_T33TWL_T33TWM_202308 (two
tiles, five dates, 120 m files) at 120 m. Each tool runs once as a subprocess, measured like
bench/run.py (wall, CPU and peak summed RSS of all its processes), and its output is checked
against the rasterio peer's. ``--quick`` is a smaller mosaic and area, to smoke-test.
Results: bench/results/mosaic.md (and mosaic.json, with the exact commands).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pystac
import rasterio

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # tests.support.http, the range server

from tests.support.http import serve_directory  # noqa: E402

import mosaic_report as report  # noqa: E402
from measure import run_measured  # noqa: E402
from mosaic_data import (  # noqa: E402
    BANDS,
    FULL,
    QUICK,
    Case,
    OutputGrid,
    bytes_served,
    footprint_wsen,
    needed_bytes,
    output_grid,
    write_mosaic,
)
from run import BUSY_FRACTION, machine_facts, warm_cache  # noqa: E402
from tools import VENV_BIN, WORKERS  # noqa: E402

CATALOG = (
    Path(os.environ.get("MADRONE_TEST_DATA", ROOT.parent / "shared/data/sentinel2"))
    / "stac_L2A_T33TWL_T33TWM_202308/catalog.json"
)
DATETIME = "2023-08-01/2023-08-31"
PEERS = BENCH / "peers"
CASES = ("local", "http", "composite")
TOOL_NAMES = ("madrone", "rasterio", "rioxarray-dask", "gdal")
COMPOSITE_TOOLS = ("madrone", "rasterio")
REFERENCE = "rasterio"
# The composite's union of two tiles is about 23,600 km2, over madrone's default area limit.
TOOL_ENV = {**os.environ, "MADRONE_MAX_AREA_KM2": "0"}


@dataclass(frozen=True)
class Request:
    """What every tool is asked for: a source, the box in degrees, the output grid."""

    source: str  # a path, an http URL or a catalog path
    gdal_source: str  # the same, spelled for the GDAL command line
    wsen: tuple[float, float, float, float]
    grid: OutputGrid
    composite: bool = False

    @property
    def bbox_arg(self) -> str:
        return ",".join(f"{v:g}" for v in self.wsen)


@functools.cache
def madrone_command(request: Request, out: Path) -> list[str]:
    argv = [str(VENV_BIN / "madrone"), "mosaic", "--bbox", request.bbox_arg]
    argv += ["--source", request.source, "--index", "ndvi"]
    argv += ["--resolution", f"{request.grid.res:g}", "-o", str(out)]
    if request.composite:
        argv += ["--method", "median", "--datetime", DATETIME]
    return [*argv, "--products", "cog", "--workers", str(WORKERS), "--quiet"]


def _grid_args(request: Request) -> list[str]:
    grid = request.grid
    return ["--crs", grid.crs, "--bounds", grid.bounds_arg(), "--res", f"{grid.res:g}"]


def rasterio_command(request: Request, out: Path) -> list[str]:
    if request.composite:
        script, extra = "composite_rasterio.py", ["--datetime", DATETIME]
    else:
        script, extra = "mosaic_rasterio.py", []
    return [
        sys.executable,
        str(PEERS / script),
        request.source,
        str(out / "ndvi.tif"),
        *_grid_args(request),
        *extra,
    ]


def rioxarray_command(request: Request, out: Path) -> list[str]:
    return [
        sys.executable,
        str(PEERS / "mosaic_rioxarray.py"),
        request.source,
        str(out / "ndvi.tif"),
        *_grid_args(request),
        "--workers",
        str(WORKERS),
    ]


def gdal_command(request: Request, out: Path) -> list[str]:
    red, nir = (str(BANDS.index(band) + 1) for band in ("B04", "B08"))
    grid = request.grid
    return [
        "/bin/sh",
        str(PEERS / "mosaic_gdal.sh"),
        request.gdal_source,
        str(out / "ndvi.tif"),
        grid.crs,
        grid.bounds_arg(),
        f"{grid.res:g}",
        red,
        nir,
    ]


@dataclass(frozen=True)
class Tool:
    name: str
    label: str
    command: Callable[[Request, Path], list[str]]


TOOLS = {
    "madrone": Tool("madrone", f"madrone mosaic ({WORKERS} workers)", madrone_command),
    "rasterio": Tool("rasterio", "rasterio WarpedVRT + numpy (1 process)", rasterio_command),
    "rioxarray-dask": Tool(
        "rioxarray-dask", f"rioxarray + dask ({WORKERS} threads)", rioxarray_command
    ),
    "gdal": Tool("gdal", "gdalwarp (-multi) + gdal_calc.py", gdal_command),
}
COMPOSITE_LABELS = {
    "madrone": f"madrone mosaic --method median ({WORKERS} workers)",
    "rasterio": "pystac + rasterio + numpy nanmedian (1 process)",
}


def find_output(out: Path) -> Path | None:
    """The NDVI a tool left in ``out`` (madrone names it; peers write ndvi.tif)."""
    found = [p for p in sorted(out.rglob("*ndvi*.tif")) if "count" not in p.name]
    return found[0] if found else None


def http_server_cpu_s() -> float:
    """CPU seconds used so far by this process's range-server children."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "tests.support.http" in " ".join(child.cmdline()):
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run_tool(tool: Tool, request: Request, out: Path, args: argparse.Namespace) -> dict:
    """Run one tool once, measured; the row says what it cost and where its output is."""
    argv = tool.command(request, out)
    row: dict[str, Any] = {"tool": tool.name, "label": tool.label, "command": shlex.join(argv)}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"  {tool.name} ...", end="", flush=True)
    server_before = http_server_cpu_s()
    m = run_measured(argv, env=TOOL_ENV, timeout_s=args.timeout)
    server_cpu = http_server_cpu_s() - server_before
    other_cpu = max(0.0, m.other_cpu_s - server_cpu)
    row.update(
        wall_s=round(m.wall_s, 3),
        cpu_s=round(m.cpu_s, 3),
        peak_rss_mib=round(m.peak_rss_mib, 1),
        max_processes=m.max_processes,
        returncode=m.returncode,
        server_cpu_s=round(server_cpu, 2),
        other_cpu_s=round(other_cpu, 1),
        machine_busy=other_cpu > BUSY_FRACTION * m.wall_s * (os.cpu_count() or 1),
        mpx_per_s=round(request.grid.pixels / m.wall_s / 1e6, 2),
        processes=m.processes[:8],
    )
    output = find_output(out)
    if m.returncode != 0 or output is None:
        why = "timed out" if m.timed_out else f"exit code {m.returncode}"
        if m.returncode == 0:
            why = f"no NDVI output in {out}"
        row.update(status="failed", message=why, stderr_tail=m.stderr[-2000:])
        print(f" FAILED ({why})\n{m.stderr[-2000:]}", flush=True)
        return row
    row.update(status="ok", output=str(output))
    print(f" {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, {m.peak_rss_mib:.0f} MiB", flush=True)
    return row


def run_section(
    tools: list[Tool],
    make_request: Callable[[], Request],
    out_root: Path,
    args: argparse.Namespace,
    served: Path | None = None,
    warm: Path | None = None,
) -> list[dict]:
    """Every tool on one request; over HTTP each run gets a fresh server and log."""
    rows = []
    for tool in tools:
        out = out_root / tool.name
        if warm is not None:
            warm_cache(warm)
        if served is None:
            rows.append(run_tool(tool, make_request(), out, args))
            continue
        with tempfile.TemporaryDirectory() as scratch:
            log = Path(scratch) / "requests.log"
            with serve_directory(str(served), log_path=str(log)) as url:
                row = run_tool(tool, make_request(url), out, args)
            row["http_bytes"], row["http_requests"] = bytes_served(log, served)
        rows.append(row)
    check_rows(rows)
    return rows


def check_rows(rows: list[dict]) -> None:
    """Ratios to madrone, and every output compared with the rasterio peer's."""
    ok = {row["tool"]: row for row in rows if row["status"] == "ok"}
    madrone, reference = ok.get("madrone"), ok.get(REFERENCE)
    for row in ok.values():
        if madrone:
            row["ratio_to_madrone"] = round(row["wall_s"] / madrone["wall_s"], 3)
        if row is reference:
            row["is_reference"] = True
        elif reference:
            row["check"] = report.compare_outputs(Path(row["output"]), Path(reference["output"]))


def catalog_union_wsen() -> tuple[float, float, float, float]:
    """The union of the catalog's item footprints, rounded out to 0.0001 degree."""
    boxes = [item.bbox for item in pystac.Catalog.from_file(str(CATALOG)).get_items(recursive=True)]
    return (
        _round_down(min(b[0] for b in boxes)),
        _round_down(min(b[1] for b in boxes)),
        -_round_down(-max(b[2] for b in boxes)),
        -_round_down(-max(b[3] for b in boxes)),
    )


def least_cloudy_origin(res: float) -> tuple[float, float]:
    """The pixel edges madrone's area grid keeps: those of the least cloudy item's red band
    (the first source of the grid's CRS and resolution), modulo the resolution."""
    items = pystac.Catalog.from_file(str(CATALOG)).get_items(recursive=True)
    first = min(items, key=lambda item: (item.properties.get("eo:cloud_cover", 100), item.id))
    with rasterio.open(first.assets["red"].get_absolute_href()) as dataset:
        return dataset.transform.c % res, dataset.transform.f % res


def _round_down(value: float) -> float:
    return math.floor(value * 1e4) / 1e4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small mosaic and area")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(TOOL_NAMES)}")
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma list of: " + ", ".join(CASES)
    )
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per tool run")
    parser.add_argument("--keep-outputs", action="store_true", help="do not delete outputs")
    args = parser.parse_args(argv)
    args.only = [t for t in args.only.split(",") if t] or list(TOOL_NAMES)
    args.cases = [c for c in args.cases.split(",") if c]
    for name, known in ((args.only, TOOL_NAMES), (args.cases, CASES)):
        unknown = set(name) - set(known)
        if unknown:
            parser.error(f"unknown: {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return args


def describe_mosaic(case: Case, mosaic: Path, grid: OutputGrid) -> dict[str, Any]:
    """The mosaic, the request's grid, and the bytes the request needs from the mosaic."""
    footprint = footprint_wsen(grid)
    return {
        "path": str(mosaic.relative_to(ROOT)),
        "wsen": case.mosaic_wsen,
        "file_bytes": mosaic.stat().st_size,
        "request_wsen": case.request_wsen,
        "grid": _grid_facts(grid),
        "footprint_wsen": footprint,
        "needed_bytes": needed_bytes(mosaic, footprint, ("B04", "B08")),
        "needed_bytes_all_bands": needed_bytes(mosaic, footprint, BANDS),
    }


def _grid_facts(grid: OutputGrid) -> dict[str, Any]:
    return {
        "crs": grid.crs,
        "bounds": grid.bounds_arg(),
        "width": grid.width,
        "height": grid.height,
    }


def run_mosaic_cases(
    case: Case, mosaic: Path, grid: OutputGrid, args: argparse.Namespace, results: dict
) -> None:
    """The local and HTTP sections: every tool on the request from the synthetic mosaic."""
    tools = [TOOLS[name] for name in args.only]
    out_root = BENCH / "data" / "mosaic-out" / case.name

    def request(url: str | None = None) -> Request:
        if url is None:
            return Request(str(mosaic), str(mosaic), case.request_wsen, grid)
        href = f"{url}/{mosaic.name}"
        return Request(href, f"/vsicurl/{href}", case.request_wsen, grid)

    if "local" in args.cases:
        print(f"local mosaic: {mosaic.relative_to(ROOT)}", flush=True)
        results["sections"]["local"] = run_section(
            tools, request, out_root / "local", args, warm=mosaic.parent
        )
    if "http" in args.cases:
        print("mosaic over HTTP (tests/support/http.py range server)", flush=True)
        rows = run_section(
            tools, request, out_root / "http", args, served=mosaic.parent, warm=mosaic.parent
        )
        needed = results["mosaic"]["needed_bytes"]
        for row in rows:
            if row["status"] == "ok":
                row["read_to_needed"] = round(row["http_bytes"] / needed, 3)
        results["sections"]["http"] = rows


def run_composite(case: Case, args: argparse.Namespace, results: dict) -> None:
    """The composite section: a 5-date median from the real static catalog at 120 m."""
    wsen = case.composite_wsen or catalog_union_wsen()
    grid = output_grid(wsen, 120.0, least_cloudy_origin(120.0))
    results["composite"] = {
        "catalog": str(CATALOG),
        "wsen": wsen,
        "datetime": DATETIME,
        "area": "a 0.4 degree box across both tiles"
        if case.composite_wsen
        else "the union of the items' footprints",
        "grid": _grid_facts(grid),
    }
    request = Request(str(CATALOG), str(CATALOG), wsen, grid, composite=True)
    tools = [
        Tool(name, COMPOSITE_LABELS[name], TOOLS[name].command)
        for name in COMPOSITE_TOOLS
        if name in args.only
    ]
    print(f"5-date median composite: {CATALOG}", flush=True)
    out = BENCH / "data" / "mosaic-out" / case.name / "composite"
    results["sections"]["composite"] = run_section(tools, lambda: request, out, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    case: Case = QUICK if args.quick else FULL
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: load average is {load:.2f}: something else is running", flush=True)
    mosaic = write_mosaic(case)
    grid = output_grid(case.request_wsen, 10.0)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "bench/mosaic.py", *(argv or sys.argv[1:])]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "case": case.name,
        "machine": machine_facts(),
        "load_average_at_start": round(load, 2),
        "mosaic": describe_mosaic(case, mosaic, grid),
        "sections": {},
    }
    run_mosaic_cases(case, mosaic, grid, args, results)
    if "composite" in args.cases:
        run_composite(case, args, results)
    if not args.keep_outputs:
        shutil.rmtree(BENCH / "data" / "mosaic-out" / case.name, ignore_errors=True)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")

    print()
    print(report.format_console(results))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "mosaic.md").write_text(report.format_markdown(results))
    report.write_json(args.results / "mosaic.json", results)
    print(f"\nwrote {args.results}/mosaic.md and mosaic.json")
    rows = [row for section in results["sections"].values() for row in section]
    return 1 if any(row["status"] == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
