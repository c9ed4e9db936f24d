"""Logging in through the form, a refused password, and the first admin's one-time link that
``madrone serve`` prints on a catalog without an admin."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import stop
from tests.web.e2e.conftest import Site, clean_env, start_serve

LINK = re.compile(r"first admin '([^']+)': open (http://\S+/login/link/\S+)")


def test_login_form_shows_the_user_in_the_header(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    page.goto("/datasets")
    assert page.url.startswith(f"{site.url}/login?next=")  # anonymous: sent to log in
    login(page)
    assert page.url == f"{site.url}/"
    assert page.locator("#who").inner_text().split()[0] == site.admin
    assert page.locator("meta[name=madrone-user]").get_attribute("content") == site.admin
    assert page.locator("meta[name=madrone-role]").get_attribute("content") == "admin"
    assert page.locator("#logout").is_visible()
    assert page.locator("#login-link").count() == 0
    me = page.evaluate("() => madrone.api('GET', '/api/me')")
    assert me["user"] == {"name": site.admin, "role": "admin"}
    assert me["central"] is True


def test_login_with_next_returns_to_the_page_asked_for(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    if site.password is None:
        pytest.skip(site.password_note)
    page.goto("/upload")
    assert page.url == f"{site.url}/login?next=/upload"
    page.fill("#login-name", site.admin)
    page.fill("#login-password", site.password)
    with page.expect_navigation():
        page.click("#login-submit")
    assert page.url == f"{site.url}/upload"
    assert page.locator("#who").inner_text().split()[0] == site.admin


def test_a_wrong_password_is_refused_in_the_form(page: Any, site: Site, browser_log: Any) -> None:
    if site.password is None:
        pytest.skip(site.password_note)
    browser_log.allow(r"status of 40[13]")
    page.goto("/login")
    page.fill("#login-name", site.admin)
    page.fill("#login-password", "not the password at all")
    with page.expect_navigation():
        page.click("#login-submit")
    assert page.url.startswith(f"{site.url}/login")
    error = page.locator("#login-error")
    assert error.is_visible()
    assert error.inner_text().strip(), "#login-error is empty after a wrong password"
    assert site.password not in page.content()
    assert page.locator("#who").count() == 0
    assert page.locator("#login-name").input_value() == site.admin


def test_serve_prints_a_one_time_link_for_the_first_admin(
    browser: Any, tmp_path: Path, browser_log: Any
) -> None:
    """A catalog without an admin: serve makes MADRONE_USER one and prints a link that logs
    them in once; the same link a second time does not."""
    env = clean_env(
        tmp_path,
        MADRONE_DB_URL=f"sqlite:///{tmp_path / 'first.sqlite'}",
        MADRONE_STORAGE_URL=str(tmp_path / "storage"),
        MADRONE_USER="first",
    )
    process, url, log = start_serve(env, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not (found := LINK.search(log.read_text())) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found, f"no one-time link in the output of madrone serve:\n{log.read_text()}"
        assert found.group(1) == "first"
        link = found.group(2)
        assert link.startswith(f"{url}/login/link/")
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            tab = context.new_page()
            tab.on("pageerror", lambda error: browser_log.page_errors.append(str(error)))
            tab.goto(link)
            assert tab.url == f"{url}/"
            assert tab.locator("#who").inner_text().split()[0] == "first"
            assert tab.locator("meta[name=madrone-role]").get_attribute("content") == "admin"
        finally:
            context.close()
        again = browser.new_context()
        try:
            tab = again.new_page()
            tab.goto(link)
            assert tab.locator("#who").count() == 0, "the one-time link logged in twice"
            assert "/login" in tab.url or tab.locator("#login-link").count() == 1
        finally:
            again.close()
        assert not browser_log.page_errors
    finally:
        code, _, _ = stop(process)
        assert code == 0, log.read_text()[-3000:]
