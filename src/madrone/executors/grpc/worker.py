"""The gRPC worker: leases tiles from a master, reads the sources itself by URI, runs
run_tile in threads (or a process pool), streams results back; heartbeats meanwhile; reconnects with
backoff when the master goes away; on stop, finishes what it holds and says goodbye."""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)

import grpc

from madrone.engine.memory import WORKER_FREE_MIB, release_freed_memory, reuse_freed_memory
from madrone.engine.plan import Plan, plan, tile_cache_mb
from madrone.engine.spec import JobSpec
from madrone.engine.tile import TileResult, TileTask, run_tile
from madrone.executors import one_thread_per_tile, set_tile_cache
from madrone.executors.grpc import madrone_pb2 as pb
from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc
from madrone.executors.grpc.wire import MAX_MESSAGE_BYTES, ResultIds, result_chunks
from madrone.grid import Tile

log = logging.getLogger("madrone.worker")
IDLE_SECONDS = 0.2
MAX_BACKOFF = 10.0


@functools.lru_cache(maxsize=4)
def _planned(spec_json: str) -> Plan:
    return plan(JobSpec.from_dict(json.loads(spec_json)), writes=False)


@functools.lru_cache(maxsize=4)
def _cache_mb(spec_json: str, mb_per_thread: int) -> int:
    planned = _planned(spec_json)
    return tile_cache_mb(planned.context, planned.tiles, mb_per_thread)


def execute(spec_json: str, tile: Tile, cache: tuple[int, int] | None = None) -> TileResult:
    """What a pool process runs: plan the job once (cached), size GDAL's block cache for
    it (``cache``: the setting per thread and the process's tile threads; None when the
    operator set GDAL_CACHEMAX), then the tile."""
    one_thread_per_tile()
    if cache is not None:
        mb_per_thread, threads = cache
        set_tile_cache(_cache_mb(spec_json, mb_per_thread), threads)
    release_freed_memory(WORKER_FREE_MIB)
    return run_tile(TileTask(_planned(spec_json).context, tile))


def open_channel(master: str, token: str | None, ca: bytes | None) -> grpc.Channel:
    """A channel to the master with message size limits, TLS and the token when given."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if ca is None:
        channel = grpc.insecure_channel(master, options=options)
    else:
        channel = grpc.secure_channel(master, grpc.ssl_channel_credentials(ca), options=options)
    if token:
        channel = grpc.intercept_channel(channel, _TokenClientInterceptor(token))
    return channel


class Worker:
    """One worker process: ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        master: str,
        concurrency: int = 1,
        token: str | None = None,
        ca: bytes | None = None,
        name: str | None = None,
        pool: str = "threads",
        gdal_cache_mb: int = 80,
    ) -> None:
        self.master, self.concurrency, self.token, self.ca = master, max(1, concurrency), token, ca
        self.pool, self.gdal_cache_mb = pool, gdal_cache_mb
        # Compress results only across a network; on this machine it costs CPU for nothing.
        self.compress = not master.startswith(("127.", "localhost", "[::1]"))
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.running: dict[Future, pb.TaskLease] = {}
        self.cache: tuple[int, int] | None = None  # for ``execute``, set by ``run``
        self.lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        """Work until stopped; reconnect with exponential backoff when the master is away."""
        # GDAL's block cache: per process, so the threads of a thread pool share the sum of
        # their shares (each process of a process pool has one thread's), sized per job.
        threads = self.concurrency if self.pool == "threads" else 1
        self.cache = None if "GDAL_CACHEMAX" in os.environ else (self.gdal_cache_mb, threads)
        reuse_freed_memory()
        with self._pool() as pool:
            backoff = 0.5
            while not stop.is_set():
                try:
                    self._session(pool, stop)
                    backoff = 0.5
                except grpc.RpcError as error:
                    log.warning("master %s unreachable (%s); retrying in %.1f s",
                                self.master, error.code(), backoff)  # fmt: skip
                    stop.wait(backoff)
                    backoff = min(MAX_BACKOFF, backoff * 2)

    def _pool(self) -> Executor:
        """Tiles run in threads of this process (GDAL, numexpr and numpy release the GIL;
        each thread keeps its own open datasets), or in a process pool when ``pool`` is
        ``processes`` and more than one runs at once."""
        if self.concurrency == 1 or self.pool == "threads":
            return ThreadPoolExecutor(self.concurrency, thread_name_prefix="madrone-tiles")
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        return ProcessPoolExecutor(self.concurrency, multiprocessing.get_context(method))

    def _session(self, pool: Executor, stop: threading.Event) -> None:
        with open_channel(self.master, self.token, self.ca) as channel:
            stub = pb_grpc.MasterStub(channel)
            hello = pb.Hello(worker=self.name, capacity=self.concurrency + 1)  # + prefetch
            welcome = stub.Register(hello)
            beating = threading.Event()
            heart = threading.Thread(
                target=self._heartbeat, args=(stub, welcome.heartbeat_seconds, beating), daemon=True
            )
            heart.start()
            try:
                while not stop.is_set():
                    self._lease_more(stub, pool)
                    self._send_finished(stub, timeout=IDLE_SECONDS)
                while self.running:  # stopping: finish what we hold, then say goodbye
                    self._send_finished(stub, timeout=1.0)
            finally:
                beating.set()
                # A heartbeat the master got after the goodbye counted the worker again.
                heart.join(timeout=welcome.heartbeat_seconds)
            stub.Leave(pb.Goodbye(worker=self.name))

    def _lease_more(self, stub: pb_grpc.MasterStub, pool: Executor) -> None:
        # One tile more than the slots: it starts the moment a slot frees, while the
        # finished tile's result is still being sent.
        free = self.concurrency + 1 - len(self.running)
        if free <= 0:
            return
        reply = stub.Lease(pb.LeaseRequest(worker=self.name, slots=free))
        for lease in reply.leases:
            tile = Tile(lease.row_off, lease.col_off, lease.height, lease.width)
            with self.lock:
                self.running[pool.submit(execute, lease.spec_json, tile, self.cache)] = lease
        if reply.no_work and not self.running:
            time.sleep(IDLE_SECONDS)

    def _send_finished(self, stub: pb_grpc.MasterStub, timeout: float) -> None:
        if not self.running:
            return
        finished, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            with self.lock:
                lease = self.running.pop(future)
            ids = ResultIds(lease.job, lease.task, lease.lease, self.name)
            try:
                result = future.result()
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
                stub.Fail(
                    pb.Failure(
                        job=lease.job,
                        task=lease.task,
                        lease=lease.lease,
                        worker=self.name,
                        error=message,
                    )
                )
                continue
            ack = stub.Complete(result_chunks(result, ids, compress=self.compress))
            if not ack.accepted and ack.reason:
                log.info("result of %s not used: %s", lease.task, ack.reason)

    def _heartbeat(self, stub: pb_grpc.MasterStub, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            with self.lock:
                held = [lease.lease for lease in self.running.values()]
            try:
                reply = stub.Heartbeat(pb.HeartbeatRequest(worker=self.name, leases=held))
            except grpc.RpcError:
                continue
            revoked = set(reply.revoked)
            with self.lock:
                for future, lease in list(self.running.items()):
                    if lease.lease in revoked and future.cancel():
                        del self.running[future]


class _TokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        metadata = [*(details.metadata or ()), self.header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)
