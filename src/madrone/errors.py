"""One root for every error a user can cause, and the warnings madrone raises.

Each class carries the CLI exit code and the HTTP status it maps to, so the CLI and (later)
the web app translate errors in one place.
"""

from __future__ import annotations


class MadroneError(Exception):
    """Root of all errors a user can cause: bad input, bad configuration, unreadable data."""

    exit_code: int = 2
    http_status: int = 400


class InputError(MadroneError):
    """A parameter or argument the user gave is invalid."""


class SourceError(MadroneError):
    """A source cannot be found, opened or understood; the message names the file or URL."""

    http_status = 422


class BandMissingError(SourceError):
    """A band an index needs is not in the source; the message lists what the source has."""


class UnknownIndexError(InputError):
    """The index name is in neither the built-ins nor the spectral index catalog."""

    http_status = 404


class ExpressionError(InputError):
    """A user band-math expression is malformed or uses something not allowed."""


class GridError(InputError):
    """The output grid cannot be built: CRS mismatch, bbox outside the data, bad resolution."""


class ProcessingError(MadroneError):
    """A tile failed while running; carries the tile and the cause. Not the user's fault."""

    exit_code = 1
    http_status = 500


class StorageError(MadroneError):
    """Product storage is misconfigured or failed: an unknown scheme, a missing bucket or
    credentials, an upload, a verification or a removal that failed. The message names the
    file and the storage URL and what to set.

    HTTP 502 (Bad Gateway): the request was fine, the storage service behind madrone was not.
    Exit code 1, as for ProcessingError: not bad usage (2); the fix is in the storage or
    its configuration. ``leftover`` lists the URLs a failed clean-up could not remove, so a
    caller can retry ``Storage.remove(error.leftover)`` later.
    """

    exit_code = 1
    http_status = 502

    def __init__(self, message: str, leftover: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.leftover: list[str] = list(leftover)


class ImplausibleReflectanceWarning(UserWarning):
    """Reflectance computed from a source looks wrong (mostly negative, or far above 1)."""


class CatalogError(MadroneError):
    """The catalog database cannot be reached, is not migrated, or refuses a change; the
    message names the database (never its password) and what to run or set."""

    http_status = 503


class NotFoundError(MadroneError):
    """A job, dataset, user or token named by its id does not exist (in this catalog)."""

    http_status = 404


class AccessDeniedError(MadroneError):
    """The caller's token or role does not allow the action; the message names the role
    needed."""

    exit_code = 3
    http_status = 403


class ConflictError(MadroneError):
    """The action does not fit the object's state (sharing what is already shared from
    another catalog, a key reused for a different request)."""

    http_status = 409


class UnknownDateWarning(UserWarning):
    """A source states no acquisition date, so the products carry none (STAC datetime null)."""
