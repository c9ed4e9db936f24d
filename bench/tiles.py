"""Tile latency: madrone's ``/tiles`` endpoint under gunicorn against rio-tiler in-process.

A full-scene NDVI COG (10980 x 10980 float32, EPSG:32633, 10 m, DEFLATE level 1 with
predictor 3, tiles 512, overviews, a NaN swath edge) is written once into
``bench/data/tiles/`` and registered in a throwaway SQLite catalog as an ``index`` dataset.
The same random tiles meeting the scene, spread over zoom levels from the one where the
scene is a few tiles to full resolution, are then fetched:

- ``madrone``: ``gunicorn -w 1`` (one sync worker) on 127.0.0.1, one urllib client;
- ``rio-tiler``: in this process, per tile a ``Reader`` opened, ``Reader.tile``, madrone's
  ``colorize`` and a PNG render: the same picture without HTTP, Flask and the catalog, by
  the library a tile server would use (madrone cuts tiles itself: ``web/tilecut.py``).

A second list, the tiles of a 5 x 5 map view at each zoom (what a browser asks for), shows
how much the open raster's block cache gives. Optionally, 20 client threads then load the
map and datasets pages and query ``/api/datasets`` and ``/stac/search`` on the same server.
Results: ``bench/results/tiles.md`` with the command at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import morecantile
import numpy as np
import psutil
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from madrone.catalog.datasets import add_dataset
from madrone.catalog.db import Catalog
from madrone.catalog.models import Dataset
from madrone.config import Settings
from madrone.products.render import colorize, style_for
from madrone.storage import Storage
from madrone.web.tiles import masked_to_nan

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data" / "tiles"
RESULTS = BENCH / "results" / "tiles.md"
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
SIZE = 10980
CRS = "EPSG:32633"
ORIGIN = (399960.0, 5000040.0)
MIB = 1024 * 1024
SAMPLE_S = 0.05
GOAL_P50_MS = 20.0
GOAL_P95_MS = 50.0
WMQ = morecantile.tms.get("WebMercatorQuad")


@dataclass(frozen=True)
class Result:
    """One case: latencies in ms, CPU seconds, peak MiB, wall seconds, failures."""

    name: str
    latencies_ms: list[float]
    cpu_s: float
    peak_mib: float
    wall_s: float
    errors: int = 0

    def pct(self, q: float) -> float:
        """The q-th percentile of the latencies in ms."""
        return float(np.percentile(self.latencies_ms, q))


def write_cog(path: Path) -> None:
    """The synthetic NDVI scene as a COG: smooth regional variation, parcels, noise, and
    NaN east of a diagonal swath edge; written by block into a GTiff, then GDAL's COG driver."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    rng = np.random.default_rng(9)
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 1,
               "dtype": "float32", "crs": CRS, "nodata": float("nan"),
               "transform": from_origin(*ORIGIN, 10.0, 10.0), "tiled": True,
               "blockxsize": 512, "blockysize": 512}  # fmt: skip
    cols = np.arange(SIZE, dtype=np.float32)
    with rasterio.open(tmp, "w", **profile) as dst:
        for top in range(0, SIZE, 512):
            rows = np.arange(top, min(top + 512, SIZE), dtype=np.float32)[:, None]
            regional = 0.35 + 0.25 * np.sin(cols / 900.0) * np.cos(rows / 1300.0)
            parcels = (((cols // 190) * 7 + (rows // 160) * 13) % 11) / 25.0 - 0.2
            noise = 0.03 * rng.standard_normal((rows.shape[0], SIZE), dtype=np.float32)
            ndvi = np.clip(regional + parcels + noise, -1, 1).astype(np.float32)
            ndvi[cols[None, :] > rows * 0.6 + 8000] = np.nan
            window = rasterio.windows.Window(0, top, SIZE, rows.shape[0])
            dst.write(ndvi, 1, window=window)
    options = {"COMPRESS": "DEFLATE", "LEVEL": 1, "PREDICTOR": 3, "BLOCKSIZE": 512,
               "OVERVIEW_RESAMPLING": "AVERAGE", "NUM_THREADS": "ALL_CPUS"}  # fmt: skip
    rasterio.shutil.copy(tmp, path, driver="COG", **options)
    tmp.unlink()


def register(cog: Path, work: Path) -> tuple[Settings, str]:
    """Settings on a fresh SQLite catalog under ``work`` holding the COG as an NDVI dataset."""
    settings = Settings(db_url=f"sqlite:///{work / 'catalog.sqlite'}", storage_url=str(cog.parent),
                        public_read=1)  # fmt: skip
    with rasterio.open(cog) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    with Storage.from_settings(settings) as storage:
        href = f"{storage.url}/{cog.name}"
    catalog = Catalog(settings.db_url, upgrade=True)
    try:
        dataset = Dataset(name="bench NDVI", kind="index", index_name="NDVI",
                          footprint={"type": "Polygon", "coordinates": [ring]},
                          west=west, south=south, east=east, north=north, crs=CRS,
                          resolution=10.0, owner="bench", scope="local",
                          date_start=dt.datetime(2023, 7, 1, tzinfo=dt.UTC),
                          assets={"cog": {"href": href, "size": cog.stat().st_size,
                                          "sha256": ""}})  # fmt: skip
        add_dataset(catalog, dataset)
        return settings, dataset.id
    finally:
        catalog.dispose()


def pick_tiles(cog: Path, n: int, seed: int) -> list[tuple[int, int, int]]:
    """``n`` random (z, x, y) tiles meeting the scene, round-robin over the zoom levels from
    the first with at least 4 tiles to the one whose pixels are no larger than 10 m."""
    with rasterio.open(cog) as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    lat = (bounds[1] + bounds[3]) / 2
    zooms = []
    for z in range(4, 19):
        with Reader(str(cog)) as reader:
            tiles = [t for t in WMQ.tiles(*bounds, zooms=[z]) if reader.tile_exists(t.x, t.y, t.z)]
        if len(tiles) < 4:
            continue
        zooms.append((z, tiles))
        if 156543.03 * np.cos(np.radians(lat)) / 2**z / 1.0 <= 10.0 * 1.0:
            break
    rng = random.Random(seed)
    picked = []
    for i in range(n):
        z, tiles = zooms[i % len(zooms)]
        tile = rng.choice(tiles)
        picked.append((z, tile.x, tile.y))
    return picked


class Sampler:
    """Peak summed RSS of a process tree, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root]

    def rss(self) -> int:
        """Summed RSS of the tree now."""
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the live tree."""
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(name: str, pid: int, calls: Sequence[Callable[[], object]]) -> Result:
    """Run each call once in order, timing it; CPU and peak RSS are ``pid``'s tree's."""
    latencies = []
    with Sampler(pid) as sampler:
        cpu0, start = sampler.cpu_s(), time.perf_counter()
        for call in calls:
            t0 = time.perf_counter()
            call()
            latencies.append((time.perf_counter() - t0) * 1000)
        wall, cpu = time.perf_counter() - start, sampler.cpu_s() - cpu0
    return Result(name, latencies, cpu, sampler.peak / MIB, wall)


def peer_tile(cog: Path, z: int, x: int, y: int) -> bytes:
    """The tile as madrone draws it, straight from rio-tiler in this process."""
    style = style_for("NDVI", "vegetation")
    with Reader(str(cog)) as reader:
        try:
            image = reader.tile(x, y, z, tilesize=256, indexes=1, resampling_method="nearest")
        except TileOutsideBounds:
            return b""
    return render(colorize(masked_to_nan(image.array[0]), style), img_format="PNG")


def agreement(served: bytes, peer: bytes) -> float:
    """The share of pixels two PNG tiles have the same RGBA (1.0 for two empty answers)."""
    if not served or not peer:
        return float(served == peer)
    with Image.open(io.BytesIO(served)) as a, Image.open(io.BytesIO(peer)) as b:
        return float(
            (np.asarray(a.convert("RGBA")) == np.asarray(b.convert("RGBA"))).all(-1).mean()
        )


def view_tiles(cog: Path, seed: int) -> list[tuple[int, int, int]]:
    """5 x 5 adjacent tiles around a random point of the scene at each zoom 7-14."""
    rng = random.Random(seed)
    with rasterio.open(cog) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    tiles = []
    for z in range(7, 15):
        centre = WMQ.tile(rng.uniform(west, east), rng.uniform(south, north), z)
        tiles += [(z, centre.x + dx, centre.y + dy) for dy in range(-2, 3) for dx in range(-2, 3)]
    return tiles


def peer_stages(cog: Path, tiles: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Median ms of the peer's stages over ``tiles``: open, read (``Reader.tile``), colorize,
    PNG encode."""
    style = style_for("NDVI", "vegetation")
    stages: dict[str, list[float]] = {"open": [], "read": [], "colorize": [], "PNG": []}
    for z, x, y in tiles:
        t0 = time.perf_counter()
        with Reader(str(cog)) as reader:
            t1 = time.perf_counter()
            image = reader.tile(x, y, z, tilesize=256, indexes=1, resampling_method="nearest")
            t2 = time.perf_counter()
        rgba = colorize(masked_to_nan(image.array[0]), style)
        t3 = time.perf_counter()
        render(rgba, img_format="PNG")
        t4 = time.perf_counter()
        for key, ms in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key].append(ms * 1000)
    return {key: float(np.median(values)) for key, values in stages.items()}


def warm_page_cache(path: Path) -> None:
    """Read the whole file once so every case starts with it in the page cache."""
    with path.open("rb") as src:
        while src.read(16 * MIB):
            pass


def fetch(url: str, timeout: float = 60.0) -> bytes:
    """GET ``url``; the body (empty for 204)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    """``gunicorn -w 1`` on the app factory, ready once ``/api/openapi.json`` answers."""
    env = dict(os.environ, MADRONE_DB_URL=settings.db_url or "",
               MADRONE_STORAGE_URL=settings.storage_url or "", MADRONE_PUBLIC_READ="1")  # fmt: skip
    command = [str(VENV_BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}",
               "--timeout", "120", "madrone.web:create_app()"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited {server.returncode}: {log.read_text()[-2000:]}")
        try:
            fetch(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the gunicorn master by its PID (it stops its worker), SIGKILL after 20 s."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def concurrent(base: str, server_pid: int, clients: int, per_client: int) -> Result:
    """``clients`` threads alternating ``/api/datasets`` and ``/stac/search`` requests."""
    paths = ["/", "/api/datasets?limit=50", "/datasets", "/stac/search?limit=50"]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(k: int) -> None:
        barrier.wait()
        for i in range(per_client):
            t0 = time.perf_counter()
            try:
                fetch(base + paths[(i + k) % len(paths)])
                ok = True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                ok = False
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok

    with Sampler(server_pid) as sampler:
        cpu0, start = sampler.cpu_s(), time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall, cpu = time.perf_counter() - start, sampler.cpu_s() - cpu0
    name = f"pages `/`, `/datasets` + `/api/datasets`, `/stac/search`, {clients} concurrent clients"
    return Result(name, latencies, cpu, sampler.peak / MIB, wall, errors[0])


def report(command: str, results: list[Result], peer: Result, notes: list[str]) -> str:
    """The Markdown page: command and machine, the table, notes."""
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    memory = psutil.virtual_memory().total / 1024**3
    import gunicorn
    import rio_tiler

    lines = [
        "# Tile benchmark",
        "",
        f"`{command}`, {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, commit {commit}: "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{memory:.1f} GiB, load average {os.getloadavg()[0]:.2f} at the end; "
        f"rio-tiler {rio_tiler.__version__}, GDAL {rasterio.__gdal_version__}, "
        f"gunicorn {gunicorn.__version__}.",
        "",
        "| case | n | wall s | CPU s | peak MiB | p50 ms | p95 ms | max ms | p50 / p95 vs rio-tiler"
        " | errors | goal | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for result in results:
        is_tiles = result.name.startswith("madrone")
        ratio = (
            f"{result.pct(50) / peer.pct(50):.2f} / {result.pct(95) / peer.pct(95):.2f}"
            if is_tiles
            else "-"
        )
        goal = f"p50 < {GOAL_P50_MS:g} ms, p95 < {GOAL_P95_MS:g} ms" if is_tiles else "-"
        if is_tiles:
            met = "yes" if result.pct(50) < GOAL_P50_MS and result.pct(95) < GOAL_P95_MS else "no"
        elif result.name.startswith("pages"):
            goal, met = "0 errors", "yes" if result.errors == 0 else "no"
        else:
            met = "-"
        lines.append(
            f"| {result.name} | {len(result.latencies_ms)} | {result.wall_s:.2f} | "
            f"{result.cpu_s:.2f} | {result.peak_mib:.0f} | {result.pct(50):.2f} | "
            f"{result.pct(95):.2f} | {max(result.latencies_ms):.2f} | {ratio} | "
            f"{result.errors} | {goal} | {met} |"
        )
    lines.append("")
    lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="tiles per case")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20, help="0: no concurrent case")
    parser.add_argument("--per-client", type=int, default=25)
    parser.add_argument("--print-only", action="store_true", help="do not write results")
    args = parser.parse_args(argv)
    command = "python bench/tiles.py " + " ".join(argv if argv is not None else sys.argv[1:])

    cog = DATA / "ndvi_cog.tif"
    if not cog.exists():
        t0 = time.perf_counter()
        write_cog(cog)
        print(f"wrote {cog} in {time.perf_counter() - t0:.1f} s", flush=True)
    tiles = pick_tiles(cog, args.requests, args.seed)
    views = view_tiles(cog, args.seed)
    zooms = sorted({z for z, _, _ in tiles})

    with tempfile.TemporaryDirectory(prefix="madrone-bench-tiles-") as tmp:
        work = Path(tmp)
        settings, dataset_id = register(cog, work)
        # Warm the page cache and the imports, then the peer bound in this process.
        warm_page_cache(cog)
        for z, x, y in tiles[: len(zooms)]:
            peer_tile(cog, z, x, y)
        calls = [lambda t=t: peer_tile(cog, *t) for t in tiles]
        peer = timed("rio-tiler in-process (Reader.tile + colorize + PNG)", os.getpid(), calls)
        stages = peer_stages(cog, tiles)
        print(f"peer: p50 {peer.pct(50):.2f} ms, p95 {peer.pct(95):.2f} ms", flush=True)

        port = free_port()
        server = start_server(settings, port, work / "gunicorn.log")
        try:
            base = f"http://127.0.0.1:{port}"
            urls = [f"{base}/tiles/{dataset_id}/{z}/{x}/{y}.png" for z, x, y in tiles]
            for url in urls[: len(zooms)]:
                fetch(url)
            checked = range(0, len(urls), 10)
            same = np.mean([agreement(fetch(urls[i]), peer_tile(cog, *tiles[i])) for i in checked])
            served = timed("madrone `/tiles`, gunicorn -w 1, one client", server.pid,
                           [lambda u=u: fetch(u) for u in urls])  # fmt: skip
            print(f"madrone: p50 {served.pct(50):.2f} ms, p95 {served.pct(95):.2f} ms", flush=True)
            view_urls = [f"{base}/tiles/{dataset_id}/{z}/{x}/{y}.png" for z, x, y in views]
            viewed = timed("madrone `/tiles`, 5 x 5 map views at zooms 7-14", server.pid,
                           [lambda u=u: fetch(u) for u in view_urls])  # fmt: skip
            results = [served, peer, viewed]
            if args.clients:
                busy = concurrent(base, server.pid, args.clients, args.per_client)
                print(f"concurrent: p50 {busy.pct(50):.2f} ms, errors {busy.errors}", flush=True)
                results.append(busy)
        finally:
            stop_server(server)

    by_zoom = list(zip(tiles, served.latencies_ms, strict=True))
    per_zoom = ", ".join(
        f"z{z} {np.median([ms for t, ms in by_zoom if t[0] == z]):.1f}" for z in zooms
    )
    notes = [
        f"COG: {SIZE} x {SIZE} float32 NDVI, {CRS}, 10 m, DEFLATE level 1 + predictor 3, "
        f"tiles 512, overviews (average), {cog.stat().st_size / MIB:.0f} MiB, warm page cache.",
        f"Tiles: {len(tiles)} random 256 px WebMercatorQuad tiles meeting the scene, round-robin "
        f"over zooms {zooms[0]}-{zooms[-1]} (seed {args.seed}); the same list for both cases.",
        f"madrone p50 ms by zoom: {per_zoom}.",
        f"Pixels with the same RGBA from the server and the in-process peer: {same:.2%} "
        f"(every 10th tile; nearest neighbour by two samplers differs on source pixel seams).",
        "madrone: CPU and peak memory are the gunicorn master and worker's (summed RSS); the "
        "client's are not counted. rio-tiler: this process's (which also holds the client).",
        "rio-tiler median ms per stage: "
        + ", ".join(f"{key} {ms:.1f}" for key, ms in stages.items())
        + " (a second pass over the same tiles).",
        "The peer opens the COG per tile; madrone keeps it open (a cache of 16 rasters) and "
        "reads from the overview that fits the zoom; no rendered tile is cached.",
        "Map views: 25 adjacent tiles per zoom (some off the scene: 204 No Content), "
        "the order a browser asks for them; blocks decoded for one tile serve its neighbours.",
    ]
    if args.clients:
        notes.append(
            f"Concurrent: {args.clients} threads x {args.per_client} requests, in turn the map "
            "page `/`, `/api/datasets?limit=50`, the datasets page and `/stac/search?limit=50` "
            "on a catalog of one dataset, same server (one sync worker: requests queue)."
        )
    text = report(command.strip(), results, peer, notes)
    print(text)
    if not args.print_only:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
