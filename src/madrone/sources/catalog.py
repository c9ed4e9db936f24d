"""Find the STAC items that cover an area and a time span, in a static catalog or a STAC API.

A mosaic request names an area and dates, not files; this module turns that into a list of
item dicts. Two kinds of catalog answer it: a static catalog (a Catalog or Collection JSON,
local or over http(s)), which is walked whole and filtered here, and a STAC API, which is
asked through pystac-client and pages its answers. One read of the root JSON decides which.

The items come back as plain dicts with every asset href and link made absolute, so a request
queue can carry them to any machine and ``read_stac_item`` reads them there without the
catalog. Their order is fixed (least cloud first, then time, then id) so that the same search
gives the same mosaic, whatever order a catalog or an API returned them in.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlparse

from madrone.errors import InputError, SourceError

if TYPE_CHECKING:  # pystac and pystac-client are imported when a catalog is read, not at
    # start-up: a job over local files needs neither (importing pystac alone takes 0.1 s)
    from pystac.stac_io import DefaultStacIO
    from pystac_client import Client

logger = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
# (start, end) in UTC; None is an open end.
Interval = tuple[datetime | None, datetime | None]

DATETIME_FORMS = (
    'use a date "2023-08-15", a month "2023-08", a year "2023", an RFC 3339 time '
    '"2023-08-15T10:00:00Z", or an interval of two of these "2023-08-01/2023-08-31" '
    'with ".." for an open end "../2023-08-31"'
)
# An item without eo:cloud_cover counts as fully cloudy: it sorts last and fails any limit.
MISSING_CLOUD = 100.0
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_SEARCH_CONFORMANCE = re.compile(r"/item-search$")


@dataclass(frozen=True)
class SearchSpec:
    """A STAC search, as plain JSON-serialisable data (a request queue carries it)."""

    catalog: str  # static catalog/collection JSON (path or http URL) or a STAC API root URL
    collections: tuple[str, ...] = ()  # empty keeps every collection
    datetime: str | None = None  # one of DATETIME_FORMS; None keeps every time
    max_cloud: float | None = None  # eo:cloud_cover <= this, percent
    limit: int = 500  # the most items taken, least cloudy first

    def __post_init__(self) -> None:
        if not isinstance(self.catalog, str) or not self.catalog.strip():
            raise InputError(f"search catalog {self.catalog!r}: give a path or a URL")
        names = (self.collections,) if isinstance(self.collections, str) else self.collections
        object.__setattr__(self, "collections", tuple(names))
        cloud = self.max_cloud
        if cloud is not None and not (isinstance(cloud, int | float) and 0 <= cloud <= 100):
            raise InputError(f"max cloud {self.max_cloud!r}: give a percentage from 0 to 100")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise InputError(f"search limit {self.limit!r}: give a whole number of at least 1")
        parse_interval(self.datetime)

    def to_dict(self) -> dict[str, Any]:
        """The search as JSON-ready data (tuples become lists)."""
        data = asdict(self)
        data["collections"] = list(self.collections)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpec:
        """Rebuild a search from ``to_dict`` output; lists become tuples, unknown keys fail."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"search: unknown fields {', '.join(unknown)}; known: {sorted(known)}")
        if "catalog" not in data:
            raise InputError("search: the catalog field is missing")
        values = dict(data)
        values["collections"] = tuple(values.get("collections") or ())
        return cls(**values)


def search_items(
    search: SearchSpec, bbox: BBox, *, headers: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """At most ``search.limit`` item dicts (absolute hrefs) of ``search`` that meet ``bbox``.

    ``bbox`` is W,S,E,N in degrees (W > E crosses the antimeridian); ``headers`` go with
    every http request (API keys). The items are sorted by cloud cover (missing = 100),
    then datetime, then id.

    Raises:
        InputError: the bbox or the datetime is malformed.
        SourceError: the catalog cannot be read, or nothing matches.
    """
    rules = _Filter(search, _check_bbox(bbox), parse_interval(search.datetime))
    href, root, stac_io = _read_root(search.catalog, headers)
    if _is_api(root):
        found = _api_items(href, root, rules, headers)
    else:
        found = _static_items(href, root, stac_io, rules)
    asked = _describe(search, rules.box)
    if not found:
        raise SourceError(f"no items in {asked}: widen the dates or the cloud limit")
    found.sort(key=_sort_key)
    if len(found) > search.limit:
        message = "%d items match in %s; taking the first %d by cloud cover"
        logger.warning(message, len(found), asked, search.limit)
    return found[: search.limit]


def solar_day(datetime_text: str, longitude: float) -> str:
    """The local solar date "YYYY-MM-DD" of a UTC time at ``longitude`` (UTC + lon/15 hours).

    A morning pass over the western Pacific (near 157 E) crosses midnight UTC but never
    local solar midnight, so this date groups its items where the UTC date splits them.
    """
    when = _parse_time(datetime_text, label="datetime")
    return (when + timedelta(hours=longitude / 15.0)).date().isoformat()


def parse_interval(text: str | None) -> Interval | None:
    """``text`` as a UTC (start, end) interval, both ends inclusive; None for no filter.

    Raises:
        InputError: the text matches none of ``DATETIME_FORMS``, or ends before it starts.
    """
    if text is None or not text.strip():
        return None
    parts = text.strip().split("/")
    if len(parts) > 2 or parts == [".."]:
        raise InputError(f"datetime {text!r}: give one time or two joined by /; {DATETIME_FORMS}")
    # One part is both ends: "2023-08-15" runs from the first to the last instant of that day.
    start, end = _parse_bound(text, parts[0], False), _parse_bound(text, parts[-1], True)
    if start is not None and end is not None and end < start:
        raise InputError(f"datetime {text!r} ends before it starts")
    return None if start is None and end is None else (start, end)


def _parse_bound(text: str, part: str, is_end: bool) -> datetime | None:
    """One end of an interval; a date or month or year stands for its first or last instant."""
    part = part.strip()
    if part in ("..", ""):
        return None
    match = _PARTIAL_DATE.match(part)
    if not match:
        return _parse_time(part, label=f"datetime {text!r}")
    year, month, day = (int(g) if g else None for g in match.groups())
    try:
        start = datetime(year, month or 1, day or 1, tzinfo=UTC)
    except ValueError as error:
        raise InputError(f"datetime {text!r}: {error}; {DATETIME_FORMS}") from None
    if not is_end:
        return start
    if day is not None:
        after = start + timedelta(days=1)
    elif month is not None:
        after = start.replace(year=year + month // 12, month=month % 12 + 1)
    else:
        after = start.replace(year=year + 1)
    return after - timedelta(microseconds=1)


def _parse_time(text: str, label: str) -> datetime:
    """An ISO 8601 / RFC 3339 time in UTC; one without a zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"{label}: {text!r} is not a date or time; {DATETIME_FORMS}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_bbox(bbox: BBox) -> BBox:
    try:
        west, south, east, north = (float(value) for value in bbox)
    except (TypeError, ValueError):
        raise InputError(f"bbox {bbox!r}: give four numbers W,S,E,N in degrees") from None
    box = (west, south, east, north)
    # NaN fails every comparison, so this refuses it too.
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InputError(
            f"bbox {_bbox_text(box)}: need W,S,E,N with longitudes within -180..180 "
            "and -90 <= S <= N <= 90"
        )
    return box


def _read_root(
    catalog: str, headers: Mapping[str, str] | None
) -> tuple[str, dict[str, Any], DefaultStacIO]:
    """(absolute href, root JSON, the StacIO that read it) of a catalog path or URL."""
    from pystac.stac_io import DefaultStacIO

    href = catalog if _is_url(catalog) else os.path.abspath(catalog.removeprefix("file://"))
    stac_io = DefaultStacIO(headers=dict(headers or {}))
    try:
        text = stac_io.read_text(href)
    except FileNotFoundError:
        raise SourceError(f"catalog {catalog}: no such file") from None
    # pystac wraps HTTP failures in a bare Exception, other failures differ; all mean the same.
    except Exception as error:
        raise SourceError(f"catalog {catalog}: cannot be read ({_cause(error)})") from error
    try:
        root = json.loads(text)
    except ValueError as error:
        raise SourceError(f"catalog {catalog}: not JSON ({error})") from error
    if not isinstance(root, dict):
        raise SourceError(f"catalog {catalog}: not a STAC catalog (JSON {type(root).__name__})")
    return href, root, stac_io


def _is_api(root: dict[str, Any]) -> bool:
    conforms = root.get("conformsTo") or []
    if any(isinstance(uri, str) and _SEARCH_CONFORMANCE.search(uri) for uri in conforms):
        return True
    return any(link.get("rel") == "search" for link in _links(root))


@dataclass(frozen=True)
class _Filter:
    """The local test every item passes, whatever kind of catalog it came from."""

    search: SearchSpec
    box: BBox
    interval: Interval | None

    def matches(self, data: dict[str, Any], collection: str | None) -> bool:
        collections, max_cloud = self.search.collections, self.search.max_cloud
        if collections and collection not in collections:
            return False
        props = data.get("properties") or {}
        if max_cloud is not None and _cloud(props) > max_cloud:
            return False
        item_bbox = data.get("bbox")
        if not item_bbox or len(item_bbox) not in (4, 6) or not _bbox_hits(self.box, item_bbox):
            return False
        return self.interval is None or _time_hits(props, self.interval)


def _static_items(
    href: str, root: dict[str, Any], stac_io: DefaultStacIO, rules: _Filter
) -> list[dict[str, Any]]:
    """Walk a static catalog whole and keep the items that pass every filter."""
    import pystac

    catalog, kind = rules.search.catalog, root.get("type")
    if kind not in ("Catalog", "Collection"):
        raise SourceError(
            f"catalog {catalog}: a {kind or 'JSON'} document, not a STAC Catalog, "
            "Collection or API landing page"
        )
    try:
        top = pystac.read_dict(root, href=href, stac_io=stac_io)
        root_link = top.get_root_link()
        if root_link is not None and root_link.get_absolute_href() == href:
            top.set_root(top)
        found = []
        for parent, _, items in top.walk():
            parent_id = parent.id if isinstance(parent, pystac.Collection) else None
            for item in items:
                data = item.to_dict(include_self_link=True, transform_hrefs=False)
                if rules.matches(data, data.get("collection") or parent_id):
                    found.append(_absolutize(data, item.get_self_href() or href))
    except Exception as error:
        raise SourceError(f"catalog {catalog}: cannot be walked ({_cause(error)})") from error
    return found


def _api_items(
    href: str, root: dict[str, Any], rules: _Filter, headers: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """Ask a STAC API, one search per side of the antimeridian, and merge by id.

    Each search takes ``limit + 1`` items in the API's own order, so past the limit it is
    the API that chose which items were seen; the extra one only tells that the limit cut.
    """
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError

    client, search = _open_client(href, root, headers), rules.search
    query = None
    if search.max_cloud is not None and client.conforms_to(ConformanceClasses.QUERY):
        query = {"eo:cloud_cover": {"lte": search.max_cloud}}
    methods = {link.get("method", "GET") for link in _links(root) if link.get("rel") == "search"}
    found: dict[tuple[str | None, str], dict[str, Any]] = {}
    for part in _split_bbox(rules.box):
        try:
            result = client.search(
                method="POST" if "POST" in methods or not methods else "GET",
                bbox=part,
                datetime=_interval_text(rules.interval),
                collections=list(search.collections) or None,
                query=query,
                max_items=search.limit + 1,
            )
            for data in result.items_as_dicts():
                found.setdefault((data.get("collection"), data.get("id")), data)
        except (APIError, ValueError) as error:
            message = f"catalog {search.catalog}: search failed ({_cause(error)})"
            raise SourceError(message) from error
    # Filter again: an API may ignore the query extension, and one set of rules keeps a
    # static catalog and an API giving the same answer.
    return [
        _absolutize(data, _self_href(data) or href)
        for data in found.values()
        if rules.matches(data, data.get("collection"))
    ]


def _open_client(href: str, root: dict[str, Any], headers: Mapping[str, str] | None) -> Client:
    import pystac
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.warnings import NoConformsTo

    try:
        with warnings.catch_warnings():
            # A root with a search link but no conformsTo is still searchable; say so below.
            warnings.simplefilter("ignore", NoConformsTo)
            client = Client.open(href, headers=dict(headers or {}))
    except (APIError, ValueError, pystac.STACError) as error:
        raise SourceError(f"catalog {href}: cannot open the STAC API ({_cause(error)})") from error
    if not root.get("conformsTo"):
        client.add_conforms_to("ITEM_SEARCH")
    return client


def _bbox_hits(box: BBox, item_bbox: list[float]) -> bool:
    """Whether two W,S,E,N boxes (either may cross the antimeridian) intersect."""
    half = len(item_bbox) // 2
    other = (item_bbox[0], item_bbox[1], item_bbox[half], item_bbox[half + 1])
    if other[1] > box[3] or other[3] < box[1]:
        return False
    return any(
        west <= other_east and other_west <= east
        for west, _, east, _ in _split_bbox(box)
        for other_west, _, other_east, _ in _split_bbox(other)
    )


def _time_hits(props: dict[str, Any], interval: Interval) -> bool:
    """Whether the item's datetime, or its start/end range, overlaps the interval."""
    first = _item_time(props, "start_datetime")
    last = _item_time(props, "end_datetime")
    start, end = interval
    if first is None or last is None:
        return False
    return (end is None or first <= end) and (start is None or last >= start)


def _item_time(props: dict[str, Any], range_key: str) -> datetime | None:
    """The item's start or end time (its datetime if it has no range); None if unreadable."""
    text = props.get(range_key) or props.get("datetime")
    try:
        return _parse_time(text, "item") if isinstance(text, str) else None
    except InputError:
        return None


def _split_bbox(box: BBox | tuple[float, ...]) -> list[BBox]:
    west, south, east, north = box
    if west <= east:
        return [(west, south, east, north)]
    return [(west, south, 180.0, north), (-180.0, south, east, north)]


def _absolutize(data: dict[str, Any], base: str) -> dict[str, Any]:
    """The item dict with every asset href and link (self included) made absolute."""
    for entry in [*(data.get("assets") or {}).values(), *_links(data)]:
        if isinstance(entry, dict) and isinstance(entry.get("href"), str):
            entry["href"] = _absolute(entry["href"], base)
    return data


def _absolute(href: str, base: str) -> str:
    """``href`` resolved against ``base`` as RFC 3986 and pystac do; a URI stays as it is.

    A rooted path in an http document names a path on that host, not a local file: a
    catalog that means a shared disk writes ``file://`` URIs, which madrone reads as paths.
    """
    if urlparse(href).scheme:
        return href
    if _is_url(base):
        return urljoin(base, href)
    return os.path.normpath(os.path.join(os.path.dirname(base), href))


def _is_url(href: str) -> bool:
    parsed = urlparse(href)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _links(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [link for link in data.get("links") or [] if isinstance(link, dict)]


def _self_href(data: dict[str, Any]) -> str | None:
    return next((link.get("href") for link in _links(data) if link.get("rel") == "self"), None)


def _cloud(props: dict[str, Any]) -> float:
    value = props.get("eo:cloud_cover")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else MISSING_CLOUD


def _sort_key(data: dict[str, Any]) -> tuple[float, datetime, str]:
    props = data.get("properties") or {}
    when = _item_time(props, "start_datetime") or datetime.max.replace(tzinfo=UTC)
    return _cloud(props), when, str(data.get("id"))


def _interval_text(interval: Interval | None) -> str | None:
    texts = (
        ".." if end is None else end.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for end in interval or ()
    )
    return "/".join(texts) or None


def _bbox_text(box: BBox) -> str:
    return ",".join(f"{value:.4f}" for value in box)


def _describe(search: SearchSpec, box: BBox) -> str:
    """The whole search in words, for messages: the user sees what was asked."""
    cloud = "any cloud" if search.max_cloud is None else f"cloud <= {search.max_cloud:g}%"
    collections = ", ".join(search.collections) or "any"
    return (
        f"{search.catalog} for bbox {_bbox_text(box)}, datetime {search.datetime or 'any'}, "
        f"{cloud}, collections {collections}"
    )


def _cause(error: BaseException) -> str:
    """The error's text and its cause's: pystac hides HTTP status codes in ``__cause__``."""
    chain = [error, error.__cause__] if error.__cause__ else [error]
    return ": ".join(str(e).strip()[:300] or type(e).__name__ for e in chain)
