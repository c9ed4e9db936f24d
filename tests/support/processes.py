"""Stopping a command the tests started, the way a service manager does."""

from __future__ import annotations

import signal
import subprocess

import pytest


def stop(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """SIGTERM, then the exit code and the output; killed if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{process.args} did not stop on SIGTERM:\n{err}")
    return process.returncode, out, err
