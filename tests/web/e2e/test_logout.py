"""Logging out through the header's button: writes are refused afterwards, from the page's own
client and from the browser's request context, and every page sends the visitor to log in.
A copy of the session cookie taken before logging out is dead after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.web.e2e.conftest import Site

AREA_REQUEST = {"corners": [25.08, -11.42, 24.98, -11.32], "indices": ["ndvi"], "name": "nope"}


def test_logged_out_writes_are_refused_and_pages_ask_to_log_in(
    page: Any, site: Site, login: Callable[..., None], browser_log: Any
) -> None:
    browser_log.allow(r"status of 40[13]")
    login(page, fresh=True)  # a session of its own, ended here
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    assert csrf
    _, before = site.api("GET", "/api/jobs")

    with page.expect_navigation():
        page.click("#logout")
    assert page.url.startswith(f"{site.url}/login")
    assert page.locator("#who").count() == 0
    assert page.locator("#login-link").count() == 1 or page.locator("#login-form").count() == 1

    # The page's own client (it sends the CSRF token of the page it is on).
    page.goto("/login")
    refused = page.evaluate(
        """async body => {
            try { await madrone.api('POST', '/api/jobs', body); return null; }
            catch (error) { return { status: error.status, message: error.message }; }
        }""",
        AREA_REQUEST,
    )
    assert refused is not None, "POST /api/jobs succeeded after logging out"
    assert refused["status"] in (401, 403), refused
    assert refused["message"]

    # A raw request with the old CSRF token and whatever cookies the browser still holds.
    response = page.request.post(
        "/api/jobs", data=AREA_REQUEST, headers={"X-CSRFToken": csrf, "Accept": "application/json"}
    )
    # The logged-out session's new CSRF token differs from the old one: a CSRF refusal (400,
    # as auth.py answers every failed CSRF check) or, past it, no user (401/403).
    error = response.json()["error"]
    assert (response.status, error["type"]) == (400, "CSRFError") or response.status in (401, 403)
    assert error["status"] == response.status
    # Without any cookie or token: 401.
    status, body = site.api("POST", "/api/jobs", AREA_REQUEST, token=None)
    assert status == 401, body
    me = page.request.get("/api/me")
    assert me.status == 200 and me.json()["user"] is None

    _, after = site.api("GET", "/api/jobs")
    assert len(after["jobs"]) == len(before["jobs"]), "a job was queued after logging out"

    for path in ("/", "/datasets", "/upload"):
        page.goto(path)
        assert page.url == f"{site.url}/login?next={path}", f"{path} went to {page.url}"
        assert page.locator("#login-form").is_visible()


def test_a_session_cookie_copied_before_logout_is_dead_after_it(
    page: Any, site: Site, login: Callable[..., None], browser: Any
) -> None:
    login(page, fresh=True)
    copied = page.context.cookies()
    with page.expect_navigation():
        page.click("#logout")
    replay = browser.new_context(base_url=site.url)
    try:
        replay.add_cookies(copied)
        me = replay.request.get("/api/me")
        assert me.status == 200
        assert me.json()["user"] is None, "the logged-out session still works from a copy"
    finally:
        replay.close()
