"""The gRPC master: a thin shell around the lease state machine and a RunSession.

Clients submit jobs (JobSpec JSON); jobs run one at a time, in order. Workers register,
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

from madrone.config import Settings
from madrone.engine.plan import Plan, plan
from madrone.engine.run import RunResult, RunSession
from madrone.engine.spec import JobSpec
from madrone.errors import InputError, MadroneError
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
        self.revoked: dict[str, set[int]] = {}
        self.write_lock = threading.Lock()
        self.stopping = threading.Event()
        self.ticker = threading.Thread(target=self._tick_forever, daemon=True)
        self.ticker.start()

    # --- workers -------------------------------------------------------------------------

    def Register(self, request: pb.Hello, context) -> pb.Welcome:
        with self.cond:
            self.workers[request.worker] = max(1, request.capacity)
            self._feed(leases.WorkerJoined(request.worker, self.clock(), request.capacity))
        log.info("worker %s joined (capacity %d)", request.worker, request.capacity)
        return pb.Welcome(
            heartbeat_seconds=self.config.heartbeat_timeout / 3, max_chunk_bytes=MAX_CHUNK_BYTES
        )

    def Lease(self, request: pb.LeaseRequest, context) -> pb.LeaseReply:
        with self.cond:
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
            self._feed(leases.WorkerLeft(request.worker, self.clock()))
        log.info("worker %s left", request.worker)
        return pb.Ack(accepted=True)

    # --- clients -------------------------------------------------------------------------

    def Submit(self, request: pb.JobRequest, context) -> Iterator[pb.JobEvent]:
        job_id = uuid.uuid4().hex[:12]
        try:
            spec = JobSpec.from_dict(json.loads(request.spec_json))
            check_paths(spec, self.roots)
            checked = plan(spec, settings=self.settings)
        except (ValueError, TypeError, KeyError) as error:
            yield pb.JobEvent(job=job_id, state="failed", message=f"bad job spec: {error}")
            return
        except MadroneError as error:
            yield pb.JobEvent(job=job_id, state="failed", message=str(error))
            return
        # Workers get the planned spec: a catalog search is resolved once, here.
        planned = json.dumps(checked.spec.to_dict())
        job = Job(job_id, planned, checked, tiles={t.key: t for t in checked.tiles})
        with self.cond:
            self.jobs[job_id] = job
            self.queue.append(job_id)
            self._event(job, "queued")
            self._activate_next()
        yield from self._follow(job, context)

    def Cancel(self, request: pb.CancelRequest, context) -> pb.Ack:
        with self.cond:
            job = self.jobs.get(request.job)
            if job is None or job.state in TERMINAL:
                return pb.Ack(accepted=False, reason=f"no running job {request.job}")
            if job.machine is None:
                self.queue.remove(job.id)
                self._end(job, "cancelled", "cancelled before it started")
            else:
                self._feed(leases.Cancel(self.clock(), "cancelled by a client"))
            return pb.Ack(accepted=True)

    # --- internals -----------------------------------------------------------------------

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
        try:
            job.session = RunSession(
                job.plan,
                threads=self.settings.resolved_workers(),
                zlevel=self.settings.cog_zlevel,
                png_max_size=self.settings.png_max_size,
                gdal_cache_mb=self.settings.gdal_cache_mb,
            )
        except (MadroneError, OSError) as error:
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
            self._event(job, "finishing")
        try:
            with self.write_lock:
                result = job.session.finish()
        except (MadroneError, OSError) as error:
            with self.cond:
                self._end(job, "failed", str(error))
            return
        with self.cond:
            job.result_json = json.dumps(result_summary(result))
            self._end(job, "done", f"products in {result.output_dir}")

    def _end(self, job: Job, state: str, message: str) -> None:
        job.state, job.message = state, message
        if job.session is not None:
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
        "products": {
            key: {"files": product.files, "stats": product.stats}
            for key, product in result.products.items()
        },
    }


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
