"""Run tiles on a Dask distributed cluster (Kubernetes, SLURM through dask-jobqueue, or a
LocalCluster): for teams that already run one. Same run_tile, same products.

The context is scattered to the workers once; tiles are submitted a bounded number ahead,
so memory on the client stays O(tiles in flight) as with the local pool. Results are
fetched straight from the worker that made them when this client can reach the workers
(checked once per run), rather than relayed by the scheduler, which in a LocalCluster
runs in this process and decoded and re-encoded every tile (49 CPU s of the two-scene
headline job's client, against 31). Behind a gateway that only forwards the scheduler,
the scheduler relays them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

from madrone.engine.memory import WORKER_FREE_MIB, release_freed_memory, reuse_freed_memory
from madrone.engine.plan import TileContext, tile_cache_mb
from madrone.engine.tile import TileResult, TileTask, run_tile
from madrone.errors import InputError
from madrone.executors import one_thread_per_tile, set_tile_cache
from madrone.grid import Tile

CONNECT_TIMEOUT = "5s"
PROBE_SECONDS = 3.0
BATCH_PIXELS = 1024 * 1024


def _prepare_worker(mb_per_thread: int) -> None:
    """In a worker process: cap its GDAL block cache at its threads times the share a
    thread of this job needs (left alone, GDAL takes 5 % of the machine's memory in every
    worker process), and keep freed tile memory in few heaps (see ``reuse_freed_memory``)."""
    from distributed import get_worker

    _prepare_process()
    set_tile_cache(mb_per_thread, get_worker().state.nthreads)


@functools.cache
def _prepare_process() -> None:
    reuse_freed_memory()
    one_thread_per_tile()


def _run_on_worker(tiles: list[Tile], context: TileContext, gdal_cache_mb: int) -> list[TileResult]:
    _prepare_worker(gdal_cache_mb)
    results = []
    for tile in tiles:
        release_freed_memory(WORKER_FREE_MIB)
        results.append(run_tile(TileTask(context, tile)))
    return results


def batches(tiles: Sequence[Tile], threads: int) -> list[list[Tile]]:
    """Neighbouring tiles in tasks of up to BATCH_PIXELS, leaving at least four tasks per
    thread: a Dask task costs milliseconds of scheduling, which small tiles do not pay for
    (a 2048 px scene in 32 px tiles took 46 s one tile per task)."""
    if not tiles:
        return []
    largest = max(tile.width * tile.height for tile in tiles)
    size = max(1, min(BATCH_PIXELS // largest, -(-len(tiles) // (4 * threads))))
    return [list(tiles[i : i + size]) for i in range(0, len(tiles), size)]


class DaskExecutor:
    """Moves tiles to a Dask scheduler's workers and results back, in completion order.

    Args:
        address: the scheduler (``tcp://host:8786``), or an existing ``distributed.Client``.
        tiles_in_flight: tasks (one tile, or a batch of small ones) submitted ahead of the
            results consumed (bounds memory); default twice the cluster's threads.
        gdal_cache_mb: GDAL block cache per worker thread, in MiB.
        direct: fetch results from the workers themselves (True) or through the scheduler
            (False); None: from the workers when one of them answers this client.
    """

    def __init__(
        self,
        address: object,
        tiles_in_flight: int | None = None,
        gdal_cache_mb: int = 80,
        direct: bool | None = None,
    ) -> None:
        self.address = address
        self.tiles_in_flight = tiles_in_flight
        self.gdal_cache_mb = gdal_cache_mb
        self.direct = direct

    def map_tiles(self, context: TileContext, tiles: Sequence[Tile]) -> Iterator[TileResult]:
        from distributed import Client, as_completed

        own = not isinstance(self.address, Client)
        try:
            client = Client(self.address, timeout=CONNECT_TIMEOUT) if own else self.address
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(
                f"--dask {self.address}: cannot reach the scheduler ({error})"
            ) from error
        try:
            shared = client.scatter(context, broadcast=True)
            threads = sum(client.nthreads().values()) or 1
            ahead = self.tiles_in_flight or 2 * threads
            direct = self.direct if self.direct is not None else workers_reachable(client)
            cache_mb = tile_cache_mb(context, tiles, self.gdal_cache_mb)

            def submit(batch: list[Tile]):
                return client.submit(_run_on_worker, batch, shared, cache_mb, pure=False)

            queue = iter(batches(tiles, threads))
            first = [submit(batch) for _, batch in zip(range(ahead), queue, strict=False)]
            running = as_completed(first)
            for future in running:
                results = client.gather(future, direct=direct)
                future.release()
                next_batch = next(queue, None)
                if next_batch is not None:
                    running.add(submit(next_batch))
                yield from results
        finally:
            if own:
                client.close()


def workers_reachable(client) -> bool:
    """Whether this client can open a connection to a worker of its cluster (not so behind
    a gateway that forwards only the scheduler, or across a network boundary)."""
    from distributed.comm import connect

    workers = list(client.scheduler_info().get("workers", {}))
    if not workers:
        return False

    async def probe() -> None:
        comm = await connect(workers[0], timeout=PROBE_SECONDS, **client.connection_args)
        await comm.close()

    try:
        client.sync(probe)
    except (OSError, TimeoutError):
        return False
    return True
