"""madrone: Sentinel-2 spectral-index mosaics, tile by tile, on one laptop or many machines.

The public API is re-exported lazily, so ``import madrone.bands`` stays cheap.
"""

from madrone.errors import MadroneError

__version__ = "0.1.0"
__all__ = ["MadroneError", "ProcessResult", "__version__", "mosaic", "process"]


def __getattr__(name: str):
    if name in ("process", "mosaic", "ProcessResult"):
        from madrone import api

        return getattr(api, name)
    raise AttributeError(f"module 'madrone' has no attribute {name!r}")
