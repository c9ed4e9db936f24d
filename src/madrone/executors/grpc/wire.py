"""Tile results on the wire: raw float32 arrays (optionally zlib-compressed) in chunks, and
the small statistics and counts as JSON. Never pickle, never base64."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from madrone.engine.progress import meta_from_json, meta_to_json
from madrone.engine.tile import TileResult
from madrone.errors import InputError
from madrone.executors.grpc import madrone_pb2 as pb
from madrone.grid import Tile

MAX_CHUNK_BYTES = 4 * 1024 * 1024  # a 1024 px float32 tile in one message
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # both ends refuse larger messages


@dataclass(frozen=True)
class ResultIds:
    job: str
    task: str
    lease: int
    worker: str


def result_chunks(
    result: TileResult, ids: ResultIds, compress: bool = True, chunk_bytes: int = MAX_CHUNK_BYTES
) -> Iterator[pb.ResultChunk]:
    """Split one tile's arrays into chunks; the last carries the statistics and counts."""
    height, width = result.tile.height, result.tile.width
    names = sorted(result.arrays)
    for position, name in enumerate(names):
        data = np.ascontiguousarray(result.arrays[name], dtype="<f4").tobytes()
        if compress:
            data = zlib.compress(data, 1)
        pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
        for number, piece in enumerate(pieces):
            last = position == len(names) - 1 and number == len(pieces) - 1
            yield pb.ResultChunk(
                job=ids.job, task=ids.task, lease=ids.lease, worker=ids.worker, name=name,
                height=height, width=width, compressed=compress, data=piece, last=last,
                meta_json=meta_to_json(result) if last else "",
            )  # fmt: skip


def result_from_chunks(
    chunks: Iterable[pb.ResultChunk], tile_for: Callable[[str], Tile | None]
) -> tuple[ResultIds, TileResult]:
    """Reassemble a tile's result, checking every size against the tile it claims to be.

    Raises:
        InputError: chunks that disagree, a task the job does not have, a wrong size, bad
            compression or metadata (the master answers the worker; it never crashes).
    """
    ids, tile, parts, meta = None, None, {}, None
    for chunk in chunks:
        these = ResultIds(chunk.job, chunk.task, chunk.lease, chunk.worker)
        if ids is None:
            ids, tile = these, tile_for(chunk.task)
            if tile is None:
                raise InputError(f"job {chunk.job} has no task {chunk.task!r}")
        elif these != ids:
            raise InputError(f"result chunks of {ids.task} and {these.task} are mixed")
        if (chunk.height, chunk.width) != (tile.height, tile.width):
            raise InputError(f"task {ids.task}: {chunk.height}x{chunk.width} is not its shape")
        parts.setdefault(chunk.name, []).append((chunk.compressed, chunk.data))
        if chunk.last:
            meta = chunk.meta_json
            break
    if ids is None or meta is None:
        raise InputError("the result stream ended before its last chunk")
    size = tile.height * tile.width * 4
    arrays = {name: _decode(pieces, size, ids.task, name, tile) for name, pieces in parts.items()}
    counts, stats, used = meta_from_json(meta, ids.task)
    return ids, TileResult(tile, arrays, counts, stats, used)


def _decode(pieces: list, size: int, task: str, name: str, tile: Tile) -> np.ndarray:
    data = b"".join(piece for _, piece in pieces)
    if pieces[0][0]:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, size + 1)  # never inflate past the tile's size
        except zlib.error as error:
            raise InputError(f"task {task} {name}: bad compressed data ({error})") from None
    if len(data) != size:
        raise InputError(f"task {task} {name}: {len(data)} bytes, expected {size}")
    return np.frombuffer(data, dtype="<f4").reshape(tile.height, tile.width)  # no copy
