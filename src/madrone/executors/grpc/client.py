"""Submit a job to a running master and follow its progress."""

from __future__ import annotations

import json
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
) -> dict:
    """Run a job on a master; return its summary (products, statistics, warnings).

    Raises:
        InputError: the master refused the job (bad input) or is unreachable.
        ProcessingError: the job failed while running.
    """
    with open_channel(master, token, ca) as channel:
        stub = pb_grpc.MasterStub(channel)
        job = None
        try:
            for event in stub.Submit(pb.JobRequest(spec_json=json.dumps(spec.to_dict()))):
                job = event.job
                if progress and event.total and event.state != "queued":
                    progress(event.done, event.total)
                if event.state == "done":
                    return json.loads(event.result_json)
                if event.state in ("failed", "cancelled"):
                    error = InputError if event.done == 0 else ProcessingError
                    raise error(f"master {master}: job {event.state}: {event.message}")
        except KeyboardInterrupt:
            if job is not None:  # Ctrl-C on the client cancels the job on the master
                stub.Cancel(pb.CancelRequest(job=job), timeout=5)
            raise
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise InputError(f"master {master}: token refused") from None
            raise InputError(f"master {master}: {error.code().name} ({error.details()})") from None
    raise MadroneError(f"master {master} closed the job's stream before it ended")
