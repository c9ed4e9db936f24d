"""SIGTERM for the commands that run a job: a service manager, a container stop or a master
releasing a job ends the command with exit 143 after its clean-up.

Outside a run, SIGTERM raises ``Terminated`` where the main thread is, as ``sys.exit``
would, and every ``finally`` cleans up. Inside a run (``sigterm_cancels``) it only sets the
run's cancel event: an exception raised at an arbitrary point can land inside a lock's
``__enter__`` (a future's condition, taken by the main thread at every tile it writes) and
leave the lock held, so that the clean-up waits forever for a thread blocked on it. The run
checks the event after each tile and between its products, and stops there."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_cooperating = 0  # how many runs in progress check ``_requested``


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds like ``sys.exit`` so every ``finally`` cleans up (the pool
    and its processes stop, staging files go) before the process exits with 143."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into an orderly exit. Once only: a second SIGTERM must not cut the
    clean-up short."""

    def stop(number: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _requested.set()
        if not _cooperating:
            raise Terminated(128 + number)

    signal.signal(signal.SIGTERM, stop)


@contextmanager
def sigterm_cancels() -> Iterator[threading.Event]:
    """While the block runs, SIGTERM sets the returned event instead of raising; give it to
    the run as its ``cancel``. Leaving the block once it is set raises ``Terminated``,
    whether the run stopped for it or had already finished (its products are then whole)."""
    from madrone.engine.run import RunCancelled

    global _cooperating
    _cooperating += 1
    try:
        yield _requested
    except RunCancelled:
        if _requested.is_set():
            raise Terminated(128 + signal.SIGTERM) from None
        raise
    finally:
        _cooperating -= 1
    if _requested.is_set():
        raise Terminated(128 + signal.SIGTERM)
