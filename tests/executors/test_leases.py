"""The master's lease state machine: events in, exact actions out; no sockets, no sleeping."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from madrone.errors import InputError
from madrone.executors.grpc.leases import (
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
    LeaseConfig,
    LeaseMachine,
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


def tasks(count: int) -> list[str]:
    return [f"t{i}" for i in range(count)]


def joined(machine: LeaseMachine, *workers: str, now: float = 0.0, capacity: int = 1) -> None:
    for worker in workers:
        assert machine.handle(WorkerJoined(worker, now, capacity)) == []


def test_normal_flow_ends_with_job_done() -> None:
    machine = LeaseMachine(tasks(3))
    joined(machine, "a", capacity=2)
    assert machine.handle(WorkRequested("a", 0.0, 5)) == [
        Lease("a", "t0", 1, 15.0),
        Lease("a", "t1", 2, 15.0),
    ]
    assert (machine.pending, machine.running, machine.done) == (1, 2, 0)
    assert machine.handle(TaskDone("a", "t0", 1, 1.0)) == [Accept("t0", "a")]
    assert machine.handle(WorkRequested("a", 1.0, 1)) == [Lease("a", "t2", 3, 16.0)]
    assert machine.handle(TaskDone("a", "t1", 2, 2.0)) == [Accept("t1", "a")]
    assert not machine.is_finished
    assert machine.handle(TaskDone("a", "t2", 3, 3.0)) == [Accept("t2", "a"), JobDone()]
    assert (machine.pending, machine.running, machine.done) == (0, 0, 3)
    assert machine.is_finished
    assert machine.handle(WorkRequested("a", 4.0, 1)) == [Reject("a", "job is over")]


def test_heartbeat_extends_the_deadline_of_every_lease() -> None:
    machine = LeaseMachine(tasks(2), LeaseConfig(heartbeat_timeout=100.0))
    joined(machine, "a", capacity=2)
    machine.handle(WorkRequested("a", 0.0, 2))
    assert machine.handle(Heartbeat("a", 10.0)) == []
    assert machine.handle(Tick(20.0)) == []
    assert machine.handle(Tick(25.0)) == [], "a lease is valid up to its deadline"
    assert machine.leases_of("a") == {1, 2}
    assert machine.handle(Tick(25.5)) == [WorkerLost("a", "lease 1 expired", ("t0", "t1"))]
    assert machine.leases_of("a") == frozenset()
    assert machine.leases_of("ghost") == frozenset()


def test_expired_lease_requeues_and_another_worker_gets_it() -> None:
    machine = LeaseMachine(tasks(1), LeaseConfig(heartbeat_timeout=100.0))
    joined(machine, "a", "b")
    assert machine.handle(WorkRequested("a", 0.0, 1)) == [Lease("a", "t0", 1, 15.0)]
    assert machine.handle(Tick(15.0)) == []
    assert machine.handle(Tick(16.0)) == [WorkerLost("a", "lease 1 expired", ("t0",))]
    assert machine.pending == 1
    assert machine.handle(WorkRequested("b", 16.0, 1)) == [Lease("b", "t0", 2, 31.0)]
    lost = Reject("a", "worker 'a' was lost or left; join again")
    assert machine.handle(WorkRequested("a", 16.0, 1)) == [lost]
    assert machine.handle(Heartbeat("a", 16.0)) == [lost]


def test_silent_worker_is_lost_after_heartbeat_timeout() -> None:
    machine = LeaseMachine(tasks(3))
    joined(machine, "a", capacity=2)
    joined(machine, "b")
    machine.handle(WorkRequested("a", 0.0, 2))
    assert machine.handle(Heartbeat("b", 5.0)) == []
    assert machine.handle(Tick(6.0)) == []
    assert machine.handle(Tick(6.5)) == [WorkerLost("a", "no heartbeat for 6.5 s", ("t0", "t1"))]
    assert (machine.pending, machine.running) == (3, 0)
    # Requeued tasks go first, in their lease order.
    assert machine.handle(WorkRequested("b", 7.0, 1)) == [Lease("b", "t0", 3, 22.0)]
    assert machine.handle(Tick(11.5)) == [], "b's request counts as a sign of life"
    assert machine.handle(Tick(13.5)) == [WorkerLost("b", "no heartbeat for 6.5 s", ("t0",))]


def test_rejoining_under_the_same_name_voids_earlier_leases() -> None:
    machine = LeaseMachine(tasks(1))
    joined(machine, "a")
    machine.handle(WorkRequested("a", 0.0, 1))
    assert machine.handle(WorkerJoined("a", 2.0)) == [WorkerLost("a", "rejoined", ("t0",))]
    assert machine.handle(WorkRequested("a", 2.0, 1)) == [Lease("a", "t0", 2, 17.0)]


def test_task_failing_max_attempts_times_fails_the_job_with_every_message() -> None:
    machine = LeaseMachine(tasks(2))
    joined(machine, "a", capacity=2)
    joined(machine, "b", "c")
    assert machine.handle(WorkRequested("a", 0.0, 2)) == [
        Lease("a", "t0", 1, 15.0),
        Lease("a", "t1", 2, 15.0),
    ]
    assert machine.handle(TaskFailed("a", "t0", 1, "boom on a", 1.0)) == []
    assert machine.handle(WorkRequested("b", 1.0, 1)) == [Lease("b", "t0", 3, 16.0)]
    assert machine.handle(TaskFailed("b", "t0", 3, "boom on b", 2.0)) == []
    assert machine.handle(WorkRequested("c", 2.0, 1)) == [Lease("c", "t0", 4, 17.0)]
    assert machine.handle(TaskFailed("c", "t0", 4, "boom on c", 3.0)) == [
        Revoke("a", "t1", 2, "job failed"),
        JobFailed("t0", (("a", "boom on a"), ("b", "boom on b"), ("c", "boom on c"))),
    ]
    assert machine.is_finished
    assert machine.handle(TaskDone("a", "t1", 2, 4.0)) == [Ignore("t1", "a", "job is over")]
    assert machine.handle(Tick(100.0)) == []


def test_failure_below_the_limit_requeues_preferring_another_worker() -> None:
    machine = LeaseMachine(tasks(2))
    joined(machine, "a", "b")
    machine.handle(WorkRequested("a", 0.0, 1))
    assert machine.handle(TaskFailed("a", "t0", 1, "flaky read", 1.0)) == []
    assert (machine.pending, machine.running) == (2, 0)
    assert machine.handle(WorkRequested("a", 1.0, 1)) == [Lease("a", "t1", 2, 16.0)]
    assert machine.handle(WorkRequested("b", 1.0, 1)) == [Lease("b", "t0", 3, 16.0)]
    assert machine.handle(TaskDone("b", "t0", 3, 2.0)) == [Accept("t0", "b")]
    assert machine.handle(TaskDone("a", "t1", 2, 2.0)) == [Accept("t1", "a"), JobDone()]


def test_failed_task_goes_back_to_the_same_worker_when_it_is_the_only_one() -> None:
    machine = LeaseMachine(tasks(1))
    joined(machine, "a")
    machine.handle(WorkRequested("a", 0.0, 1))
    machine.handle(TaskFailed("a", "t0", 1, "flaky read", 1.0))
    assert machine.handle(WorkRequested("a", 1.0, 1)) == [Lease("a", "t0", 2, 16.0)]
    assert machine.handle(TaskDone("a", "t0", 2, 2.0)) == [Accept("t0", "a"), JobDone()]


def straggling_job(min_done: int = 5) -> LeaseMachine:
    """`a` holds t0 since 0 s while `b` completes t1..t6 in 1 s each; the queue is empty."""
    machine = LeaseMachine(tasks(7), LeaseConfig(speculate_min_done=min_done))
    joined(machine, "a", capacity=2)
    joined(machine, "b")
    assert machine.handle(WorkRequested("a", 0.0, 1)) == [Lease("a", "t0", 1, 15.0)]
    for i in range(1, 7):
        lease = machine.handle(WorkRequested("b", i - 1.0, 1))
        assert lease == [Lease("b", f"t{i}", i + 1, i + 14.0)]
        assert machine.handle(TaskDone("b", f"t{i}", i + 1, float(i))) == [Accept(f"t{i}", "b")]
    assert (machine.pending, machine.running, machine.done) == (0, 1, 6)
    return machine


def test_straggler_is_speculated_once_and_the_first_result_wins() -> None:
    machine = straggling_job()
    # Median duration 1 s: 3 s elapsed is not "more than 3x", and a never copies its own task.
    assert machine.handle(WorkRequested("b", 3.0, 1)) == []
    assert machine.handle(WorkRequested("a", 6.0, 1)) == []
    assert machine.handle(WorkRequested("b", 6.0, 1)) == [Lease("b", "t0", 8, 21.0, True)]
    joined(machine, "c", now=6.0)
    assert machine.handle(WorkRequested("c", 7.0, 1)) == [], "never a third copy"
    assert machine.handle(TaskDone("b", "t0", 8, 8.0)) == [
        Accept("t0", "b"),
        Revoke("a", "t0", 1, "done by another worker"),
        JobDone(),
    ]
    assert machine.handle(TaskDone("a", "t0", 1, 9.0)) == [Ignore("t0", "a", "already done")]


def test_original_lease_can_still_win_over_its_speculative_copy() -> None:
    machine = straggling_job()
    machine.handle(WorkRequested("b", 6.0, 1))
    assert machine.handle(TaskDone("a", "t0", 1, 6.5)) == [
        Accept("t0", "a"),
        Revoke("b", "t0", 8, "done by another worker"),
        JobDone(),
    ]
    assert machine.handle(TaskDone("b", "t0", 8, 7.0)) == [Ignore("t0", "b", "already done")]


def test_no_speculation_before_enough_tasks_are_done() -> None:
    machine = straggling_job(min_done=7)
    assert machine.handle(WorkRequested("b", 100.0, 1)) == []


def test_result_under_expired_lease_is_accepted_while_the_task_is_not_done() -> None:
    machine = LeaseMachine(tasks(2), LeaseConfig(heartbeat_timeout=100.0))
    joined(machine, "a", "b")
    machine.handle(WorkRequested("a", 0.0, 1))
    assert machine.handle(Tick(16.0)) == [WorkerLost("a", "lease 1 expired", ("t0",))]
    assert machine.handle(WorkRequested("b", 16.0, 1)) == [Lease("b", "t0", 2, 31.0)]
    assert machine.handle(TaskDone("a", "t0", 1, 17.0)) == [
        Accept("t0", "a"),
        Revoke("b", "t0", 2, "done by another worker"),
    ]
    assert machine.handle(TaskDone("b", "t0", 2, 18.0)) == [Ignore("t0", "b", "already done")]
    assert (machine.pending, machine.running, machine.done) == (1, 0, 1)


def test_late_result_of_a_requeued_task_takes_it_out_of_the_queue() -> None:
    machine = LeaseMachine(tasks(2))
    joined(machine, "a", "b")
    machine.handle(WorkRequested("a", 0.0, 1))
    assert machine.handle(WorkerLeft("a", 1.0)) == [WorkerLost("a", "left", ("t0",))]
    assert machine.handle(TaskDone("a", "t0", 1, 2.0)) == [Accept("t0", "a")]
    assert machine.pending == 1
    assert machine.handle(WorkRequested("b", 2.0, 2)) == [Lease("b", "t1", 2, 17.0)]


def test_unknown_worker_task_or_lease_is_rejected() -> None:
    machine = LeaseMachine(tasks(2))
    joined(machine, "a", capacity=2)
    machine.handle(WorkRequested("a", 0.0, 2))
    ghost = "unknown worker 'ghost'"
    assert machine.handle(Heartbeat("ghost", 1.0)) == [Reject("ghost", f"{ghost}; join first")]
    assert machine.handle(WorkRequested("ghost", 1.0, 1)) == [
        Reject("ghost", f"{ghost}; join first")
    ]
    assert machine.handle(WorkerLeft("ghost", 1.0)) == [Reject("ghost", ghost)]
    assert machine.handle(TaskDone("ghost", "t0", 1, 1.0)) == [Reject("ghost", ghost)]
    assert machine.handle(TaskDone("a", "t9", 1, 1.0)) == [Reject("a", "unknown task 't9'")]
    assert machine.handle(TaskFailed("a", "t0", 99, "x", 1.0)) == [
        Reject("a", "lease 99 was not granted to 'a' for 't0'")
    ]
    assert machine.handle(TaskDone("a", "t0", 2, 1.0)) == [
        Reject("a", "lease 2 was not granted to 'a' for 't0'")
    ]
    assert machine.handle(WorkerJoined("b", 1.0, 0)) == [
        Reject("b", "capacity must be at least 1, not 0")
    ]
    assert (machine.pending, machine.running, machine.done) == (0, 2, 0)


def test_a_lease_reports_only_once() -> None:
    machine = LeaseMachine(tasks(2))
    joined(machine, "a")
    machine.handle(WorkRequested("a", 0.0, 1))
    machine.handle(TaskFailed("a", "t0", 1, "boom", 1.0))
    repeated = [Ignore("t0", "a", "lease 1 already reported")]
    assert machine.handle(TaskFailed("a", "t0", 1, "boom", 1.0)) == repeated
    assert machine.handle(TaskDone("a", "t0", 1, 1.0)) == repeated


def test_graceful_leave_hands_back_leases_at_once() -> None:
    machine = LeaseMachine(tasks(3))
    joined(machine, "a", capacity=2)
    joined(machine, "b", capacity=2)
    machine.handle(WorkRequested("a", 0.0, 2))
    assert machine.handle(WorkerLeft("a", 1.0)) == [WorkerLost("a", "left", ("t0", "t1"))]
    assert machine.handle(WorkerLeft("a", 1.0)) == []
    assert machine.handle(WorkRequested("b", 1.0, 2)) == [
        Lease("b", "t0", 3, 16.0),
        Lease("b", "t1", 4, 16.0),
    ]


def test_cancel_revokes_outstanding_leases() -> None:
    machine = LeaseMachine(tasks(3))
    joined(machine, "a", "b")
    machine.handle(WorkRequested("a", 0.0, 1))
    machine.handle(WorkRequested("b", 0.0, 1))
    assert machine.handle(Cancel(1.0, "user asked")) == [
        Revoke("a", "t0", 1, "job cancelled"),
        Revoke("b", "t1", 2, "job cancelled"),
        JobCancelled("user asked"),
    ]
    assert machine.is_finished
    assert machine.handle(Cancel(2.0)) == []
    assert machine.handle(WorkRequested("a", 2.0, 1)) == [Reject("a", "job is over")]
    assert machine.handle(TaskDone("b", "t1", 2, 2.0)) == [Ignore("t1", "b", "job is over")]


def test_resume_never_leases_done_tasks() -> None:
    machine = LeaseMachine(tasks(4), done={"t0", "t2"})
    assert (machine.pending, machine.done) == (2, 2)
    joined(machine, "a", capacity=4)
    assert machine.handle(WorkRequested("a", 0.0, 4)) == [
        Lease("a", "t1", 1, 15.0),
        Lease("a", "t3", 2, 15.0),
    ]
    assert machine.handle(TaskDone("a", "t2", 1, 1.0)) == [
        Reject("a", "lease 1 was not granted to 'a' for 't2'")
    ]
    assert machine.handle(TaskDone("a", "t1", 1, 1.0)) == [Accept("t1", "a")]
    assert machine.handle(TaskDone("a", "t3", 2, 1.0)) == [Accept("t3", "a"), JobDone()]


def test_resume_with_everything_done_finishes_on_the_first_event() -> None:
    machine = LeaseMachine(tasks(2), done=tasks(2))
    assert machine.handle(Tick(0.0)) == [JobDone()]
    assert machine.handle(Tick(1.0)) == []


def test_bad_task_lists_are_refused() -> None:
    with pytest.raises(InputError, match="task ids must be unique"):
        LeaseMachine(["t0", "t0"])
    with pytest.raises(InputError, match=r"done task ids are not in the job: \['t1'\]"):
        LeaseMachine(["t0"], done=["t1"])


def test_bad_config_is_refused() -> None:
    with pytest.raises(InputError, match="lease_seconds must be positive, not 0"):
        LeaseConfig(lease_seconds=0)
    with pytest.raises(InputError, match="max_attempts must be at least 1, not 0"):
        LeaseConfig(max_attempts=0)


class RandomRun:
    """Drives a machine with random events from simulated workers and checks every action.

    Simulated workers die silently, get cut off, leave, restart, report late and duplicate
    results, and fail each task fewer than max_attempts times in total, so the job must end
    with JobDone.
    """

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.tasks = tasks(rng.randint(1, 25))
        self.done_before = set(rng.sample(self.tasks, rng.randint(0, len(self.tasks) // 3)))
        self.config = LeaseConfig(
            lease_seconds=rng.choice([2.0, 15.0]),
            heartbeat_timeout=rng.choice([1.5, 6.0]),
            speculate_factor=rng.choice([1.5, 3.0]),
            speculate_min_done=rng.randint(1, 5),
        )
        self.machine = LeaseMachine(self.tasks, self.config, self.done_before)
        self.now = 0.0
        self.names = [f"w{i}" for i in range(rng.randint(1, 4))]
        self.held: dict[str, dict[int, str]] = {}  # running worker -> leases it works on
        self.capacity: dict[str, int] = {}
        self.failures: Counter[str] = Counter()
        # What the actions told us, checked against the rules.
        self.accepted: Counter[str] = Counter()
        self.active: dict[int, tuple[str, str, bool]] = {}  # lease -> worker, task, speculative
        self.out: set[str] = set(self.names)  # workers the machine does not count as live
        self.ended: list[Action] = []
        self.seen: Counter[str] = Counter()  # what kinds of actions the run exercised

    def send(self, event: Event) -> list[Action]:
        actions = self.machine.handle(event)
        rejected = any(isinstance(a, Reject) for a in actions)
        if isinstance(event, TaskDone | TaskFailed) and not rejected:
            self.active.pop(event.lease, None)
        for action in actions:
            self.check(action)
        if isinstance(event, WorkerJoined) and not rejected:
            self.out.discard(event.worker)
        return actions

    def check(self, action: Action) -> None:
        if self.ended:
            allowed = isinstance(action, Reject | Ignore | WorkerLost) and not getattr(
                action, "requeued", ()
            )
            assert allowed, f"{action} after {self.ended}"
        self.seen[type(action).__name__] += 1
        match action:
            case Lease(worker, task, lease, _, speculative):
                assert worker not in self.out, f"{task} leased to lost worker {worker}"
                assert task not in self.accepted and task not in self.done_before
                copies = [v for v in self.active.values() if v[1] == task]
                assert len(copies) <= 1 and not any(v[2] for v in copies)
                assert all(v[0] != worker for v in copies)
                assert speculative == bool(copies)
                self.seen["speculative"] += speculative
                self.active[lease] = (worker, task, speculative)
            case Revoke(worker, task, lease, _):
                assert self.active.pop(lease)[:2] == (worker, task)
            case WorkerLost(worker, reason, requeued):
                self.out.add(worker)
                self.seen[reason.split()[0]] += 1
                others = {t for w, t, _ in self.active.values() if w != worker}
                mine = [t for _, (w, t, _) in sorted(self.active.items()) if w == worker]
                assert requeued == tuple(t for t in mine if t not in others)
                self.active = {i: v for i, v in self.active.items() if v[0] != worker}
            case Accept(task, _):
                self.accepted[task] += 1
                assert self.accepted[task] == 1, f"{task} accepted twice"
                assert task not in self.done_before
            case JobDone():
                assert set(self.accepted) | self.done_before == set(self.tasks)
                assert not self.active
                self.ended.append(action)
            case JobFailed() | JobCancelled():
                pytest.fail(f"unexpected {action}")

    def join(self, name: str) -> None:
        self.capacity[name] = self.rng.randint(1, 3)
        self.held[name] = {}
        self.send(WorkerJoined(name, self.now, self.capacity[name]))

    def request(self, name: str) -> None:
        actions = self.send(WorkRequested(name, self.now, self.rng.randint(1, 3)))
        if actions and isinstance(actions[0], Reject):
            self.join(name)  # lost or left: the worker's shell joins again
        for action in actions:
            if isinstance(action, Lease):
                self.held[name][action.lease] = action.task

    def report(self, name: str) -> None:
        lease = self.rng.choice(sorted(self.held[name]))
        task = self.held[name].pop(lease)
        if self.failures[task] < self.config.max_attempts - 1 and self.rng.random() < 0.3:
            self.failures[task] += 1
            actions = self.send(TaskFailed(name, task, lease, f"boom {task}", self.now))
        else:
            actions = self.send(TaskDone(name, task, lease, self.now))
        assert not any(isinstance(a, Reject) for a in actions), "a granted lease is never rejected"

    def step(self) -> None:
        rng = self.rng
        running = sorted(self.held)
        name = rng.choice(self.names)
        roll = rng.random()
        if roll < 0.15:
            self.now += rng.uniform(0.0, 3.0)
        elif roll < 0.25:
            self.send(Tick(self.now))
        elif name not in running:
            if roll < 0.4:
                self.join(name)  # a fresh process: it knows nothing of earlier leases
        elif roll < 0.45:
            del self.held[name]  # dies silently, or is cut off
        elif roll < 0.48:
            self.send(WorkerLeft(name, self.now))
            del self.held[name]
        elif roll < 0.6:
            if self.send(Heartbeat(name, self.now)):
                self.join(name)
        elif roll < 0.75:
            self.request(name)
        elif roll < 0.95 and self.held[name]:
            self.report(name)
        else:
            self.send_garbage(name)

    def send_garbage(self, name: str) -> None:
        bogus = [
            TaskDone("ghost", self.tasks[0], 1, self.now),
            TaskDone(name, "no-such-tile", 1, self.now),
            TaskFailed(name, self.tasks[0], 10**6, "x", self.now),
        ]
        for event in bogus:
            actions = self.send(event)
            assert len(actions) == 1 and isinstance(actions[0], Reject)

    def drain(self) -> None:
        """Everyone healthy and quick: the job must finish."""
        for _ in range(2000):
            if self.machine.is_finished:
                return
            self.now += 0.5
            for name in self.names:
                if name not in self.held:
                    self.join(name)
                if self.send(Heartbeat(name, self.now)):
                    self.join(name)
                self.request(name)
                while self.held[name] and not self.machine.is_finished:
                    self.report(name)
            self.send(Tick(self.now))


@pytest.mark.parametrize("seed", range(300))
def test_random_runs_accept_every_task_exactly_once(seed: int) -> None:
    run = RandomRun(seed)
    for _ in range(400):
        run.step()
    run.drain()
    assert run.ended == [JobDone()]
    assert run.machine.is_finished
    assert Counter(run.accepted) == Counter(set(run.tasks) - run.done_before)
    assert run.machine.done == len(run.tasks)


def test_random_runs_exercise_every_path() -> None:
    seen: Counter[str] = Counter()
    for seed in range(100):
        run = RandomRun(seed)
        for _ in range(400):
            run.step()
        run.drain()
        seen += run.seen
    for kind in ("speculative", "Ignore", "Revoke", "lease", "no", "left", "rejoined", "Reject"):
        assert seen[kind] > 0, f"no {kind!r} in 100 random runs"
