"""SIGTERM in the commands: outside a run it unwinds the main thread at once; inside one it
only sets the run's cancel event, so it never lands inside a lock the run's threads need."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from madrone.cli import signals
from madrone.engine.run import RunCancelled


@pytest.fixture
def sigterm() -> Iterator[None]:
    """The commands' SIGTERM handler in this process, removed (and its state reset) after."""
    before = signal.getsignal(signal.SIGTERM)
    signals._requested.clear()
    signals.stop_on_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        signals._requested.clear()


def deliver_sigterm() -> None:
    """SIGTERM to this process; its handler has run when this returns (main thread)."""
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100):  # the handler runs at the next bytecode boundary
        pass


def test_outside_a_run_sigterm_raises_at_once(sigterm) -> None:
    with pytest.raises(signals.Terminated) as stopped:
        deliver_sigterm()
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, "a second one waits"


def test_inside_a_run_sigterm_only_sets_the_cancel_event(sigterm) -> None:
    reached = []
    with pytest.raises(signals.Terminated) as stopped, signals.sigterm_cancels() as cancel:
        assert not cancel.is_set()
        deliver_sigterm()
        reached.append("after the signal")  # nothing was raised where it landed
        assert cancel.is_set()
    assert reached == ["after the signal"]
    assert stopped.value.code == 143


def test_a_run_cancelled_by_sigterm_ends_as_terminated(sigterm) -> None:
    with pytest.raises(signals.Terminated) as stopped, signals.sigterm_cancels() as cancel:
        deliver_sigterm()
        if cancel.is_set():  # as run_plan's check after a tile
            raise RunCancelled("job: cancelled; nothing was written")
    assert stopped.value.code == 143


def test_a_run_cancelled_otherwise_stays_cancelled(sigterm) -> None:
    with pytest.raises(RunCancelled, match="by a master"), signals.sigterm_cancels():
        raise RunCancelled("cancelled by a master")
    with pytest.raises(signals.Terminated):  # and SIGTERM raises again once the run is over
        deliver_sigterm()
