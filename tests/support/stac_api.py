"""A small STAC API on 127.0.0.1 for tests, serving the items of one static catalog folder.

It is a test server, not a STAC API implementation: it answers the landing page (core,
item-search and the query extension), ``/collections``, ``/collections/{id}``, one item at
``/collections/{id}/items/{item}``, and GET or POST ``/search`` with ``bbox`` (item bboxes,
no geometry, no antimeridian crossing), ``datetime``, ``collections``, ``limit`` and
``query`` (lt, lte, gt, gte, eq on item properties). It pages ``PAGE_SIZE`` items at a time
through a ``rel="next"`` link, newest first as Earth Search does, so a client's paging and
its own sorting are exercised. Its filters are written apart from madrone's, on purpose: a
test comparing the two must not compare a function with itself. Asset hrefs become
``file://`` URIs of the catalog's files (absolute paths; a bare "/path" in an http answer
would mean a path on this server). With ``require_key`` every request needs the header
``X-Api-Key: secret``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.http import spawn_server

PAGE_SIZE = 3
API_KEY_HEADER = "X-Api-Key"
API_KEY = "secret"
CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
]
GEOJSON = "application/geo+json"
_OPERATORS = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
}


class BadRequest(Exception):
    """A search parameter this server cannot read; answered with HTTP 400."""


class StacApi:
    """The collections and items of a static catalog folder, rewritten for ``base_url``."""

    def __init__(self, folder: str, base_url: str) -> None:
        self.base = base_url
        self.collections: dict[str, dict[str, Any]] = {}
        self.items: list[dict[str, Any]] = []
        for path in sorted(Path(folder).rglob("*.json")):
            data = json.loads(path.read_text())
            if data.get("type") == "Collection":
                self.collections[data["id"]] = self._collection(data)
            elif data.get("type") == "Feature":
                self.items.append(self._item(data, path))
        self.items.sort(key=lambda item: (item["properties"]["datetime"], item["id"]), reverse=True)

    def _collection(self, data: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base}/collections/{data['id']}"
        data["links"] = [
            {"rel": "self", "href": url, "type": "application/json"},
            {"rel": "root", "href": f"{self.base}/", "type": "application/json"},
            {"rel": "parent", "href": f"{self.base}/", "type": "application/json"},
        ]
        return data

    def _item(self, data: dict[str, Any], path: Path) -> dict[str, Any]:
        for asset in data["assets"].values():
            if "://" not in asset["href"]:
                # A file URI, not a bare path: in an http document "/x" means http://host/x.
                # abspath, not resolve: symlinks stay as the client sees them
                asset["href"] = Path(os.path.abspath(path.parent / asset["href"])).as_uri()
        collection = f"{self.base}/collections/{data['collection']}"
        kept = [link for link in data["links"] if "://" in link["href"]]
        data["links"] = [
            *kept,
            {"rel": "self", "href": f"{collection}/items/{data['id']}", "type": GEOJSON},
            {"rel": "parent", "href": collection, "type": "application/json"},
            {"rel": "collection", "href": collection, "type": "application/json"},
            {"rel": "root", "href": f"{self.base}/", "type": "application/json"},
        ]
        return data

    def landing(self) -> dict[str, Any]:
        search = f"{self.base}/search"
        return {
            "type": "Catalog",
            "id": "madrone-test-api",
            "stac_version": "1.0.0",
            "description": "A test STAC API (tests/support/stac_api.py)",
            "conformsTo": CONFORMS_TO,
            "links": [
                {"rel": "self", "href": f"{self.base}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.base}/", "type": "application/json"},
                {"rel": "data", "href": f"{self.base}/collections", "type": "application/json"},
                {"rel": "search", "href": search, "type": GEOJSON, "method": "GET"},
                {"rel": "search", "href": search, "type": GEOJSON, "method": "POST"},
            ],
        }

    def search(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        """One page of the items matching ``params`` (already decoded from GET or POST)."""
        matches = [item for item in self.items if _item_matches(item, params)]
        size = min(int(params.get("limit") or PAGE_SIZE), PAGE_SIZE)
        start = int(params.get("token") or 0)
        page = matches[start : start + size]
        links = [{"rel": "root", "href": f"{self.base}/", "type": "application/json"}]
        if start + size < len(matches):
            links.append(self._next_link({**params, "token": start + size}, method))
        return {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(matches),
            "numberReturned": len(page),
        }

    def _next_link(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        link = {"rel": "next", "type": GEOJSON, "href": f"{self.base}/search"}
        if method == "POST":
            return {**link, "method": "POST", "body": params, "merge": False}
        query = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
        query = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in query.items()}
        return {**link, "href": f"{self.base}/search?{urlencode(query)}"}


def _item_matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    collections = params.get("collections")
    if collections and item.get("collection") not in collections:
        return False
    if params.get("bbox"):
        west, south, east, north = (float(v) for v in params["bbox"])
        if west > east:
            raise BadRequest("this test server does not take bboxes across the antimeridian")
        i_west, i_south, i_east, i_north = item["bbox"]
        if i_west > east or i_east < west or i_south > north or i_north < south:
            return False
    if params.get("datetime") and not _in_interval(item, params["datetime"]):
        return False
    for name, tests in (params.get("query") or {}).items():
        value = item["properties"].get(name)
        for operator, operand in tests.items():
            if operator not in _OPERATORS:
                raise BadRequest(f"query operator {operator} is not supported here")
            if value is None or not _OPERATORS[operator](value, operand):
                return False
    return True


def _in_interval(item: dict[str, Any], text: str) -> bool:
    when = _time(item["properties"]["datetime"])
    first, _, last = text.partition("/")
    if not last:
        return when == _time(first)
    return (first == ".." or _time(first) <= when) and (last == ".." or when <= _time(last))


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"datetime {text!r} is not RFC 3339") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _get_params(query_text: str) -> dict[str, Any]:
    raw = {key: values[-1] for key, values in parse_qs(query_text).items()}
    params: dict[str, Any] = dict(raw)
    for key in ("bbox", "collections"):
        if key in raw:
            params[key] = raw[key].split(",")
    if "query" in raw:
        params["query"] = json.loads(raw["query"])
    return params


class StacApiHandler(BaseHTTPRequestHandler):
    """Routes requests to a ``StacApi``; the class attributes are set per server."""

    api: StacApi
    require_key = False
    log_path: str | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        url = urlsplit(self.path)
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(f"{method} {url.path}\n")
        if self.require_key and self.headers.get(API_KEY_HEADER) != API_KEY:
            self._send(401, {"code": "Unauthorized", "description": f"{API_KEY_HEADER} needed"})
            return
        try:
            status, body = self._route(method, url.path.rstrip("/"), url.query)
        except (BadRequest, ValueError, TypeError) as error:
            status, body = 400, {"code": "BadRequest", "description": str(error)}
        self._send(status, body)

    def _route(self, method: str, path: str, query: str) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/") if path else []
        if parts == [] and method == "GET":
            return 200, self.api.landing()
        if parts == ["search"]:
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                params = json.loads(self.rfile.read(length) or b"{}")
            else:
                params = _get_params(query)
            return 200, self.api.search(params, method)
        collections = self.api.collections
        if parts == ["collections"]:
            return 200, {"collections": list(collections.values()), "links": []}
        if len(parts) == 2 and parts[0] == "collections" and parts[1] in collections:
            return 200, collections[parts[1]]
        if len(parts) == 4 and parts[0] == "collections" and parts[2] == "items":
            for item in self.api.items:
                if item["id"] == parts[3] and item["collection"] == parts[1]:
                    return 200, item
        return 404, {"code": "NotFound", "description": f"{method} {path or '/'}"}

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", GEOJSON if "features" in body else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serve_stac_api(
    folder: str, *, require_key: bool = False, log_path: str | None = None
) -> Iterator[str]:
    """Serve the static catalog ``folder`` as a STAC API from a separate process on a free
    port of 127.0.0.1 and yield its base URL; the server is stopped by PID on exit. With
    ``log_path``, every request's method and path are appended to that file, one a line.
    """
    key = "1" if require_key else ""
    with spawn_server("tests.support.stac_api", folder, key, log_path or "") as url:
        yield url


def read_log(log_path: str) -> list[str]:
    """The "METHOD /path" lines a server logged."""
    if not os.path.exists(log_path):
        return []
    with open(log_path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def main() -> None:
    folder, require_key, log_path = sys.argv[1], bool(sys.argv[2]), sys.argv[3] or None
    server = ThreadingHTTPServer(("127.0.0.1", 0), StacApiHandler)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    attributes = {"api": StacApi(folder, base_url), "require_key": require_key}
    server.RequestHandlerClass = type(
        "Handler", (StacApiHandler,), {**attributes, "log_path": log_path}
    )
    print(server.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
