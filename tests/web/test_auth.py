"""Logging in to the web app: Argon2id passwords, sessions that count like API tokens, CSRF on
every session write (not on Bearer requests), no open redirect, throttled failures, one-time
login links, and ``madrone serve``'s first admin. The real CSRF flow throughout: the token is
read from the pages' HTML, as a browser's script does."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from flask import Flask, render_template
from flask.testing import FlaskClient
from sqlalchemy import update

from madrone.catalog.db import Catalog
from madrone.catalog.models import User
from madrone.catalog.users import (
    LoginLink,
    add_user,
    create_login_link,
    create_token,
    get_user,
    set_password,
    set_role,
)
from madrone.cli.main import cli
from madrone.config import Settings
from madrone.web import create_app
from madrone.web.app import caller, require
from madrone.web.auth import KEY_FILE, safe_next
from tests.support.processes import stop

PASSWORD = "correct horse battery"
KEY = "test-key-" + "0" * 40
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
LOGIN_ERROR = re.compile(r'id="login-error"[^>]*>([^<]*)</p>')


@pytest.fixture
def catalog(tmp_path: Path):
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    add_user(catalog, "ana", "editor", password=PASSWORD)
    add_user(catalog, "vi", "viewer", password=PASSWORD)
    yield catalog
    catalog.dispose()


def make_app(catalog: Catalog, **settings) -> Flask:
    app = create_app(Settings(secret_key=KEY, **settings), catalog=catalog)

    @app.get("/api/_read")
    def read():
        user = require("viewer")
        return {"user": user.name if user else None}

    @app.get("/_page")
    def page():
        return render_template("base.html", user=caller())

    @app.post("/api/_write")
    def write():
        user = require("editor")
        return {"user": user.name, "role": user.role}

    return app


@pytest.fixture
def app(catalog: Catalog) -> Flask:
    return make_app(catalog)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def form_token(client: FlaskClient, path: str = "/login") -> str:
    return CSRF_FIELD.search(client.get(path).get_data(as_text=True)).group(1)


def login(client: FlaskClient, name: str = "ana", password: str = PASSWORD, **extra):
    data = {"name": name, "password": password, "csrf_token": form_token(client), **extra}
    return client.post("/login", data=data)


def page_token(client: FlaskClient) -> str:
    """The csrf-token meta tag of a page, as madrone.js reads it."""
    return CSRF_META.search(client.get("/_page").get_data(as_text=True)).group(1)


def error_text(response) -> str:
    return LOGIN_ERROR.search(response.get_data(as_text=True)).group(1).strip()


# -- passwords and sessions -----------------------------------------------------------------
def test_password_login_starts_a_session(catalog: Catalog, client: FlaskClient) -> None:
    stored = get_user(catalog, "ana").password_hash
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored
    assert client.get("/api/_read").status_code == 401

    response = login(client, next="/datasets?q=river")
    assert response.status_code == 302
    assert response.headers["Location"] == "/datasets?q=river"
    assert client.get("/api/_read").get_json() == {"user": "ana"}
    assert client.get("/login").headers["Location"] == "/", "logged in: the form is skipped"


def test_session_cookie_is_httponly_lax_and_secure_over_https(client: FlaskClient) -> None:
    cookie = login(client).headers["Set-Cookie"]
    flags = [part.strip() for part in cookie.split(";")]
    assert flags[0].startswith("madrone_session=")
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(flags)
    assert "Secure" not in flags, "plain http on 127.0.0.1 keeps the cookie"
    over_https = client.get("/login", base_url="https://maps.example.org")
    assert "Secure" in [part.strip() for part in over_https.headers["Set-Cookie"].split(";")]


def test_wrong_password_or_unknown_name_is_refused_alike(client: FlaskClient) -> None:
    for name, password in [("ana", "wrong password"), ("nobody", PASSWORD), ("vi", "")]:
        response = login(client, name, password)
        assert response.status_code == (400 if not password else 401), name
        expected = "Give your user name and password." if not password else (
            f"Wrong user name or password (user “{name}”).")  # fmt: skip
        assert error_text(response) == expected
        assert client.get("/api/_read").status_code == 401


def test_hash_made_with_older_parameters_is_renewed_at_login(catalog, client) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with catalog.session() as session:
        session.execute(update(User).where(User.name == "ana").values(password_hash=weak))
    assert login(client).status_code == 302
    renewed = get_user(catalog, "ana").password_hash
    assert renewed != weak and renewed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert client.get("/api/_read").get_json() == {"user": "ana"}, "the session survives it"


def test_role_changes_and_password_resets_count_at_once(catalog, client) -> None:
    login(client)
    headers = {"X-CSRFToken": page_token(client)}
    assert client.post("/api/_write", headers=headers).get_json() == {"user": "ana",
                                                                      "role": "editor"}  # fmt: skip
    set_role(catalog, "ana", "viewer")
    refused = client.post("/api/_write", headers=headers)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "editor role needed; ana is viewer"
    set_password(catalog, "ana", "another long password")
    assert client.get("/api/_read").status_code == 401, "a new password ends old sessions"


# -- CSRF -----------------------------------------------------------------------------------
def test_session_writes_need_the_csrf_token(client: FlaskClient) -> None:
    login(client)
    refused = client.post("/api/_write")
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    assert (error["status"], error["type"]) == (400, "CSRFError")
    assert error["message"].startswith("CSRF check failed: The CSRF token is missing.")
    token = page_token(client)
    forged = client.post("/api/_write", headers={"X-CSRFToken": "forged"})
    assert forged.status_code == 400
    assert "The CSRF token is invalid." in forged.get_json()["error"]["message"]

    assert client.post("/api/_write", headers={"X-CSRFToken": token}).status_code == 200
    assert client.post("/api/_write", data={"csrf_token": token}).status_code == 200
    assert client.delete("/api/_write").status_code == 400, "every state-changing method"


def test_bearer_requests_need_no_csrf_token(catalog: Catalog, client: FlaskClient) -> None:
    bearer = {"Authorization": f"Bearer {create_token(catalog, 'ana').token}"}
    assert client.post("/api/_write", headers=bearer).get_json()["user"] == "ana"
    login(client, "vi")  # a session cookie beside the token: the token still decides
    assert client.post("/api/_write", headers=bearer).get_json()["user"] == "ana"
    assert client.post("/api/_write").status_code == 400


def test_login_form_needs_its_csrf_token(client: FlaskClient) -> None:
    response = client.post("/login", data={"name": "ana", "password": PASSWORD})
    assert response.status_code == 400
    assert error_text(response) == (
        "This login form has expired (or came from another site): please try again."
    )
    assert client.get("/api/_read").status_code == 401


def test_logout_ends_the_session(client: FlaskClient) -> None:
    login(client)
    token = page_token(client)
    assert client.post("/logout").status_code == 400, "a forged cross-site logout is refused"
    assert client.post("/api/_write", headers={"X-CSRFToken": token}).status_code == 200
    response = client.post("/logout", data={"csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (302, "/login")
    assert client.get_cookie("madrone_session") is None
    after = client.post("/api/_write", headers={"X-CSRFToken": token})
    assert after.status_code == 401
    assert after.get_json()["error"]["message"].startswith("log in or give an API token")


def test_a_copy_of_the_cookie_is_dead_after_logout(app: Flask, catalog: Catalog) -> None:
    from madrone.catalog.sessions import WebSession

    first = app.test_client()
    login(first)
    copied = first.get_cookie("madrone_session").value
    second = app.test_client()
    second.set_cookie("madrone_session", copied)
    assert second.get("/api/_read").get_json() == {"user": "ana"}
    with catalog.session() as session:
        (row,) = session.query(WebSession).all()
        assert row.token_hash not in copied  # only the token's hash is kept
    first.post("/logout", data={"csrf_token": page_token(first)})
    assert second.get("/api/_read").status_code == 401, "the copy ended with the session"
    with catalog.session() as session:
        assert session.query(WebSession).count() == 0


def test_sessions_end_one_at_a_time_and_all_with_a_new_password(app: Flask, catalog) -> None:
    laptop, phone = app.test_client(), app.test_client()
    login(laptop)
    login(phone)
    laptop.post("/logout", data={"csrf_token": page_token(laptop)})
    assert phone.get("/api/_read").get_json() == {"user": "ana"}, "the other session lives"
    login(laptop)
    set_password(catalog, "ana", "another long password")
    assert laptop.get("/api/_read").status_code == 401
    assert phone.get("/api/_read").status_code == 401


# -- redirects ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("https://evil.example", "/"),
        ("//evil.example/path", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\tevil", "/"),
        ("", "/"),
        ("/datasets?q=a&sort=name", "/datasets?q=a&sort=name"),
        ("/#map=5/40/10&layers=abc:1", "/#map=5/40/10&layers=abc:1"),
    ],
)
def test_next_is_a_path_on_this_site_only(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_login_does_not_redirect_off_site(client: FlaskClient) -> None:
    response = login(client, next="https://evil.example")
    assert (response.status_code, response.headers["Location"]) == (302, "/")


# -- throttling -----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sixth_failure_in_five_minutes_is_refused_with_429(app: Flask, client) -> None:
    clock = Clock()
    app.extensions["madrone_auth"].per_name.clock = clock
    for _ in range(4):
        assert login(client, password="wrong password").status_code == 401
    assert login(client).status_code == 302, "success clears the count"
    client.post("/logout", data={"csrf_token": page_token(client)})
    for _ in range(5):
        assert login(client, password="wrong password").status_code == 401
    locked = login(client)  # even the right password, while locked
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "300"
    assert re.fullmatch(
        r"Too many failed logins for “ana” from your address: try again in 5 minutes "
        r"\(after \d\d:\d\d UTC\)\.",
        error_text(locked),
    )
    assert login(client, "vi").status_code == 302, "other names from the address go on"
    client.post("/logout", data={"csrf_token": page_token(client)})
    clock.now += 299
    assert login(client).status_code == 429
    assert login(client).headers["Retry-After"] == "1"
    clock.now += 2
    assert login(client).status_code == 302


# -- one-time login links -------------------------------------------------------------------
def test_login_link_works_once(catalog: Catalog, client: FlaskClient) -> None:
    link = create_login_link(catalog, "ana", timedelta(hours=1))
    assert link.url("http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/login/link/{link.token}"
    with catalog.session() as session:
        stored = session.query(LoginLink).one()
        assert link.token not in stored.token_hash and stored.used_at is None

    response = client.get(f"/login/link/{link.token}")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert client.get("/api/_read").get_json() == {"user": "ana"}

    other = client.application.test_client()
    again = other.get(f"/login/link/{link.token}")
    assert again.status_code == 410
    assert error_text(again).startswith("This login link was already used (at ")
    assert other.get("/api/_read").status_code == 401


def test_expired_or_unknown_login_link_is_refused(catalog: Catalog, client) -> None:
    link = create_login_link(catalog, "ana", timedelta(minutes=5))
    with catalog.session() as session:
        session.execute(update(LoginLink).values(expires_at=get_user(catalog, "ana").created_at))
    expired = client.get(f"/login/link/{link.token}")
    assert expired.status_code == 410
    assert re.fullmatch(r"This login link expired at \S+ \S+ UTC: ask an admin for a new one\.",
                        error_text(expired))  # fmt: skip
    unknown = client.get("/login/link/mdl_" + "x" * 43)
    assert unknown.status_code == 410
    assert error_text(unknown) == "This login link is not valid: ask an admin for a new one."
    assert client.get("/api/_read").status_code == 401


# -- the page -------------------------------------------------------------------------------
def test_login_page_has_no_inline_script_and_escapes_user_text(client: FlaskClient) -> None:
    page = client.get("/login?next=/upload")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\sstyle=|\son[a-z]+\s*=", html), "no inline style or handler"
    for element in ("login-name", "login-password", "login-submit", "login-error"):
        assert f'id="{element}"' in html
    assert '<input type="hidden" name="next" value="/upload">' in html

    evil = "<script>alert(1)</script>"
    refused = login(client, evil, "wrong password")
    html = refused.get_data(as_text=True)
    assert evil not in html
    assert error_text(refused) == (
        "Wrong user name or password (user “&lt;script&gt;alert(1)&lt;/script&gt;”)."
    )
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in html


# -- the signing key ------------------------------------------------------------------------
def test_secret_key_is_made_once_private_and_kept(catalog, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    first = create_app(Settings(), catalog=catalog)
    key_file = tmp_path / "xdg" / "madrone" / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.secret_key == key_file.read_text().strip() and len(first.secret_key) == 64
    client = first.test_client()
    login(client)
    restarted = create_app(Settings(), catalog=catalog)
    assert restarted.secret_key == first.secret_key
    cookie = client.get_cookie("madrone_session").value
    again = restarted.test_client()
    again.set_cookie("madrone_session", cookie)
    assert again.get("/login").headers["Location"] == "/", "the session survives a restart"

    key_file.chmod(0o644)
    with pytest.raises(Exception, match="readable by others: chmod 600"):
        create_app(Settings(), catalog=catalog)


# -- the command line -----------------------------------------------------------------------
def test_user_commands_set_passwords_and_make_links(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MADRONE_USER", "admin")
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    runner = CliRunner()
    short = runner.invoke(cli, ["user", "add", "bo", "--role", "admin", "--password-stdin",
                                "--db", db], input="short\n")  # fmt: skip
    assert short.exit_code == 2, short.output
    assert "password for user 'bo': use at least 8 characters" in short.output
    catalog = Catalog(db)
    with pytest.raises(Exception, match="no user 'bo'"):
        get_user(catalog, "bo")

    added = runner.invoke(cli, ["user", "add", "bo", "--role", "admin", "--password-stdin",
                                "--db", db], input=f"{PASSWORD}\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert (
        added.output.startswith("user bo (admin) added to ") and "with a password" in added.output
    )
    assert get_user(catalog, "bo").password_hash.startswith("$argon2id$")
    client = make_app(catalog).test_client()
    assert login(client, "bo").status_code == 302

    prompt = runner.invoke(cli, ["user", "password", "bo", "--db", db],
                           input="new long password\nnew long password\n")  # fmt: skip
    assert prompt.exit_code == 0, prompt.output
    assert client.get("/api/_read").status_code == 401, "reset: the old session ended"
    assert login(client, "bo", "new long password").status_code == 302

    made = runner.invoke(cli, ["user", "link", "bo", "--url", "https://maps.example.org/",
                               "--db", db])  # fmt: skip
    assert made.exit_code == 0, made.output
    url = made.stdout.strip()
    assert re.fullmatch(r"https://maps\.example\.org/login/link/mdl_[\w-]{43}", url)
    fresh = make_app(catalog).test_client()
    assert fresh.get(url.removeprefix("https://maps.example.org")).status_code == 302
    assert fresh.get("/api/_read").get_json() == {"user": "bo"}
    catalog.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def open_link(url: str) -> tuple[int, str]:
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=30) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def test_serve_makes_a_first_admin_with_a_one_time_link(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MADRONE_")} | {
        "MADRONE_DB_URL": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        "MADRONE_STORAGE_URL": str(tmp_path / "storage"),
        "MADRONE_WORKERS": "1",
        "MADRONE_USER": "ines",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    madrone = str(Path(sys.executable).with_name("madrone"))

    def serve_until_master_runs() -> str:
        port = free_port()
        process = subprocess.Popen([madrone, "serve", "--port", str(port)], env=env,
                                   cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        lines = []
        try:
            for line in process.stderr:
                lines.append(line)
                link = re.search(r"(http://127\.0\.0\.1:\d+/login/link/\S+)", line)
                if link:
                    assert line == (f"madrone serve: first admin 'ines': open {link.group(1)} "
                                    "(valid 24 h, once)\n")  # fmt: skip
                    assert link.group(1).startswith(f"http://127.0.0.1:{port}/login/link/mdl_")
                    assert open_link(link.group(1)) == (302, "/")
                    assert open_link(link.group(1))[0] == 410, "once only"
                if "madrone master" in line:
                    break
        finally:
            code, _, err = stop(process)
        assert code == 0, err
        return "".join(lines) + err

    first = serve_until_master_runs()
    assert "first admin 'ines'" in first
    catalog = Catalog(env["MADRONE_DB_URL"])
    assert get_user(catalog, "ines").role == "admin"
    catalog.dispose()
    time.sleep(0.1)
    assert "first admin" not in serve_until_master_runs(), "an admin exists: nothing printed"
