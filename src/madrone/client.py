"""A small client of a madrone server's REST API (``/api``), for the CLI's remote mode
(``--server URL --token T``) and for scripts.

Standard library only (``urllib``). A server's JSON error comes back as the ``MadroneError``
class it was raised as (by its ``type``, else by its HTTP status), with the server's
message, so the CLI prints it and exits with its usual code for that class.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from madrone import errors
from madrone.errors import (
    AccessDeniedError,
    CatalogError,
    ConflictError,
    InputError,
    MadroneError,
    NotFoundError,
    ProcessingError,
    SourceError,
    StorageError,
)

DEFAULT_TIMEOUT = 60.0
# The error class of a status the server's ``type`` does not name (``AuthenticationRequired``
# lives in the web app, ``RequestEntityTooLarge`` in werkzeug).
_BY_STATUS: dict[int, type[MadroneError]] = {
    400: InputError,
    401: AccessDeniedError,
    403: AccessDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InputError,
    422: SourceError,
    502: StorageError,
    503: CatalogError,
}


class ApiClient:
    """Calls to one server with one (optional) API token.

    Args:
        server: the server's base URL, e.g. ``http://127.0.0.1:8000`` (``/api`` is added).
        token: an API token (``mdr_...``) sent as ``Authorization: Bearer``.
        timeout: seconds to wait for each response.
    """

    def __init__(self, server: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        parts = urllib.parse.urlsplit(server.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"server {server!r} is not an http(s) URL, e.g. http://host:8000")
        self.server = server.strip().rstrip("/")
        self.token = token or None
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """``method`` on ``/api<path>`` with query ``params`` (None values left out) and a
        JSON ``body``; the decoded JSON response.

        Raises:
            MadroneError: the server's error, as its class; CatalogError when the server
                cannot be reached or does not answer JSON.
        """
        url = f"{self.server}/api{path}"
        query = {key: value for key, value in (params or {}).items() if value is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        call = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(call, timeout=self.timeout) as response:
                return _decoded(response.read(), url)
        except urllib.error.HTTPError as failure:
            with failure:
                raise error_from(failure.code, failure.read(), url) from None
        except (urllib.error.URLError, OSError) as failure:
            reason = getattr(failure, "reason", failure)
            raise CatalogError(f"cannot reach the madrone server {self.server}: {reason}") from None

    def me(self) -> dict[str, Any]:
        return self.request("GET", "/me")

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a request (the JSON body of ``POST /api/jobs``); the job."""
        return self.request("POST", "/jobs", body=dict(body))

    def jobs(self, *, status: str | None = None, limit: int | None = None) -> list[dict]:
        return self.request("GET", "/jobs", params={"status": status, "limit": limit})["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def datasets(self, **params: Any) -> dict[str, Any]:
        """One page of a dataset search (``GET /api/datasets`` arguments)."""
        return self.request("GET", "/datasets", params=params)


def error_from(status: int, raw: bytes, url: str) -> MadroneError:
    """The MadroneError a server's error response stands for, with its message."""
    try:
        detail = json.loads(raw)["error"]
        message, kind = str(detail["message"]), str(detail.get("type", ""))
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip()[:200]
        message, kind = f"{url}: HTTP {status}{': ' + text if text else ''}", ""
    named = getattr(errors, kind, None)
    if isinstance(named, type) and issubclass(named, MadroneError):
        return named(message)
    fallback = ProcessingError if status >= 500 else MadroneError
    return _BY_STATUS.get(status, fallback)(message)


def _decoded(raw: bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise CatalogError(
            f"{url}: the server did not answer JSON; is it a madrone server?"
        ) from None
