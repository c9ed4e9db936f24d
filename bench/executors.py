"""Local process pool vs gRPC master + workers vs Dask, on the same data in the same run.

    python bench/executors.py [--size 10980] [--workers 2] [--tiny-size 2048] [--repeats 3]

Rows: one full scene's NDVI (COG only); the original project's headline job, two scenes with
NDVI and NDSI and all products (here the GeoTIFF and the JPEG 2000 copy of the synthetic
scene: it took over 35 minutes on the original system), with two single-threaded workers and
again with one worker of two threads (how a worker is deployed on a machine of its own: one
process, a thread per core); and scheduler overhead, as tiles per second on a small scene
cut into 32 px tiles. Each cell is one measured command that
starts its own cluster (master + workers, or a Dask LocalCluster), runs the jobs and stops
it, so start-up is included; the job time alone is printed too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402

EXECUTORS = ("local", "grpc", "dask")
IDLE_S = 3.0


def driver(args: argparse.Namespace) -> None:
    """Inside the measured command: start the executor, run the jobs, report job seconds."""
    from madrone.api import build_spec, run
    from madrone.executors.grpc.client import submit

    specs = [
        build_spec(
            [source],
            args.indices.split(","),
            os.path.join(args.out, str(i)),
            tile_size=args.tile_size,
            products=args.products.split(","),
        )
        for i, source in enumerate(args.sources)
    ]
    started = time.perf_counter()
    tiles = 0
    if args.idle:
        specs = []  # start the executor, load what a tile needs, run nothing
        from madrone.engine import tile  # noqa: F401
    if args.executor == "local":
        job_started = time.perf_counter()
        for spec in specs:
            tiles += run(spec, workers=args.workers * args.threads).tiles
    elif args.executor == "dask":
        from distributed import LocalCluster

        from madrone.executors.dask import DaskExecutor

        with LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster:
            if args.idle:
                from distributed import Client

                with Client(cluster) as client:
                    client.run(importlib.import_module, "madrone.engine.tile")
                time.sleep(IDLE_S)
            job_started = time.perf_counter()
            for spec in specs:
                tiles += run(spec, executor=DaskExecutor(cluster.scheduler_address)).tiles
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{probe.getsockname()[1]}"
        env = {**os.environ, "MADRONE_MASTER_ROOTS": os.pathsep.join(["/", args.out])}
        command = [sys.executable, "-m", "madrone.cli"]
        master = subprocess.Popen(
            [*command, "master", "--listen", address], env=env, stderr=subprocess.PIPE, text=True
        )
        master.stderr.readline()
        workers = [
            subprocess.Popen(
                [*command, "worker", "--master", address, "--concurrency", str(args.threads)],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.workers)
        ]
        try:
            if args.idle:
                time.sleep(IDLE_S)  # the workers start and register
            job_started = time.perf_counter()
            for spec in specs:
                submit(spec, address)
                tiles += _tile_count(spec)
        finally:
            for child in [*workers, master]:
                child.terminate()
            for child in [*workers, master]:
                child.wait()
    job_s = time.perf_counter() - job_started
    print(json.dumps({"job_s": job_s, "total_s": time.perf_counter() - started, "tiles": tiles}))


def _rate(row: dict) -> str:
    return f"{row['tiles'] / row['job_s']:.0f}" if row["tiles"] else "-"


def _tile_count(spec) -> int:
    from madrone.engine.plan import plan

    return len(plan(spec).tiles)


def measure(executor: str, sources: list[str], extra: list[str], workers: int) -> dict:
    with tempfile.TemporaryDirectory(dir=BENCH / "data") as out:
        argv = [
            sys.executable,
            __file__,
            "job",
            "--executor",
            executor,
            "--out",
            out,
            "--workers",
            str(workers),
            *extra,  # a later --workers wins
            *sources,
        ]
        measured = run_measured(argv)
    if measured.returncode != 0:
        raise SystemExit(f"{executor} failed: {measured.stderr[-2000:]}")
    inner = json.loads(measured.stdout.strip().splitlines()[-1])
    return {
        "executor": executor,
        "wall_s": measured.wall_s,
        "cpu_s": measured.cpu_s,
        "peak_mib": measured.peak_rss_mib,
        "processes": _peaks_by_role(measured.processes),
        **inner,
    }


def _role(command: str) -> str:
    """Which part of the run a process is, from its command line."""
    for marker, role in (
        (" worker ", "worker"),
        (" master ", "master"),
        ("executors.py job", "client"),
        ("multiprocessing", "dask worker"),
    ):
        if marker in f"{command} ":
            return role
    return "other"


def _peaks_by_role(processes: list[dict]) -> dict[str, list[float]]:
    """Each process's own peak RSS in MiB, grouped by role (largest first). A process forked
    from the client (a Dask worker may be) has the client's command line: the client is the
    first of them to start."""
    clients = [p["pid"] for p in processes if _role(p["command"]) == "client"]
    roles: dict[str, list[float]] = {}
    for process in processes:
        role = _role(process["command"])
        if role == "client" and process["pid"] != min(clients):
            role = "forked worker"
        roles.setdefault(role, []).append(process["peak_rss_mib"])
    return {role: sorted(peaks, reverse=True) for role, peaks in sorted(roles.items())}


def _median_row(runs: list[dict]) -> dict:
    """One row of repeated runs: median wall, job, CPU and peak; the run of median wall
    gives the processes' peaks."""
    middle = sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]
    row = {**middle, "repeats": len(runs)}
    for key in ("wall_s", "job_s", "cpu_s", "peak_mib"):
        row[key] = statistics.median(run[key] for run in runs)
    row["walls"] = [round(run["wall_s"], 1) for run in runs]
    return row


def _processes_text(row: dict) -> str:
    return "; ".join(
        f"{role} {' + '.join(f'{peak:.0f}' for peak in peaks)}"
        for role, peaks in row["processes"].items()
        if role != "other" or max(peaks) > 20
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    job = sub.add_parser("job")
    job.add_argument("sources", nargs="+")
    job.add_argument("--executor", choices=EXECUTORS, required=True)
    job.add_argument("--out", required=True)
    job.add_argument("--workers", type=int, default=2)
    job.add_argument("--threads", type=int, default=1, help="per worker (local: in all)")
    job.add_argument("--indices", default="ndvi")
    job.add_argument("--products", default="cog")
    job.add_argument("--tile-size", type=int)
    job.add_argument("--idle", action="store_true", help="start the executor, run nothing")
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--tiny-size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--case", help="only the cases whose label contains this (printed, not saved)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each case, round-robin; medians"
    )
    args = parser.parse_args()
    if args.command == "job":
        driver(args)
        return
    data = BENCH / "data"
    for size in (args.size, args.tiny_size):
        if not (data / str(size) / "jp2").exists():
            subprocess.run(
                [
                    sys.executable,
                    str(BENCH / "generate.py"),
                    "--out",
                    str(data / str(size)),
                    "--size",
                    str(size),
                ],
                check=True,
            )
    scene = data / str(args.size)
    headline = [str(scene / "gtiff"), str(scene / "jp2")]
    everything = ["--indices", "ndvi,ndsi", "--products", "cog,png,legend,json"]
    one_worker = ["--workers", "1", "--threads", str(args.workers)]
    cases = [
        ("started, idle (each process's floor)", [str(scene / "gtiff")], ["--idle"]),
        ("one scene, NDVI, COG", [str(scene / "gtiff")], []),
        ("two scenes, NDVI + NDSI, all products", headline, everything),
        (
            f"the same, one worker of {args.workers} threads",
            headline,
            [*everything, *one_worker],
        ),
        (
            f"{args.tiny_size} px scene in 32 px tiles",
            [str(data / str(args.tiny_size) / "gtiff")],
            ["--tile-size", "32"],
        ),
    ]
    if args.case:
        cases = [case for case in cases if args.case in case[0]]
    runs: dict[tuple[str, str], list[dict]] = {}
    for turn in range(args.repeats):
        for label, sources, extra in cases:
            for executor in EXECUTORS:
                run = measure(executor, sources, extra, args.workers)
                runs.setdefault((label, executor), []).append(run)
                print(
                    f"{turn + 1}/{args.repeats} {label:<42} {executor:<6} "
                    f"{run['wall_s']:7.1f} s wall, {run['cpu_s']:6.1f} s CPU, "
                    f"job {run['job_s']:6.1f} s, {_rate(run):>8} tiles/s, "
                    f"{run['peak_mib']:6.0f} MiB",
                    flush=True,
                )
    rows = [{**_median_row(found), "case": label} for (label, _), found in runs.items()]
    lines = [
        "| case | executor | wall s | job s | CPU s | tiles/s | peak MiB | x local | "
        "each process's own peak, MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        local = next(r for r in rows if r["case"] == row["case"] and r["executor"] == "local")
        ratio = row["wall_s"] / local["wall_s"]
        lines.append(
            f"| {row['case']} | {row['executor']} | {row['wall_s']:.1f} | {row['job_s']:.1f} | "
            f"{row['cpu_s']:.1f} | {_rate(row)} | {row['peak_mib']:.0f} | {ratio:.2f} | "
            f"{_processes_text(row)} |"
        )
    if args.repeats > 1:
        lines += [
            "",
            f"Medians of {args.repeats} runs of each, round-robin; the wall seconds of each run:",
            "",
            *(f"- {row['case']}, {row['executor']}: {row['walls']}" for row in rows),
        ]
    print("\n".join(lines))
    if args.case:
        return
    results = BENCH / "results"
    (results / "executors.md").write_text("\n".join(lines) + "\n")
    (results / "executors.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
