"""The gRPC master's lease bookkeeping as a pure state machine: events in, actions out
(the messages are in ``events.py``).

No sockets, threads or clocks (the dask/distributed ``worker_state_machine`` style): the
master's network shell turns RPCs into events, feeds them to `LeaseMachine.handle`, and turns
the returned actions into replies. Every event carries the time. Time-based checks (expired
leases, silent workers) run only on `Tick`, so the shell decides how often to look.

Tile writes are idempotent, so the machine is free to run a task twice (lease expiry,
speculation) as long as exactly one result is accepted per task.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from madrone.errors import InputError
from madrone.executors.grpc.events import (  # re-exported: leases.Lease, leases.Tick ...
    Accept,
    Action,
    Cancel,
    Event,
    Heartbeat,
    Ignore,
    JobCancelled,
    JobDone,
    JobFailed,
    Lease,
    Reject,
    Revoke,
    TaskDone,
    TaskFailed,
    Tick,
    WorkerJoined,
    WorkerLeft,
    WorkerLost,
    WorkRequested,
)


@dataclass(frozen=True)
class LeaseConfig:
    """Timings (seconds) and limits of the lease protocol."""

    lease_seconds: float = 15.0
    heartbeat_timeout: float = 6.0
    max_attempts: int = 3
    speculate_factor: float = 3.0
    speculate_min_done: int = 5

    def __post_init__(self) -> None:
        for name in ("lease_seconds", "heartbeat_timeout", "speculate_factor"):
            if not getattr(self, name) > 0:
                raise InputError(f"LeaseConfig.{name} must be positive, not {getattr(self, name)}")
        for name in ("max_attempts", "speculate_min_done"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"LeaseConfig.{name} must be at least 1, not {getattr(self, name)}"
                )


@dataclass(slots=True)
class _Lease:
    worker: str
    task: str
    start: float
    deadline: float
    speculative: bool
    active: bool = True
    reported: bool = False


@dataclass(slots=True)
class _Worker:
    capacity: int
    last_seen: float
    leases: set[int] = field(default_factory=set)
    alive: bool = True


class LeaseMachine:
    """Leases tasks to workers, notices lost workers, retries, speculates; pure and in memory.

    Args:
        tasks: the job's task ids (tile keys), in the order they should be handed out.
        config: timings and limits.
        done: task ids already done (persisted progress); they are never leased.
    """

    def __init__(
        self, tasks: Sequence[str], config: LeaseConfig | None = None, done: Iterable[str] = ()
    ) -> None:
        self.config = config or LeaseConfig()
        self._tasks = frozenset(tasks)
        if len(self._tasks) != len(tasks):
            raise InputError("task ids must be unique")
        self._done = set(done)
        if unknown := self._done - self._tasks:
            raise InputError(f"done task ids are not in the job: {sorted(unknown)}")
        self._queue = deque(task for task in tasks if task not in self._done)
        self._queued = set(self._queue)
        self._workers: dict[str, _Worker] = {}
        self._leases: dict[int, _Lease] = {}
        self._active: dict[str, set[int]] = {}  # task -> its active lease ids
        self._errors: dict[str, list[tuple[str, str]]] = {}
        self._durations: list[float] = []  # sorted, for the median
        self._next_lease = 1
        self._finished = False

    @property
    def pending(self) -> int:
        """Tasks waiting in the queue."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Tasks with at least one active lease."""
        return len(self._active)

    @property
    def done(self) -> int:
        """Tasks with an accepted result (including those done before a resume)."""
        return len(self._done)

    @property
    def is_finished(self) -> bool:
        """Whether the job is done, failed or cancelled."""
        return self._finished

    def leases_of(self, worker: str) -> frozenset[int]:
        """Active lease ids of `worker`; empty for an unknown, lost or departed worker."""
        state = self._workers.get(worker)
        return frozenset(state.leases) if state else frozenset()

    def handle(self, event: Event) -> list[Action]:
        """Apply one event and return the actions the shell must carry out, in order."""
        match event:
            case WorkerJoined():
                actions = self._on_joined(event)
            case WorkRequested():
                actions = self._on_work_requested(event)
            case Heartbeat():
                actions = self._on_heartbeat(event)
            case TaskDone():
                actions = self._on_done(event)
            case TaskFailed():
                actions = self._on_failed(event)
            case WorkerLeft():
                actions = self._on_left(event)
            case Tick():
                actions = self._on_tick(event)
            case Cancel():
                actions = self._on_cancel(event)
            case _:
                raise TypeError(f"not a lease event: {event!r}")
        if not self._finished and len(self._done) == len(self._tasks):
            self._finished = True
            actions.append(JobDone())
        return actions

    # Event handlers.

    def _on_joined(self, event: WorkerJoined) -> list[Action]:
        if event.capacity < 1:
            return [Reject(event.worker, f"capacity must be at least 1, not {event.capacity}")]
        actions: list[Action] = []
        old = self._workers.get(event.worker)
        if old is not None and old.alive:
            # A restarted process reusing its name has forgotten its earlier leases.
            actions += self._lose(event.worker, "rejoined")
        self._workers[event.worker] = _Worker(event.capacity, event.now)
        return actions

    def _on_work_requested(self, event: WorkRequested) -> list[Action]:
        if reject := self._check_live(event.worker):
            return [reject]
        if self._finished:
            return [Reject(event.worker, "job is over")]
        worker = self._workers[event.worker]
        worker.last_seen = event.now
        free = min(event.slots, worker.capacity - len(worker.leases))
        actions: list[Action] = []
        while free > 0 and self._queue:
            task = self._pop_for(event.worker)
            actions.append(self._grant(event.worker, task, event.now, speculative=False))
            free -= 1
        if free > 0:
            actions += self._speculate(event.worker, event.now, free)
        return actions

    def _on_heartbeat(self, event: Heartbeat) -> list[Action]:
        if reject := self._check_live(event.worker):
            return [reject]
        worker = self._workers[event.worker]
        worker.last_seen = event.now
        for lease_id in worker.leases:
            self._leases[lease_id].deadline = event.now + self.config.lease_seconds
        return []

    def _on_done(self, event: TaskDone) -> list[Action]:
        if ignored := self._take_report(event.worker, event.task, event.lease, event.now):
            return [ignored]
        self._done.add(event.task)
        bisect.insort(self._durations, event.now - self._leases[event.lease].start)
        if event.task in self._queued:
            self._queue.remove(event.task)
            self._queued.discard(event.task)
        revokes = self._revoke(sorted(self._active.get(event.task, ())), "done by another worker")
        return [Accept(event.task, event.worker), *revokes]

    def _on_failed(self, event: TaskFailed) -> list[Action]:
        if ignored := self._take_report(event.worker, event.task, event.lease, event.now):
            return [ignored]
        errors = self._errors.setdefault(event.task, [])
        errors.append((event.worker, event.error))
        if len(errors) >= self.config.max_attempts:
            self._finished = True
            return [*self._revoke_all("job failed"), JobFailed(event.task, tuple(errors))]
        if event.task not in self._active and event.task not in self._queued:
            self._queue.appendleft(event.task)
            self._queued.add(event.task)
        return []

    def _on_left(self, event: WorkerLeft) -> list[Action]:
        if event.worker not in self._workers:
            return [Reject(event.worker, f"unknown worker {event.worker!r}")]
        if not self._workers[event.worker].alive:
            return []
        return self._lose(event.worker, "left")

    def _on_tick(self, event: Tick) -> list[Action]:
        if self._finished:
            return []
        actions: list[Action] = []
        for name, worker in list(self._workers.items()):
            if not worker.alive:
                continue
            silent = event.now - worker.last_seen
            expired = [i for i in sorted(worker.leases) if self._leases[i].deadline < event.now]
            if silent > self.config.heartbeat_timeout:
                actions += self._lose(name, f"no heartbeat for {silent:g} s")
            elif expired:
                actions += self._lose(name, f"lease {expired[0]} expired")
        return actions

    def _on_cancel(self, event: Cancel) -> list[Action]:
        if self._finished:
            return []
        self._finished = True
        return [*self._revoke_all("job cancelled"), JobCancelled(event.reason)]

    # Helpers.

    def _check_live(self, name: str) -> Reject | None:
        """A rejection unless `name` is a joined worker that was not lost since."""
        worker = self._workers.get(name)
        if worker is None:
            return Reject(name, f"unknown worker {name!r}; join first")
        if not worker.alive:
            return Reject(name, f"worker {name!r} was lost or left; join again")
        return None

    def _take_report(self, name: str, task: str, lease_id: int, now: float) -> Action | None:
        """Validate a result report and close its lease; an action if it goes no further.

        Reports under a revoked or expired lease still count (first result wins), so only a
        lease never granted to this worker for this task is rejected.
        """
        if name not in self._workers:
            return Reject(name, f"unknown worker {name!r}")
        if task not in self._tasks:
            return Reject(name, f"unknown task {task!r}")
        lease = self._leases.get(lease_id)
        if lease is None or lease.worker != name or lease.task != task:
            return Reject(name, f"lease {lease_id} was not granted to {name!r} for {task!r}")
        worker = self._workers[name]
        if worker.alive:
            worker.last_seen = now
        if lease.reported:
            return Ignore(task, name, f"lease {lease_id} already reported")
        lease.reported = True
        self._end(lease_id)
        if task in self._done:
            return Ignore(task, name, "already done")
        if self._finished:
            return Ignore(task, name, "job is over")
        return None

    def _pop_for(self, name: str) -> str:
        """Take the first queued task this worker has not failed, else the first one."""
        index = next(
            (i for i, task in enumerate(self._queue) if not self._failed_on(task, name)), 0
        )
        task = self._queue[index]
        del self._queue[index]
        self._queued.discard(task)
        return task

    def _failed_on(self, task: str, name: str) -> bool:
        return any(worker == name for worker, _ in self._errors.get(task, ()))

    def _grant(self, name: str, task: str, now: float, speculative: bool) -> Lease:
        lease_id = self._next_lease
        self._next_lease += 1
        deadline = now + self.config.lease_seconds
        self._leases[lease_id] = _Lease(name, task, now, deadline, speculative)
        self._active.setdefault(task, set()).add(lease_id)
        self._workers[name].leases.add(lease_id)
        return Lease(name, task, lease_id, deadline, speculative)

    def _speculate(self, name: str, now: float, free: int) -> list[Action]:
        """Lease copies of stragglers to an idle worker: at most one copy, never to itself."""
        count = len(self._durations)
        if count < self.config.speculate_min_done:
            return []
        median = (self._durations[(count - 1) // 2] + self._durations[count // 2]) / 2
        threshold = self.config.speculate_factor * median
        stragglers = []
        for task, lease_ids in self._active.items():
            if len(lease_ids) != 1:
                continue
            lease = self._leases[next(iter(lease_ids))]
            if lease.speculative or lease.worker == name or self._failed_on(task, name):
                continue
            if now - lease.start > threshold:
                stragglers.append((lease.start, task))
        stragglers.sort()
        return [self._grant(name, task, now, speculative=True) for _, task in stragglers[:free]]

    def _end(self, lease_id: int) -> None:
        """Deactivate a lease (done, failed, revoked or lost)."""
        lease = self._leases[lease_id]
        if not lease.active:
            return
        lease.active = False
        active = self._active[lease.task]
        active.discard(lease_id)
        if not active:
            del self._active[lease.task]
        self._workers[lease.worker].leases.discard(lease_id)

    def _revoke(self, lease_ids: Iterable[int], reason: str) -> list[Action]:
        actions: list[Action] = []
        for lease_id in lease_ids:
            lease = self._leases[lease_id]
            self._end(lease_id)
            actions.append(Revoke(lease.worker, lease.task, lease_id, reason))
        return actions

    def _revoke_all(self, reason: str) -> list[Action]:
        return self._revoke(sorted(i for ids in self._active.values() for i in ids), reason)

    def _lose(self, name: str, reason: str) -> list[Action]:
        """Mark a worker lost and requeue (at the front) the tasks no other lease covers."""
        worker = self._workers[name]
        worker.alive = False
        requeued = []
        for lease_id in sorted(worker.leases):
            task = self._leases[lease_id].task
            self._end(lease_id)
            if task not in self._active and task not in self._done and task not in self._queued:
                requeued.append(task)
        self._queue.extendleft(reversed(requeued))
        self._queued.update(requeued)
        return [WorkerLost(name, reason, tuple(requeued))]
