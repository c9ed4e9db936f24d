"""The messages of the lease state machine: events (what the master's shell saw) and
actions (what it must do). Plain frozen values; see ``leases.py`` for the machine."""

from __future__ import annotations

from dataclasses import dataclass

# Events: what the shell saw.


@dataclass(frozen=True)
class WorkerJoined:
    """A worker registers (again, after a restart) with room for `capacity` tasks."""

    worker: str
    now: float
    capacity: int = 1


@dataclass(frozen=True)
class WorkRequested:
    """A worker asks for up to `slots` tasks."""

    worker: str
    now: float
    slots: int = 1


@dataclass(frozen=True)
class Heartbeat:
    """A worker is alive; the deadlines of all its leases move to now + lease_seconds."""

    worker: str
    now: float


@dataclass(frozen=True)
class TaskDone:
    """A worker finished a task under a lease and holds its result."""

    worker: str
    task: str
    lease: int
    now: float


@dataclass(frozen=True)
class TaskFailed:
    """A worker's attempt at a task raised; `error` is the message it reported."""

    worker: str
    task: str
    lease: int
    error: str
    now: float


@dataclass(frozen=True)
class WorkerLeft:
    """A worker shuts down gracefully and hands back its leases."""

    worker: str
    now: float


@dataclass(frozen=True)
class Tick:
    """Time passes: look for expired leases and silent workers."""

    now: float


@dataclass(frozen=True)
class Cancel:
    """The job is cancelled; outstanding leases are revoked."""

    now: float
    reason: str = "cancelled"


Event = (
    WorkerJoined | WorkRequested | Heartbeat | TaskDone | TaskFailed | WorkerLeft | Tick | Cancel
)


# Actions: what the shell must do.


@dataclass(frozen=True)
class Lease:
    """Send `task` to `worker` under lease id `lease`, valid until `deadline`."""

    worker: str
    task: str
    lease: int
    deadline: float
    speculative: bool = False


@dataclass(frozen=True)
class Revoke:
    """Tell `worker` to drop `task` (lease `lease`); its result is no longer needed."""

    worker: str
    task: str
    lease: int
    reason: str


@dataclass(frozen=True)
class Accept:
    """Write this worker's result for `task`: the first result, the only one written."""

    task: str
    worker: str


@dataclass(frozen=True)
class Ignore:
    """Acknowledge a duplicate or late result for `task`, and do not write it."""

    task: str
    worker: str
    reason: str


@dataclass(frozen=True)
class Reject:
    """Refuse a message from `worker` (unknown worker, task or lease; job over)."""

    worker: str
    reason: str


@dataclass(frozen=True)
class WorkerLost:
    """`worker` is presumed dead or has left; `requeued` are the tasks put back in the queue."""

    worker: str
    reason: str
    requeued: tuple[str, ...]


@dataclass(frozen=True)
class JobFailed:
    """`task` failed max_attempts times; `errors` are (worker, message) for every attempt."""

    task: str
    errors: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class JobCancelled:
    """The job was cancelled."""

    reason: str


@dataclass(frozen=True)
class JobDone:
    """Every task has an accepted result."""


Action = Lease | Revoke | Accept | Ignore | Reject | WorkerLost | JobFailed | JobCancelled | JobDone
