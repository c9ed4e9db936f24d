"""Run the NDVI benchmark: one scene, every tool, each input format; print and save results.

    python bench/run.py [--data bench/data] [--size 10980] [--formats gtiff,jp2] [--only ...]

Data comes from bench/generate.py (run automatically when files are missing) in
``<data>/<size>/<format>/``. Each tool runs as a subprocess with a warm page cache, once or,
with ``--repeats N``, once per round for N rounds (the table gives its median run); its wall
time, CPU time (the whole process tree) and peak summed RSS are measured, and its output is
checked against a reference NDVI before it is deleted. Results go to
bench/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import rasterio

import report
from generate import band_filename
from measure import run_measured
from tools import (
    BENCH,
    SYSTEM_PYTHON,
    TOOL_NAMES,
    TOOLS,
    Inputs,
    Tool,
    madrone_executable,
    output_codec,
)
from verify import verify_output

FORMATS = ("gtiff", "jp2")
MAX_PROCESSES_LISTED = 8
# Other processes using more than this share of the machine's CPU make a run "busy".
BUSY_FRACTION = 0.05
PACKAGES = ("numpy", "rasterio", "dask", "xarray", "rioxarray", "psutil", "madrone")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=BENCH / "data")
    parser.add_argument("--size", type=int, default=10980, help="10 m pixels per side")
    parser.add_argument("--formats", default="gtiff,jp2", help="comma list of gtiff, jp2")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(TOOL_NAMES)}")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per tool run")
    parser.add_argument("--keep-outputs", action="store_true", help="do not delete outputs")
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="rounds of every tool (interleaved); the table gives each tool's median run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.formats = _comma_list(parser, args.formats, FORMATS, "format")
    args.only = _comma_list(parser, args.only, TOOL_NAMES, "tool") or list(TOOL_NAMES)
    return args


def _comma_list(
    parser: argparse.ArgumentParser, text: str, known: tuple[str, ...], what: str
) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in known]
    if unknown:
        parser.error(f"unknown {what}(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return items


def ensure_data(scene_dir: Path, size: int, formats: list[str]) -> float | None:
    """Generate missing band files; return how long that took, or None if nothing was."""
    missing = [
        fmt
        for fmt in formats
        if not all(
            (scene_dir / fmt / band_filename(b, fmt)).exists() for b in ("B03", "B04", "B08", "B11")
        )
    ]
    if not missing:
        return None
    command = [
        sys.executable,
        str(BENCH / "generate.py"),
        "--out",
        str(scene_dir),
        "--size",
        str(size),
        "--formats",
        ",".join(missing),
    ]
    print(f"generating data: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def warm_cache(folder: Path) -> None:
    """Read every input file once, so no tool pays for the first read from disk."""
    for path in sorted(folder.iterdir()):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(16 * 1024 * 1024):
                    pass


def run_tool(tool: Tool, inputs: Inputs, out: Path, timeout_s: float, keep: bool) -> dict:
    """Run one tool, verify its output, delete it; return the result row."""
    argv = tool.command(inputs, out)
    row: dict[str, Any] = {"tool": tool.name, "label": tool.label, "command": shlex.join(argv)}
    if tool.name.startswith("madrone") and madrone_executable() is None:
        row.update(status="skipped", message="the madrone CLI (madrone process) is not available")
        return row
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"  {tool.name} ...", end="", flush=True)
    m = run_measured(argv, timeout_s=timeout_s)
    row.update(
        wall_s=round(m.wall_s, 3),
        cpu_s=round(m.cpu_s, 3),
        peak_rss_mib=round(m.peak_rss_mib, 1),
        max_processes=m.max_processes,
        cpu_wait4_s=round(m.cpu_wait4_s, 3),
        cpu_sampled_s=round(m.cpu_sampled_s, 3),
        returncode=m.returncode,
        other_cpu_s=round(m.other_cpu_s, 1),
        processes=m.processes[:MAX_PROCESSES_LISTED],
    )
    busy = m.other_cpu_s > BUSY_FRACTION * m.wall_s * (os.cpu_count() or 1)
    row["machine_busy"] = busy
    output = tool.find_output(out)
    if m.returncode != 0 or output is None:
        why = "timed out" if m.timed_out else f"exit code {m.returncode}"
        if output is None and m.returncode == 0:
            why = f"no output matching {tool.output_glob} in {out}"
        row.update(status="failed", message=why, stderr_tail=m.stderr[-2000:])
        print(f" FAILED ({why})\n{m.stderr[-2000:]}", flush=True)
    else:
        verdict = verify_output(output, inputs.red, inputs.nir)
        row.update(
            verified=verdict.message,
            max_abs_diff=verdict.max_abs_diff,
            output_mib=round(
                sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1
            ),
            outputs=sorted(p.name for p in out.iterdir()),
        )
        if verdict.ok:
            row["status"] = "ok"
            print(
                f" {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, "
                f"{m.peak_rss_mib:.0f} MiB peak; {verdict.message}",
                flush=True,
            )
            if busy:
                print(
                    f"  WARNING: other processes used {m.other_cpu_s:.1f} CPU s during this "
                    "run; its timings are not trustworthy",
                    flush=True,
                )
        else:
            row.update(status="mismatch", message=verdict.message)
            print(f"\n!!! {tool.name}: OUTPUT MISMATCH: {verdict.message} !!!", flush=True)
    if tool.lower_bound and row.get("status") == "ok":
        parts = json.loads(m.stdout.strip().splitlines()[-1])
        row.update(
            lower_bound=parts,
            measured_wall_s=row["wall_s"],
            wall_s=parts["bound_s"],
            cpu_s=round(parts["decode_cpu_s"] + parts["encode_cpu_s"], 3),
            measured_peak_rss_mib=row["peak_rss_mib"],
            peak_rss_mib=None,
        )
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def median_run(runs: list[dict]) -> dict:
    """A tool's run with the median wall time (the lower of the two middle ones), with every
    run's wall time beside it; a failed run, if any, instead: it is not averaged away."""
    failed = [run for run in runs if run.get("status") != "ok"]
    if failed:
        return failed[0]
    median = dict(sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2])
    median["wall_runs_s"] = [run["wall_s"] for run in runs]
    return median


def add_ratios(rows: list[dict]) -> None:
    madrone = next((r for r in rows if r["tool"] == "madrone" and r["status"] == "ok"), None)
    for row in rows:
        if madrone and row["status"] == "ok":
            row["ratio_to_madrone"] = round(row["wall_s"] / madrone["wall_s"], 3)


def machine_facts() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    system_gdal = subprocess.run(
        [SYSTEM_PYTHON, "-c", "from osgeo import gdal; print(gdal.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    git = subprocess.run(
        ["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    )
    commit = git.stdout.strip() if git.returncode == 0 else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gdal_rasterio": rasterio.__gdal_version__,
        "gdal_system": system_gdal or "unavailable",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM becomes SystemExit, so the running tool's session is killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: load average is {load:.2f}: something else is running", flush=True)
    scene_dir = (args.data / str(args.size)).resolve()
    generated_s = ensure_data(scene_dir, args.size, args.formats)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "data": str(scene_dir),
        "generate_s": round(generated_s, 1) if generated_s is not None else None,
        "machine": machine_facts(),
        "load_average_at_start": round(load, 2),
        "repeats": args.repeats,
        "codec": f"{output_codec()[0].upper()} level {output_codec()[1]}",
        "formats": {},
    }
    tools = [tool for tool in TOOLS if tool.name in args.only]
    for fmt in args.formats:
        folder = scene_dir / fmt
        inputs = Inputs(
            folder, folder / band_filename("B04", fmt), folder / band_filename("B08", fmt)
        )
        print(f"{fmt}: {folder}", flush=True)
        runs: dict[str, list[dict]] = {tool.name: [] for tool in tools}
        for round_ in range(args.repeats):
            if args.repeats > 1:
                print(f" round {round_ + 1} of {args.repeats}", flush=True)
            for tool in tools:  # every tool once per round: a slow spell hits them all
                warm_cache(folder)
                out = scene_dir / "out" / f"{fmt}-{tool.name}"
                runs[tool.name].append(run_tool(tool, inputs, out, args.timeout, args.keep_outputs))
        rows = [median_run(runs[tool.name]) for tool in tools]
        add_ratios(rows)
        results["formats"][fmt] = rows
    if not args.keep_outputs:
        shutil.rmtree(scene_dir / "out", ignore_errors=True)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")

    print()
    for fmt, rows in results["formats"].items():
        print(report.format_console(f"{report.FORMAT_TITLES[fmt]}, {args.size} px", rows))
        print()
    args.results.mkdir(parents=True, exist_ok=True)
    report.write_json(args.results / "latest.json", results)
    (args.results / "latest.md").write_text(report.format_markdown(results))
    report.write_chart(args.results / "latest.png", results)
    print(f"wrote {args.results}/latest.json, latest.md, latest.png")
    bad = [
        r
        for rows in results["formats"].values()
        for r in rows
        if r["status"] in ("failed", "mismatch")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
