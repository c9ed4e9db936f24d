"""Run tiles on a Dask distributed cluster (Kubernetes, SLURM through dask-jobqueue, or a
LocalCluster): for teams that already run one. Same run_tile, same products.

The context is scattered to the workers once; tiles are submitted a bounded number ahead,
so memory on the client stays O(tiles in flight) as with the local pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from madrone.engine.plan import TileContext
from madrone.engine.tile import TileResult, TileTask, run_tile
from madrone.errors import InputError
from madrone.grid import Tile

CONNECT_TIMEOUT = "5s"


def _run_on_worker(tile: Tile, context: TileContext) -> TileResult:
    return run_tile(TileTask(context, tile))


class DaskExecutor:
    """Moves tiles to a Dask scheduler's workers and results back, in completion order.

    Args:
        address: the scheduler (``tcp://host:8786``), or an existing ``distributed.Client``.
        tiles_in_flight: tiles submitted ahead of the results consumed (bounds memory);
            default twice the cluster's threads.
    """

    def __init__(self, address: object, tiles_in_flight: int | None = None) -> None:
        self.address = address
        self.tiles_in_flight = tiles_in_flight

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
            queue = iter(tiles)
            first = [
                client.submit(_run_on_worker, tile, shared, pure=False)
                for _, tile in zip(range(ahead), queue, strict=False)
            ]
            running = as_completed(first)
            for future in running:
                result = future.result()
                future.release()
                next_tile = next(queue, None)
                if next_tile is not None:
                    running.add(client.submit(_run_on_worker, next_tile, shared, pure=False))
                yield result
        finally:
            if own:
                client.close()
