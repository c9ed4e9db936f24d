"""Start-up and the fixed cost of small jobs: madrone against a plain rasterio + numpy script.

    python bench/startup.py [--repeats 7] [--results bench/results] [--baseline SRC]

Rows, each a fresh process measured by measure.py (wall, CPU of all its processes, peak
summed RSS): the interpreter alone; ``import numpy, rasterio`` (the floor of any rasterio
script); ``madrone --help``; a tiny job (a 280 m box of the real T18SVG crop: one tile,
default products); NDVI of the whole 1933 x 1947 px crop with the default products, with
the COG only, and with the pool forced (``--workers 2``); and the plain script
(peers/rasterio_numpy.py) on the same crop. The rows run round-robin, ``--repeats`` times
each, so a burst of load elsewhere hits every row alike; the table shows the minimum wall
time and the medians of CPU and memory. The NDVI of the crop runs is checked against an
independent reference (verify.py). ``--baseline SRC`` adds the madrone rows once more with
another source tree first on PYTHONPATH (``git archive COMMIT src | tar -x -C DIR``, then
``--baseline DIR/src``): before and after in the same run. Results: ``results/startup.md``
(and every run's numbers in ``results/startup.json``, not kept in git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from measure import Measurement, run_measured  # noqa: E402
from verify import verify_output  # noqa: E402

DATA = Path(os.environ.get("MADRONE_TEST_DATA", ROOT.parent / "shared/data/sentinel2"))
CROP = DATA / "L1C_T18SVG_20160112_crop"
TINY_BBOX = "-75.621,37.672,-75.618,37.674"  # W,S,E,N: 28 x 23 px of the crop
PYTHON = str(ROOT / ".venv/bin/python")
MADRONE = str(ROOT / ".venv/bin/madrone")
HELP_GOAL_S = 0.3
FIXED_GOAL_S = 0.5
# rasterio imports boto3 when it can (0.2 s here); only moto, a test dependency, installs it
NO_BOTO3 = "import sys; sys.modules['boto3'] = None"


@dataclass
class Row:
    """One command and its measured runs."""

    key: str
    label: str
    argv: list[str]
    output: str | None = None  # an NDVI GeoTIFF to verify, relative to the run's folder
    env: dict[str, str] | None = None
    runs: list[Measurement] = field(default_factory=list)

    def wall(self) -> float:
        return min(run.wall_s for run in self.runs)

    def cpu(self) -> float:
        return statistics.median(run.cpu_s for run in self.runs)

    def peak(self) -> float:
        return statistics.median(run.peak_rss_mib for run in self.runs)

    def other_cpu(self) -> float:
        return statistics.median(run.other_cpu_s for run in self.runs)


def make_rows(out: Path) -> list[Row]:
    crop, ndvi = str(CROP), "L1C_T18SVG_20160112_crop_ndvi.tif"
    process = [MADRONE, "process", crop, "--index", "ndvi", "--quiet"]
    return [
        Row("python", "python -c pass", [PYTHON, "-c", "pass"]),
        Row("imports", "python -c 'import numpy, rasterio'",
            [PYTHON, "-c", "import numpy, rasterio"]),
        Row("imports_user", "the same without boto3 (as installed without the test extras)",
            [PYTHON, "-c", f"{NO_BOTO3}; import numpy, rasterio"]),
        Row("help", "madrone --help", [MADRONE, "--help"]),
        Row("tiny", "madrone process, 280 m box (28 x 23 px, one tile)",
            [*process, "--bbox", TINY_BBOX, "-o", str(out / "tiny")]),
        Row("tiny_user", "the same without boto3",
            [PYTHON, "-c", f"{NO_BOTO3}; from madrone.cli.main import main; main()",
             *process[1:], "--bbox", TINY_BBOX, "-o", str(out / "tiny_user")]),
        Row("crop", "madrone process, crop, default products", [*process, "-o", str(out / "crop")],
            f"crop/{ndvi}"),
        Row("crop_cog", "madrone process, crop, COG only",
            [*process, "--products", "cog", "-o", str(out / "crop_cog")], f"crop_cog/{ndvi}"),
        Row("crop_pool", "madrone process, crop, default products, --workers 2 (pool)",
            [*process, "--workers", "2", "-o", str(out / "crop_pool")], f"crop_pool/{ndvi}"),
        Row("plain", "peers/rasterio_numpy.py, crop",
            [PYTHON, str(BENCH / "peers/rasterio_numpy.py"), str(CROP / "B04.tif"),
             str(CROP / "B08.tif"), str(out / "plain.tif")], "plain.tif"),
    ]  # fmt: skip


def baseline_rows(rows: list[Row], source: Path) -> list[Row]:
    """The madrone rows again, importing madrone from ``source`` (an older tree's src)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    return [
        Row(f"{row.key}_baseline", f"{row.label} [baseline]",
            [arg.replace(f"/{row.key}", f"/{row.key}_baseline") for arg in row.argv],
            row.output.replace(row.key, f"{row.key}_baseline", 1) if row.output else None, env)
        for row in rows
        if row.key in ("help", "tiny", "crop")
    ]  # fmt: skip


def compile_bytecode(*folders: Path) -> None:
    """Compile madrone's modules, as pip does when it installs a wheel. An editable install
    (``make setup``) under ``PYTHONDONTWRITEBYTECODE``, as on this machine, never writes
    them, and each run would compile every module again (0.1 s)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, folders)], check=True)


def run_rows(rows: list[Row], repeats: int, out: Path) -> None:
    """Run every row ``repeats`` times, round-robin; outputs are removed between runs."""
    for turn in range(repeats):
        for row in rows:
            measured = run_measured(row.argv, cwd=ROOT, env=row.env)
            if measured.returncode != 0:
                raise SystemExit(f"{row.label} failed ({measured.returncode}): {measured.stderr}")
            if row.output and turn == 0:
                verdict = verify_output(out / row.output, CROP / "B04.tif", CROP / "B08.tif")
                if not verdict.ok:
                    raise SystemExit(f"{row.label}: wrong NDVI: {verdict.message}")
            row.runs.append(measured)
            print(f"{turn + 1}/{repeats} {row.label}: {measured.wall_s:.2f} s wall, "
                  f"{measured.cpu_s:.2f} s CPU", flush=True)  # fmt: skip
            for entry in out.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def machine_line(command: str, started: str, loads: tuple[float, float]) -> str:
    cpu = platform.processor() or "unknown"
    with open("/proc/cpuinfo") as handle:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
        )
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                         text=True)  # fmt: skip
    boto3 = subprocess.run([PYTHON, "-c", "import boto3"], capture_output=True).returncode == 0
    return (
        f"`{command}`, {started}, commit {git.stdout.strip()[:10] or 'unknown'}: "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}; load average "
        f"{loads[0]:.2f} at the start and {loads[1]:.2f} at the end. boto3 is "
        f"{'importable, so rasterio imports it' if boto3 else 'not installed'}."
    )


def markdown(rows: list[Row], header: str, repeats: int) -> str:
    by_key = {row.key: row for row in rows}
    plain = by_key["plain"]
    lines = [
        "# Start-up and small jobs",
        "",
        header,
        "",
        f"Each row ran {repeats} times, round-robin, each time as a fresh process; wall is the "
        "minimum, CPU (all the command's processes), peak summed RSS and the CPU the rest of "
        "the machine used meanwhile are medians.",
        "",
        "| command | wall s | CPU s | peak MiB | x plain script | other CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.wall():.3f} | {row.cpu():.2f} | {row.peak():.0f} | "
            f"{row.wall() / plain.wall():.2f} | {row.other_cpu():.2f} |"
        )
    help_s, tiny_s = by_key["help"].wall(), by_key["tiny"].wall()
    extra_s = by_key["crop"].wall() - plain.wall()
    floor_s = by_key["imports"].wall()
    lines += [
        "",
        "Goals (issue 10, goal 4):",
        "",
        f"- `madrone --help` under {HELP_GOAL_S} s: {help_s:.3f} s, "
        f"{'met' if help_s < HELP_GOAL_S else 'not met'}.",
        f"- fixed cost of a small job under {FIXED_GOAL_S} s, as the tiny job's whole wall "
        f"time: {tiny_s:.3f} s, {'met' if tiny_s < FIXED_GOAL_S else 'not met'} (importing "
        f"numpy and rasterio alone takes {floor_s:.3f} s); beyond that floor, which every "
        f"rasterio script pays: {tiny_s - floor_s:.3f} s, "
        f"{'met' if tiny_s - floor_s < FIXED_GOAL_S else 'not met'}. Without boto3, which "
        "only the test extras install and rasterio imports when it can: "
        f"{by_key['tiny_user'].wall():.3f} s ({by_key['imports_user'].wall():.3f} s of "
        f"imports), {'met' if by_key['tiny_user'].wall() < FIXED_GOAL_S else 'not met'}.",
        f"- the same, as madrone's time on the crop beyond the plain script's: "
        f"{by_key['crop'].wall():.3f} - {plain.wall():.3f} = {extra_s:.3f} s, "
        f"{'met' if extra_s < FIXED_GOAL_S else 'not met'}; with the COG only "
        f"{by_key['crop_cog'].wall() - plain.wall():.3f} s (the plain script writes no PNG "
        "or legend).",
        f"- the pool on the crop (forced by `--workers 2`) against no pool, which madrone "
        "chooses for a job of at most 2048 x 2048 px when the worker count is left to it: "
        f"wall {by_key['crop_pool'].wall() - by_key['crop'].wall():+.3f} s, CPU "
        f"{by_key['crop_pool'].cpu() - by_key['crop'].cpu():+.2f} s, peak memory "
        f"{by_key['crop_pool'].peak() - by_key['crop'].peak():+.0f} MiB.",
        "",
    ]
    if "help_baseline" in by_key:
        lines += [
            "Before (the `--baseline` tree) and after (this tree), same run:",
            "",
            "| command | wall s before | wall s after | CPU s before | CPU s after |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key in ("help", "tiny", "crop"):
            old, new = by_key[f"{key}_baseline"], by_key[key]
            lines.append(f"| {new.label} | {old.wall():.3f} | {new.wall():.3f} | "
                         f"{old.cpu():.2f} | {new.cpu():.2f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--baseline", type=Path, help="an older madrone's src folder")
    args = parser.parse_args(argv)
    if not CROP.is_dir():
        raise SystemExit(f"{CROP} is missing: set MADRONE_TEST_DATA to the Sentinel-2 data")
    command = shlex.join(["python", "bench/startup.py", *(argv or sys.argv[1:])])
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="madrone-startup-") as folder:
        out = Path(folder)
        rows = make_rows(out)
        compile_bytecode(ROOT / "src")
        if args.baseline:
            rows += baseline_rows(rows, args.baseline.resolve())
            compile_bytecode(args.baseline.resolve())
        run_rows(rows, args.repeats, out)
    header = machine_line(command, started, (load_start, os.getloadavg()[0]))
    page = markdown(rows, header, args.repeats)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "startup.md").write_text(page)
    runs = {row.key: {"argv": row.argv, "runs": [asdict(run) for run in row.runs]} for row in rows}
    (args.results / "startup.json").write_text(json.dumps({"header": header, "rows": runs}))
    print(f"\n{page}\nwrote {args.results / 'startup.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
