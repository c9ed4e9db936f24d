"""The gRPC master: a thin shell around the lease state machine and a RunSession.

Clients submit jobs (JobSpec JSON) over gRPC, or an in-process caller (the database-driven
service) hands them to ``MasterService.run_job``; jobs run one at a time, in order. Only
network clients are held to ``MADRONE_MASTER_ROOTS``: the service writes into its own
staging folder, never into a client's paths. Workers register,
lease tiles, heartbeat, and stream results back; every message becomes an event for the
job's ``LeaseMachine`` under one lock, and its actions are applied here: results accepted
are written by the job's RunSession, revoked leases are told to workers at their next
heartbeat, a finished job is encoded and published in a background thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from rasterio.env import set_gdal_config

from madrone.config import Settings
from madrone.engine.memory import reuse_freed_memory
from madrone.engine.plan import Plan, plan
from madrone.engine.run import (
    STAGING_CACHE_MB,
    Progress,
    RunCancelled,
    RunResult,
    RunSession,
    emit_warnings,
)
from madrone.engine.spec import JobSpec
from madrone.errors import InputError, MadroneError, ProcessingError
from madrone.executors.grpc import leases
from madrone.executors.grpc import madrone_pb2 as pb
from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc
from madrone.executors.grpc.wire import MAX_CHUNK_BYTES, MAX_MESSAGE_BYTES, result_from_chunks
from madrone.grid import Tile
from madrone.sources.spec import REMOTE_PREFIXES

log = logging.getLogger("madrone.master")
TERMINAL = ("done", "failed", "cancelled")
TICK_SECONDS = 0.5


@dataclass
class Job:
    """One submitted job and everything the master tracks about it."""

    id: str
    spec_json: str
    plan: Plan
    machine: leases.LeaseMachine | None = None
    session: RunSession | None = None
    state: str = "queued"
    message: str = ""
    writing: int = 0
    result_json: str = ""
    events: list[pb.JobEvent] = field(default_factory=list)
    tiles: dict[str, Tile] = field(default_factory=dict)
    result: RunResult | None = None
    error: MadroneError | None = None  # why it failed, when a MadroneError says it
    cancel_requested: bool = False  # asked while its last tiles were being written


class MasterService(pb_grpc.MasterServicer):
    """All RPCs; state guarded by one condition variable."""

    def __init__(
        self,
        settings: Settings,
        config: leases.LeaseConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.config, self.clock = settings, config or leases.LeaseConfig(), clock
        self.roots = [
            os.path.realpath(root)
            for root in (settings.master_roots or os.getcwd()).split(os.pathsep)
            if root
        ]
        self.cond = threading.Condition(threading.RLock())
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.active: Job | None = None
        self.workers: dict[str, int] = {}
        self.seen: dict[str, float] = {}  # worker -> when it last called, by self.clock
        self.revoked: dict[str, set[int]] = {}
        self.write_lock = threading.Lock()
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._tick_forever, daemon=True)
        self.ticker.start()

    # --- workers -------------------------------------------------------------------------

    def Register(self, request: pb.Hello, context) -> pb.Welcome:
        with self.cond:
            self.workers[request.worker] = max(1, request.capacity)
            self.seen[request.worker] = self.clock()
            self._feed(leases.WorkerJoined(request.worker, self.clock(), request.capacity))
        log.info("worker %s joined (capacity %d)", request.worker, request.capacity)
        return pb.Welcome(
            heartbeat_seconds=self.config.heartbeat_timeout / 3, max_chunk_bytes=MAX_CHUNK_BYTES
        )

    def Lease(self, request: pb.LeaseRequest, context) -> pb.LeaseReply:
        with self.cond:
            self.seen[request.worker] = self.clock()
            job = self.active
            if job is None or job.machine is None or job.machine.is_finished or request.slots < 1:
                return pb.LeaseReply(no_work=True)
            event = leases.WorkRequested(request.worker, self.clock(), request.slots)
            actions = self._feed(event)
            if any(isinstance(a, leases.Reject) for a in actions):
                self._rejoin(request.worker)
                actions = self._feed(event)
            granted = [
                pb.TaskLease(
                    job=job.id, spec_json=job.spec_json, task=a.task, lease=a.lease,
                    row_off=job.tiles[a.task].row_off, col_off=job.tiles[a.task].col_off,
                    height=job.tiles[a.task].height, width=job.tiles[a.task].width,
                )
                for a in actions
                if isinstance(a, leases.Lease)
            ]  # fmt: skip
            return pb.LeaseReply(leases=granted, no_work=not granted)

    def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatReply:
        with self.cond:
            self.seen[request.worker] = self.clock()
            actions = self._feed(leases.Heartbeat(request.worker, self.clock()))
            if any(isinstance(a, leases.Reject) for a in actions):
                self._rejoin(request.worker)
            revoked = self.revoked.pop(request.worker, set())
            active = self.active
            live = (
                set(active.machine.leases_of(request.worker))
                if active and active.machine
                else set()
            )
            revoked |= {lease for lease in request.leases if lease not in live}
            return pb.HeartbeatReply(revoked=sorted(revoked))

    def Complete(self, request_iterator: Iterator[pb.ResultChunk], context) -> pb.Ack:
        with self.cond:
            job = self.active
        if job is None:
            return pb.Ack(accepted=False, reason="no job is running")
        try:
            ids, result = result_from_chunks(request_iterator, job.tiles.get)
        except MadroneError as error:
            return pb.Ack(accepted=False, reason=str(error))
        if ids.job != job.id:
            return pb.Ack(accepted=False, reason=f"job {ids.job} is not running")
        with self.cond:
            actions = self._feed(leases.TaskDone(ids.worker, ids.task, ids.lease, self.clock()))
            accepted = any(isinstance(a, leases.Accept) for a in actions)
            if accepted:
                job.writing += 1  # finishing waits until every accepted tile is written
        if accepted:
            try:
                with self.write_lock:
                    if job.state not in TERMINAL:
                        job.session.add(result)
            finally:
                with self.cond:
                    job.writing -= 1
                    self._event(job, "running")
                    if job.state == "finishing" and job.writing == 0:
                        job.state = "encoding"
                        threading.Thread(target=self._finish, args=(job,), daemon=True).start()
        reason = next((a.reason for a in actions if hasattr(a, "reason")), "")
        return pb.Ack(accepted=accepted, reason=reason)

    def Fail(self, request: pb.Failure, context) -> pb.Ack:
        with self.cond:
            event = leases.TaskFailed(
                request.worker, request.task, request.lease, request.error, self.clock()
            )
            actions = self._feed(event)
        return pb.Ack(accepted=not any(isinstance(a, leases.Reject) for a in actions))

    def Leave(self, request: pb.Goodbye, context) -> pb.Ack:
        with self.cond:
            self.workers.pop(request.worker, None)
            self.seen.pop(request.worker, None)
            self._feed(leases.WorkerLeft(request.worker, self.clock()))
        log.info("worker %s left", request.worker)
        return pb.Ack(accepted=True)

    # --- clients -------------------------------------------------------------------------

    def Submit(self, request: pb.JobRequest, context) -> Iterator[pb.JobEvent]:
        try:
            spec = JobSpec.from_dict(json.loads(request.spec_json))
            check_paths(spec, self.roots)
            checked = plan(spec, settings=self.settings)
        except (ValueError, TypeError, KeyError) as error:
            job_id = uuid.uuid4().hex[:12]
            yield pb.JobEvent(job=job_id, state="failed", message=f"bad job spec: {error}")
            return
        except MadroneError as error:
            yield pb.JobEvent(job=uuid.uuid4().hex[:12], state="failed", message=str(error))
            return
        job = self._enqueue(checked)
        yield from self._follow(job, context)

    def Cancel(self, request: pb.CancelRequest, context) -> pb.Ack:
        with self.cond:
            job = self.jobs.get(request.job)
            if job is None or job.state in TERMINAL:
                return pb.Ack(accepted=False, reason=f"no running job {request.job}")
            self._cancel(job, "cancelled by a client")
            return pb.Ack(accepted=True)

    # --- in-process callers --------------------------------------------------------------

    def run_job(
        self,
        spec: JobSpec,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run a job for a caller in this process (the database-driven service) and wait.

        Unlike ``Submit``, the spec's paths are not held to ``MADRONE_MASTER_ROOTS``: the
        caller chose them (its own staging folder), no network client did. Every other
        preflight check applies, and the job queues with the clients' jobs.

        Args:
            spec: the job.
            progress: called with (tiles done, tiles total) in the caller's thread; an
                exception it raises cancels the job, then reaches the caller.
            cancel: set it from any thread to cancel the job.

        Returns:
            The products, dates and warnings (raised here as Python warnings too).

        Raises:
            MadroneError: the spec fails preflight (raised by ``plan``, nothing queued).
            RunCancelled: ``cancel`` was set, a client cancelled the job, or the master is
                stopping. Its leases are revoked and its staging files removed first.
            ProcessingError: the job failed while running.
        """
        job = self._enqueue(plan(spec, settings=self.settings))
        try:
            self._await(job, progress, cancel)
        except BaseException:
            self._cancel(job, "cancelled by the caller", wait=True)
            raise
        return self._outcome(job)

    def worker_count(self) -> int:
        """Workers heard from within the heartbeat timeout (a killed worker stops counting
        then); with none, a caller may run its job on the local pool instead."""
        with self.cond:
            now = self.clock()
            limit = self.config.heartbeat_timeout
            return sum(1 for when in self.seen.values() if now - when <= limit)

    # --- internals -----------------------------------------------------------------------

    def _enqueue(self, checked: Plan) -> Job:
        # Workers get the planned spec: a catalog search is resolved once, here.
        planned = json.dumps(checked.spec.to_dict())
        job = Job(uuid.uuid4().hex[:12], planned, checked, tiles={t.key: t for t in checked.tiles})
        with self.cond:
            self.jobs[job.id] = job
            self.queue.append(job.id)
            self._event(job, "queued")
            self._activate_next()
        return job

    def _await(self, job: Job, progress: Progress | None, cancel: threading.Event | None) -> None:
        """Wait for a job to end, reporting progress; raise RunCancelled when asked to."""
        reported = None
        while True:
            with self.cond:
                if job.state not in TERMINAL:
                    self.cond.wait(TICK_SECONDS)
                state, done = job.state, job.machine.done if job.machine else 0
            if progress is not None and job.machine is not None and done != reported:
                reported = done
                progress(done, len(job.tiles))
            if state in TERMINAL:
                return
            if cancel is not None and cancel.is_set():
                raise RunCancelled(f"job {job.id} ({job.plan.name}): cancelled by the caller")
            if self.stopping.is_set():
                raise RunCancelled(f"job {job.id} ({job.plan.name}): the master is stopping")

    def _cancel(self, job: Job, reason: str, wait: bool = False) -> None:
        """End a job that has not ended: leases revoked, staging files removed. Once every
        tile is written it can still be stopped before encoding, not during it; ``wait``
        blocks until it has ended either way."""
        with self.cond:
            if job.state in TERMINAL:
                return
            if job.machine is None:
                self.queue.remove(job.id)
                self._end(job, "cancelled", f"{reason} before it started")
            elif not job.machine.is_finished:
                self._feed(leases.Cancel(self.clock(), reason))
            else:
                job.cancel_requested = True
            while wait and job.state not in TERMINAL:
                self.cond.wait(TICK_SECONDS)

    def _outcome(self, job: Job) -> RunResult:
        """A finished job's result (its warnings raised here), or the error it ended with."""
        if job.state == "done" and job.result is not None:
            emit_warnings(job.result)
            return job.result
        if job.state == "cancelled":
            raise RunCancelled(f"job {job.id} ({job.plan.name}): {job.message}")
        if job.error is not None:
            raise job.error
        raise ProcessingError(f"job {job.id} ({job.plan.name}) failed: {job.message}")

    def _follow(self, job: Job, context) -> Iterator[pb.JobEvent]:
        seen = 0
        while True:
            with self.cond:
                while seen == len(job.events) and not self.stopping.is_set():
                    self.cond.wait(1.0)
                    if not context.is_active():
                        return
                new, seen = job.events[seen:], len(job.events)
            yield from new
            if any(event.state in TERMINAL for event in new) or self.stopping.is_set():
                return

    def _activate_next(self) -> None:
        if self.active is not None or not self.queue:
            return
        job = self.jobs[self.queue.popleft()]
        # The block cache the master reads its staging files through (the PNG, the counts'
        # overviews); left to GDAL, 5 % of RAM.
        set_gdal_config("GDAL_CACHEMAX", STAGING_CACHE_MB * 2**20)
        try:
            job.session = RunSession(
                job.plan,
                threads=self.settings.resolved_workers(),
                zlevel=self.settings.cog_zlevel,
                codec=self.settings.cog_codec,
                png_max_size=self.settings.png_max_size,
            )
        except (MadroneError, OSError) as error:
            job.error = error if isinstance(error, MadroneError) else None
            self._end(job, "failed", str(error))
            self._activate_next()
            return
        done = [tile.key for tile in job.session.done]  # resumed from an interrupted run
        job.machine = leases.LeaseMachine(list(job.tiles), self.config, done=done)
        self.active = job
        self._event(job, "running", f"resuming: {len(done)} tiles already done" if done else "")
        now = self.clock()
        for worker, capacity in self.workers.items():
            self._feed(leases.WorkerJoined(worker, now, capacity))
        self._feed(leases.Tick(now))
        if job.state == "finishing":  # everything was done before the restart
            job.state = "encoding"
            threading.Thread(target=self._finish, args=(job,), daemon=True).start()

    def _rejoin(self, worker: str) -> None:
        self.workers.setdefault(worker, 1)
        self._feed(leases.WorkerJoined(worker, self.clock(), self.workers[worker]))

    def _feed(self, event: leases.Event) -> list[leases.Action]:
        job = self.active
        if job is None or job.machine is None:
            return []
        actions = job.machine.handle(event)
        for action in actions:
            self._apply(job, action)
        return actions

    def _apply(self, job: Job, action: leases.Action) -> None:
        if isinstance(action, leases.Lease) and action.speculative:
            log.info("tile %s leased again to %s (speculative)", action.task, action.worker)
        elif isinstance(action, leases.Revoke):
            self.revoked.setdefault(action.worker, set()).add(action.lease)
        elif isinstance(action, leases.WorkerLost):
            log.warning("worker %s lost (%s); re-queued %s", action.worker, action.reason,
                        ", ".join(action.requeued) or "nothing")  # fmt: skip
        elif isinstance(action, leases.JobFailed):
            errors = "; ".join(f"{worker}: {message}" for worker, message in action.errors)
            self._end(job, "failed", f"tile {action.task} failed: {errors}")
        elif isinstance(action, leases.JobCancelled):
            self._end(job, "cancelled", action.reason)
        elif isinstance(action, leases.JobDone):
            job.state = "finishing"

    def _finish(self, job: Job) -> None:
        with self.cond:
            if job.cancel_requested:
                self._end(job, "cancelled", "cancelled before its products were encoded")
                return
            self._event(job, "finishing")
        try:
            with self.write_lock:
                result = job.session.finish()
        except (MadroneError, OSError) as error:
            with self.cond:
                job.error = error if isinstance(error, MadroneError) else None
                self._end(job, "failed", str(error))
            return
        for message in result.warnings:
            log.warning("job %s: %s", job.id, message)
        with self.cond:
            job.result, job.result_json = result, json.dumps(result_summary(result))
            self._end(job, "done", f"products in {result.output_dir}")

    def _end(self, job: Job, state: str, message: str) -> None:
        job.state, job.message = state, message
        if job.session is not None:
            # Under the write lock: a tile being written must not race the removal. Nobody
            # takes the condition while holding the write lock, so this order cannot deadlock.
            with self.write_lock:
                job.session.abort()
        self._event(job, state, message)
        if self.active is job:
            self.active = None
            self.revoked.clear()
            self._activate_next()

    def _event(self, job: Job, state: str, message: str = "") -> None:
        machine = job.machine
        done = machine.done if machine else 0
        job.events.append(
            pb.JobEvent(job=job.id, state=state, done=done, total=len(job.tiles),
                        message=message, result_json=job.result_json)
        )  # fmt: skip
        self.cond.notify_all()

    def _tick_forever(self) -> None:
        while not self.stopping.wait(TICK_SECONDS):
            with self.cond:
                self._feed(leases.Tick(self.clock()))

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()


def check_paths(spec: JobSpec, roots: list[str]) -> None:
    """Refuse local paths outside the master's roots: a client must not make the master
    read or write arbitrary files. URLs (GDAL virtual file systems) are the sources' own."""
    paths = [("output folder", spec.output_dir)]
    if spec.search is not None:
        paths.append(("catalog", spec.search.catalog))
    for source in spec.sources:
        paths += [("source", source.path)] if source.path else []
        paths += [("band file", path) for path in source.bands.values()]
        if source.item is not None:
            assets = (source.item.get("assets") or {}).values()
            paths += [("STAC asset", str(a.get("href", ""))) for a in assets if isinstance(a, dict)]
    real_roots = [os.path.realpath(root) for root in roots]
    for what, path in paths:
        if path.startswith(REMOTE_PREFIXES):
            if path.startswith("/vsi") and not path.startswith(
                ("/vsicurl/", "/vsis3/", "/vsiaz/", "/vsigs/")
            ):
                raise InputError(f"{what} {path}: only /vsicurl/, /vsis3/, /vsiaz/, /vsigs/ URLs")
            continue
        real = os.path.realpath(path)
        if not any(os.path.commonpath([real, root]) == root for root in real_roots):
            raise InputError(
                f"{what} {path} is outside the folders this master serves "
                f"({os.pathsep.join(roots)}; set MADRONE_MASTER_ROOTS)"
            )


def result_summary(result: RunResult) -> dict:
    """What a client is told about finished products: paths, statistics, warnings."""
    return {
        "name": result.name,
        "output_dir": result.output_dir,
        "warnings": result.warnings,
        "datetime": _iso(result.datetime),
        "start_datetime": _iso(result.start_datetime),
        "end_datetime": _iso(result.end_datetime),
        "products": {
            key: {"files": product.files, "stats": product.stats}
            for key, product in result.products.items()
        },
    }


def _iso(moment: object) -> str | None:
    return None if moment is None else moment.isoformat()


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call without ``authorization: Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        self.deny = deny

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") == self.expected:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: self.deny(None, ctx))
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(lambda it, ctx: self.deny(None, ctx))
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self.deny)
        return grpc.unary_unary_rpc_method_handler(self.deny)


def serve(
    listen: str,
    settings: Settings,
    token: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
    config: leases.LeaseConfig | None = None,
) -> tuple[grpc.Server, MasterService, int]:
    """Start a master on ``listen`` (host:port; port 0 picks one); return server, service
    and the bound port."""
    reuse_freed_memory()  # before the server's threads start allocating
    service = MasterService(settings, config)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        interceptors=[TokenInterceptor(token)] if token else [],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    pb_grpc.add_MasterServicer_to_server(service, server)
    if tls:
        key, certificate = tls
        port = server.add_secure_port(listen, grpc.ssl_server_credentials([(key, certificate)]))
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise MadroneError(f"--listen {listen}: cannot bind that address")
    server.start()
    return server, service, port
