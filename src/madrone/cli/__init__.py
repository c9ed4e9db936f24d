"""The ``madrone`` command line: a thin shell over the Python API."""

from madrone.cli.main import main

__all__ = ["main"]
