"""Commands over a catalog: ``db upgrade|current``, ``datasets``, ``add``, ``share``,
``user add|list|password|link`` and ``token create``. Thin shells over ``madrone.team`` (and
``catalog.users`` for passwords and login links): whatever the web app also needs lives
there, not here.

Which catalog: the local one (``MADRONE_DB_URL``, else a SQLite file in the user's data
folder), another one by ``--db URL``, or the team's with ``--central``
(``MADRONE_CENTRAL_DB_URL``).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from madrone.catalog.vocabulary import HEAD, ROLES, SORT_KEYS
from madrone.cli.options import parse_floats
from madrone.errors import InputError
from madrone.lazy import lazy_module

if TYPE_CHECKING:
    from madrone.catalog.db import Catalog
    from madrone.client import ApiClient

team = lazy_module("madrone.team")
users = lazy_module("madrone.catalog.users")


def catalog_options(command: Callable) -> Callable:
    """``--db URL`` and ``--central``: the catalog a command works on."""
    command = click.option(
        "--central", is_flag=True, help="The team's catalog (MADRONE_CENTRAL_DB_URL)."
    )(command)
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="A catalog by its URL (default: MADRONE_DB_URL, else a SQLite file in the "
        "user's data folder).",
    )(command)


@contextlib.contextmanager
def opened_catalog(
    db_url: str | None, central: bool = False, upgrade: bool | None = None
) -> Iterator[Catalog]:
    """The catalog ``--db``/``--central`` name, its connections closed afterwards."""
    catalog = team.open_catalog(db=db_url, central=central, upgrade=upgrade)
    try:
        yield catalog
    finally:
        catalog.dispose()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns as wide as their widest cell."""
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def stamp(moment: datetime | None) -> str:
    """A catalog time to the second, in UTC."""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


# -- db -------------------------------------------------------------------------------------
@click.group()
def db() -> None:
    """The catalog's schema: upgrade it, show its revision."""


@db.command()
@catalog_options
def upgrade(db_url: str | None, central: bool) -> None:
    """Migrate the catalog to the newest schema revision."""
    with opened_catalog(db_url, central, upgrade=False) as catalog:
        before, _ = team.catalog_revision(catalog)
        reached = team.upgrade_catalog(catalog)
    click.echo(f"catalog {catalog.safe_url}: revision {before or 'none (empty)'} -> {reached}")


@db.command()
@catalog_options
def current(db_url: str | None, central: bool) -> None:
    """Print the catalog's schema revision and whether it is the newest."""
    with opened_catalog(db_url, central, upgrade=False) as catalog:
        revision, newest = team.catalog_revision(catalog)
    state = "the newest" if newest else f"not the newest ({HEAD}): run `madrone db upgrade`"
    click.echo(f"catalog {catalog.safe_url}: revision {revision or 'none (empty)'}, {state}")


# -- datasets -------------------------------------------------------------------------------
def remote_options(command: Callable) -> Callable:
    """``--server URL`` and ``--token T``: talk to a madrone server's REST API instead of a
    catalog (defaults: MADRONE_SERVER, MADRONE_API_TOKEN)."""
    command = click.option(
        "--token",
        metavar="TOKEN",
        envvar="MADRONE_API_TOKEN",
        help="API token for --server (default: MADRONE_API_TOKEN).",
    )(command)
    return click.option(
        "--server",
        metavar="URL",
        envvar="MADRONE_SERVER",
        help="A madrone server to use through its REST API, e.g. http://host:8000 (default: "
        "MADRONE_SERVER; none: the catalog).",
    )(command)


def remote_client(server: str, token: str | None, **local: Any) -> ApiClient:
    """A client of ``server``; options that name a catalog (``local``, by option name) are
    refused, since the server uses its own."""
    from madrone.client import ApiClient

    given = [name for name, value in local.items() if value]
    if given:
        raise InputError(f"{', '.join(given)}: not with --server (the server uses its catalog)")
    return ApiClient(server, token)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.option("--bbox", metavar="W,S,E,N", help="Only datasets touching this box (degrees).")
@click.option("--shared", is_flag=True, help="Search the team's central catalog.")
@click.option("--index", help="Only this index, e.g. ndvi.")
@click.option("--owner", help="Only datasets of this user.")
@click.option("--text", help="Words in the name or the description.")
@click.option("--from", "date_from", metavar="DATE", help="Acquired on or after, YYYY-MM-DD.")
@click.option("--to", "date_to", metavar="DATE", help="Acquired on or before, YYYY-MM-DD.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="created", show_default=True)
@click.option("--asc", "ascending", is_flag=True, help="Ascending (default: newest first).")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size.")
@click.option("--cursor", help="The next_cursor of the previous page.")
@click.option("--db", "db_url", metavar="URL", help="A catalog by its URL.")
@remote_options
def datasets(
    as_json: bool,
    bbox: str | None,
    shared: bool,
    db_url: str | None,
    server: str | None,
    token: str | None,
    **search: Any,
) -> None:
    """Search the datasets of a catalog (the local one unless --shared or --db), or of a
    server (--server: its local catalog, or with --shared its central one)."""
    if shared and db_url:
        raise InputError("give --db URL or --shared, not both")
    box = parse_floats(bbox, 4, "--bbox")
    if server:
        client = remote_client(server, token, **{"--db": db_url})
        page = client.datasets(**_search_params(box, shared, search))
    else:
        query = team.dataset_query(bbox=box, **search)
        with opened_catalog(db_url, shared) as catalog:
            page = team.page_to_dict(team.find_datasets(catalog, query))
    if as_json:
        echo_json(page)
        return
    headers = ("id", "name", "kind", "index", "date", "owner", "scope")
    echo_table(headers, [_dataset_row(dataset) for dataset in page["datasets"]])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


def _search_params(
    bbox: Sequence[float] | None, shared: bool, search: dict[str, Any]
) -> dict[str, Any]:
    """The query arguments of GET /api/datasets for the options of ``datasets``."""
    return {
        "catalog": "shared" if shared else None,
        "bbox": ",".join(f"{value:g}" for value in bbox) if bbox else None,
        "index": search["index"],
        "owner": search["owner"],
        "q": search["text"],
        "from": search["date_from"],
        "to": search["date_to"],
        "sort": search["sort"],
        "asc": "1" if search["ascending"] else None,
        "limit": search["limit"],
        "cursor": search["cursor"],
    }


def _dataset_row(dataset: dict[str, Any]) -> tuple[str, ...]:
    """A table row of a dataset as JSON (``dataset_to_dict``, or the REST API's)."""
    start, end = dataset["date_start"], dataset["date_end"]
    if start is None:
        when = "unknown"
    elif end is None or end[:10] == start[:10]:
        when = start[:10]
    else:
        when = f"{start[:10]}..{end[:10]}"
    return (dataset["id"], dataset["name"], dataset["kind"], dataset["index"] or "-", when,
            dataset["owner"], dataset["scope"])  # fmt: skip


# -- add and share --------------------------------------------------------------------------
@click.command()
@click.argument("path", metavar="FILE", required=False)
@click.option("--corners", metavar="UL_LAT,UL_LNG,LR_LAT,LR_LNG", help="Place a PNG/JPEG.")
@click.option("--point", metavar="LAT,LON", help="Add a point instead of a file.")
@click.option("--name", help="The dataset's name (default: the file's name).")
@click.option("--description", default="", help="What it is (needed for a point).")
def add(
    path: str | None, corners: str | None, point: str | None, name: str | None, description: str
) -> None:
    """Add FILE (a GeoTIFF, a PNG/JPEG with --corners, GeoJSON) or a --point to the local
    catalog and storage; prints the dataset id."""
    with opened_catalog(None) as catalog:
        if point is None:
            if path is None:
                raise click.UsageError("give a FILE, or --point LAT,LON")
            added = team.add_file(catalog, path, name=name, description=description,
                                  corners=corners)  # fmt: skip
        else:
            if path is not None or corners is not None:
                raise InputError(f"--point {point}: give no FILE or --corners with a point")
            if not name or not description:
                raise InputError(f"--point {point}: give its --name and --description")
            lat, lon = parse_floats(point, 2, "--point")
            added = team.add_point(catalog, lat, lon, name=name, description=description)
    click.echo(added.id)


@click.command()
@click.argument("dataset_id", metavar="ID")
def share(dataset_id: str) -> None:
    """Share local dataset ID with the team: its row to the central catalog, its files to
    the central storage (MADRONE_CENTRAL_DB_URL); prints the shared dataset's id."""
    with opened_catalog(None, central=True) as central, opened_catalog(None) as local:
        shared = team.share(local, central, dataset_id)
    click.echo(shared.id)


# -- users and tokens -----------------------------------------------------------------------
@click.group()
def user() -> None:
    """The users of a catalog and their roles."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@click.option("--password", "ask_password", is_flag=True,
              help="Set a web password: asked twice, not echoed.")  # fmt: skip
@click.option("--password-stdin", is_flag=True, help="Set a web password read from stdin.")
@catalog_options
def add_user(
    name: str,
    role: str,
    ask_password: bool,
    password_stdin: bool,
    db_url: str | None,
    central: bool,
) -> None:
    """Add a user NAME with a role, and a password to log in to the web pages with
    (--password or --password-stdin; without one, give them a `madrone user link`)."""
    password = None
    if ask_password or password_stdin:
        password = read_password(name, password_stdin)
    with opened_catalog(db_url, central) as catalog:
        added = users.add_user(catalog, name, role, created_by=team.current_user(),
                               password=password)  # fmt: skip
    with_password = " with a password" if password is not None else ""
    click.echo(f"user {added.name} ({added.role}) added to {catalog.safe_url}{with_password}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@catalog_options
def set_password(name: str, password_stdin: bool, db_url: str | None, central: bool) -> None:
    """Set or reset the web password of user NAME (asked twice unless --password-stdin);
    their open sessions end."""
    password = read_password(name, password_stdin)
    with opened_catalog(db_url, central) as catalog:
        users.set_password(catalog, name, password)
    click.echo(f"password of user {name} set in {catalog.safe_url}")


@user.command("link")
@click.argument("name")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True,
              help="The web app's address, as the user opens it.")  # fmt: skip
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 30), default=24.0,
              show_default=True, help="How long the link stays valid.")  # fmt: skip
@catalog_options
def login_link(name: str, base_url: str, hours: float, db_url: str | None, central: bool) -> None:
    """Print a one-time login link for user NAME (it works once, within --hours)."""
    from datetime import timedelta

    if not base_url.startswith(("http://", "https://")):
        raise InputError(f"--url {base_url}: give the web app's http:// or https:// address")
    with opened_catalog(db_url, central) as catalog:
        link = users.create_login_link(catalog, name, timedelta(hours=hours),
                                       created_by=team.current_user())  # fmt: skip
    click.echo(link.url(base_url))
    click.echo(f"login link for {link.user}: works once, until {stamp(link.expires_at)}", err=True)


def read_password(name: str, from_stdin: bool) -> str:
    """A new password for user ``name``: the first line of stdin, else asked twice without
    echo; checked against the rules before anything is written."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"password for {name}", hide_input=True,
                                confirmation_prompt=True)  # fmt: skip
    users.check_password_rules(password, name)
    return password


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the users as JSON.")
@catalog_options
def list_users(as_json: bool, db_url: str | None, central: bool) -> None:
    """List the users: name, role, when and by whom they were added."""
    with opened_catalog(db_url, central) as catalog:
        found = team.list_users(catalog)
    rows = [(u.name, u.role, stamp(u.created_at), u.created_by or "-") for u in found]
    if as_json:
        keys = ("name", "role", "created_at", "created_by")
        echo_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    echo_table(("name", "role", "created", "created by"), rows)


@click.group()
def token() -> None:
    """API tokens of the users of a catalog."""


@token.command("create")
@click.argument("user_name", metavar="USER")
@click.option("--name", "label", default="", help="A label, e.g. the machine it is for.")
@catalog_options
def create_token(user_name: str, label: str, db_url: str | None, central: bool) -> None:
    """Make an API token for USER and print it (only its hash is kept)."""
    with opened_catalog(db_url, central) as catalog:
        made = team.create_token(catalog, user_name, name=label)
    click.echo(made.token)
    click.echo(f"token {made.id} of {made.user}: copy it now, it will not be shown again", err=True)
