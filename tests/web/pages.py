"""What the page tests read from the server's HTML: elements by id, the options of each
select, script and stylesheet URLs, inline scripts, inline styles or event handlers (the CSP
forbids both), sort buttons in table headers and disabled fieldsets; and the app, catalog and
token helpers those tests share."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask

from madrone.catalog.db import Catalog
from madrone.catalog.users import add_user, create_token
from madrone.config import Settings
from madrone.web import create_app


class Page(HTMLParser):
    """A rendered page, parsed once (a duplicate id fails the test at once)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.options: dict[str, list[str]] = {}
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_styles: list[str] = []
        self.sort_buttons: list[str] = []
        self.disabled_fieldsets = 0
        self._in_script = False
        self._select: str | None = None
        self._stack: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "id" in values:
            assert values["id"] not in self.elements, f"duplicate id {values['id']}"
            self.elements[values["id"] or ""] = (tag, values)
        if "style" in values or any(name.startswith("on") for name in values):
            self.inline_styles.append(f"<{tag} {values}>")
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.scripts.append(values["src"] or "")
        if tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values.get("href") or "")
        if tag == "select":
            self._select = values.get("id")
            self.options[self._select or ""] = []
        if tag == "option" and self._select:
            self.options[self._select].append(values.get("value") or "")
        if tag == "button" and "th" in self._stack and values.get("data-sort"):
            self.sort_buttons.append(values["data-sort"] or "")
        if tag == "fieldset" and "disabled" in values:
            self.disabled_fieldsets += 1
        if tag in ("th", "fieldset"):
            self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        if tag == "select":
            self._select = None
        if tag in ("th", "fieldset") and self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip())

    def attribute(self, element_id: str, name: str) -> str | None:
        return self.elements[element_id][1].get(name)

    def has(self, element_id: str, name: str) -> bool:
        return name in self.elements[element_id][1]


def fresh_catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A new SQLite catalog in ``tmp_path``, disposed after the test (a fixture body)."""
    catalog = Catalog(f"sqlite:///{tmp_path}/c.sqlite")
    yield catalog
    catalog.dispose()


def make_app(catalog: Catalog, **settings: int | str) -> Flask:
    return create_app(Settings(**settings), catalog=catalog)


def assert_served_locally(app: Flask, page: Page, min_bytes: int) -> None:
    """Every script and stylesheet of ``page`` is on this site and served with its type."""
    client = app.test_client()
    for url in page.scripts + page.stylesheets:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} is not on this site"
        with client.get(url) as served:
            assert served.status_code == 200, url
            expected = "text/javascript" if url.endswith(".js") else "text/css"
            assert served.mimetype == expected, url
            assert len(served.data) > min_bytes, url


def token_for(catalog: Catalog, name: str, role: str) -> dict[str, str]:
    add_user(catalog, name, role)
    return {"Authorization": f"Bearer {create_token(catalog, name).token}"}
