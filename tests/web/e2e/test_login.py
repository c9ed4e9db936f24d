"""Logging in through the form (and back to the page asked for), a refused password, and a
one-time login link."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from madrone.catalog.db import Catalog
from madrone.catalog.users import add_user, create_login_link
from tests.web.e2e.conftest import Site


def test_login_form_shows_the_user_in_the_header(
    page: Any, site: Site, login: Callable[..., None]
) -> None:
    page.goto("/datasets")
    assert page.url.startswith(f"{site.url}/login?next=")  # anonymous: sent to log in
    login(page, fresh=True)
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


def test_a_one_time_link_logs_a_viewer_in_once(
    page: Any, browser: Any, site: Site, browser_log: Any
) -> None:
    """A link from ``madrone user link`` (here its function, on the server's catalog) logs
    a viewer in, who may look but not request; the same link a second time does not.
    (``madrone serve`` printing the first admin's link is tests/web/test_auth.py's.)"""
    catalog = Catalog(site.env["MADRONE_DB_URL"])
    try:
        add_user(catalog, "lin", "viewer", created_by="e2e")
        link = create_login_link(catalog, "lin", timedelta(minutes=10)).url(site.url)
    finally:
        catalog.dispose()
    page.goto(link)
    assert page.url == f"{site.url}/"
    assert page.locator("#who").inner_text().split()[0] == "lin"
    assert page.locator("meta[name=madrone-role]").get_attribute("content") == "viewer"
    page.locator("#request-note").wait_for()  # a viewer is told requests need an editor
    assert page.locator("#request-fieldset").evaluate("f => f.disabled")
    assert page.locator("#request-submit").is_disabled()

    browser_log.allow(r"status of 40[0-9]")
    again = browser.new_context(base_url=site.url)
    try:
        tab = again.new_page()
        tab.goto(link)
        assert tab.locator("#who").count() == 0, "the one-time link logged in twice"
        assert "/login" in tab.url or tab.locator("#login-link").count() == 1
    finally:
        again.close()
