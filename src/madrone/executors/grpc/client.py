"""Submit a job to a running master and follow its progress."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable

import grpc

from madrone.engine.spec import JobSpec
from madrone.errors import InputError, MadroneError, ProcessingError
from madrone.executors.grpc import madrone_pb2 as pb
from madrone.executors.grpc import madrone_pb2_grpc as pb_grpc
from madrone.executors.grpc.worker import open_channel


def submit(
    spec: JobSpec,
    master: str,
    token: str | None = None,
    ca: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Run a job on a master; return its summary (products, statistics, warnings). Ctrl-C,
    or ``cancel`` being set by another thread, cancels the job on the master.

    Raises:
        InputError: the master refused the job or is unreachable.
        ProcessingError: the job failed while running.
        RunCancelled: ``cancel`` was set.
    """
    with open_channel(master, token, ca) as channel:
        stub = pb_grpc.MasterStub(channel)
        call = stub.Submit(pb.JobRequest(spec_json=json.dumps(spec.to_dict())))
        job, followed = None, threading.Event()
        if cancel is not None:
            threading.Thread(target=_end_when_set, args=(call, cancel, followed),
                             name="madrone-submit-cancel", daemon=True).start()  # fmt: skip
        try:
            for event in call:
                job = event.job
                if progress and event.total and event.state != "queued":
                    progress(event.done, event.total)
                if event.state == "done":
                    return json.loads(event.result_json)
                if event.state in ("failed", "cancelled"):
                    error = InputError if event.done == 0 else ProcessingError
                    raise error(f"master {master}: job {event.state}: {event.message}")
        except KeyboardInterrupt:
            _cancel_job(stub, job)
            raise
        except grpc.RpcError as error:
            if cancel is not None and cancel.is_set():
                from madrone.engine.run import RunCancelled

                _cancel_job(stub, job)
                raise RunCancelled(f"master {master}: job {job} cancelled") from None
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise InputError(f"master {master}: token refused") from None
            raise InputError(f"master {master}: {error.code().name} ({error.details()})") from None
        finally:
            followed.set()
    raise MadroneError(f"master {master} closed the job's stream before it ended")


def _end_when_set(call: grpc.Future, cancel: threading.Event, followed: threading.Event) -> None:
    """Cancel the job's stream once ``cancel`` is set, so the caller's wait for its next
    event ends (a queued job may send none for long)."""
    while not followed.is_set():
        if cancel.wait(0.25):
            call.cancel()
            return


def _cancel_job(stub: pb_grpc.MasterStub, job: str | None) -> None:
    """Cancel the job on the master; a job whose first event never came has no id to name
    (the master then finishes it)."""
    if job is None:
        return
    with contextlib.suppress(grpc.RpcError):  # a master gone meanwhile has no job to cancel
        stub.Cancel(pb.CancelRequest(job=job), timeout=5)
