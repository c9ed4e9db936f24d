"""Logging in to the web pages: password login, one-time login links, sessions and CSRF.

- ``GET/POST /login`` checks a password (Argon2id, ``catalog.users.check_password``) and
  starts a session; ``POST /logout`` ends it; ``GET /login/link/<token>`` spends a one-time
  login link (``madrone user link``, or the first admin's link printed by ``madrone serve``).
- The session is Flask's signed cookie ``madrone_session``: HttpOnly, SameSite=Lax, valid
  12 hours, Secure when the request came over https (behind a TLS proxy, the proxy must pass
  the scheme on, e.g. gunicorn's ``--forwarded-allow-ips``). It holds a random session token
  whose hash the catalog keeps (``catalog/sessions.py``); the session and its user are read
  from the catalog on every request, so a changed role counts at once, and logging out, a
  reset password or a deleted user ends the session even for a copy of the cookie.
- The signing key is ``MADRONE_SECRET_KEY``, else a random key kept in
  ``user_data_dir()/web-secret-key`` (made once with mode 0600, atomically, so gunicorn
  workers starting together agree on it).
- CSRF (Flask-WTF): every POST, PUT, PATCH and DELETE that carries the session cookie, and
  every ``POST /login``, needs the form field ``csrf_token`` or the header ``X-CSRFToken``.
  Requests with ``Authorization: Bearer`` are exempt: a browser never adds that header
  cross-site. A request with neither cookie nor token carries no identity to abuse, and is
  refused by ``require()`` (401) if it needs one.
- Failed logins are limited per process (in memory; under gunicorn each worker counts on
  its own): 5 failures for one name from one address within 5 minutes, or 30 from one
  address, lock that pair (or address) out for 5 minutes with 429; a successful login
  clears its name's count.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from madrone.catalog.models import User
from madrone.catalog.sessions import end_session, session_owner, start_session
from madrone.catalog.users import check_password, use_login_link
from madrone.config import Settings, user_data_dir
from madrone.errors import AccessDeniedError, InputError
from madrone.web.app import app_catalog, error_body

SESSION_COOKIE = "madrone_session"
SESSION_LIFETIME = timedelta(hours=12)
KEY_FILE = "web-secret-key"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_PREFIXES = ("/api", "/stac", "/tiles")

blueprint = Blueprint("auth", __name__, template_folder="templates")


# -- installing -----------------------------------------------------------------------------
def install_auth(app: Flask) -> None:
    """Sessions, Flask-Login, CSRF and the login routes on ``app`` (made by ``create_app``
    with its settings in ``app.config["MADRONE_SETTINGS"]``)."""
    settings: Settings = app.config["MADRONE_SETTINGS"]
    app.secret_key = settings.secret_key or persisted_secret_key()
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by _check_csrf, which knows the exemptions
        WTF_CSRF_TIME_LIMIT=None,  # a token lasts as long as its session
    )
    logins = LoginManager()
    logins.session_protection = "basic"
    logins.user_loader(_load_user)
    logins.init_app(app)
    csrf = CSRFProtect(app)
    app.extensions["madrone_auth"] = AuthState(csrf)
    app.before_request(_check_csrf)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_blueprint(blueprint)


@dataclass
class AuthState:
    """What the auth routes keep per app: the CSRF checker and the login throttles."""

    csrf: CSRFProtect
    per_name: LoginThrottle = field(default_factory=lambda: LoginThrottle(limit=5))
    per_address: LoginThrottle = field(default_factory=lambda: LoginThrottle(limit=30))


def _state() -> AuthState:
    return current_app.extensions["madrone_auth"]


def persisted_secret_key(folder: str | None = None) -> str:
    """The key in ``folder/web-secret-key`` (default ``user_data_dir()``), made on first use:
    32 random bytes in hex, written to a private temporary file and linked into place, so
    two processes starting at once end up with the same key.

    Raises:
        InputError: the file is readable by others, or holds no usable key.
    """
    folder = folder or user_data_dir()
    path = os.path.join(folder, KEY_FILE)
    if not os.path.exists(path):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(temporary)
    if os.stat(path).st_mode & 0o077:
        raise InputError(f"{path}: the web app's secret key is readable by others: chmod 600 it")
    with open(path, encoding="utf-8") as handle:
        key = handle.read().strip()
    if len(key) < 32:
        raise InputError(
            f"{path}: holds no usable secret key (fewer than 32 characters): delete it to make "
            "a new one, or set MADRONE_SECRET_KEY"
        )
    return key


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag on whenever the request came
    over https (or ``SESSION_COOKIE_SECURE`` says so)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


# -- the session user -----------------------------------------------------------------------
class SessionUser(UserMixin):
    """A catalog user as Flask-Login sees it. The id in the cookie is the session's random
    token; the catalog keeps its hash (``catalog/sessions.py``), so a session ends for good
    when it is ended there, whatever copies of the cookie exist."""

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token

    def get_id(self) -> str:
        return self.token


def _load_user(token: str) -> SessionUser | None:
    user = session_owner(app_catalog(), token)
    return SessionUser(user, token) if user is not None else None


def session_user() -> User | None:
    """The user logged in to this request's session, read fresh from the catalog; None when
    nobody is (or the app has no auth installed)."""
    if not has_request_context() or "madrone_auth" not in current_app.extensions:
        return None
    return current_user.user if current_user.is_authenticated else None


def _start_session(user: User) -> None:
    session.clear()  # a fresh session: a new CSRF token, nothing carried over
    token = start_session(app_catalog(), user.id, SESSION_LIFETIME)
    login_user(SessionUser(user, token))
    session.permanent = True


# -- CSRF -----------------------------------------------------------------------------------
def _check_csrf() -> None:
    if request.method not in STATE_CHANGING or _has_bearer():
        return
    carries_session = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    if carries_session or request.path == "/login":
        _state().csrf.protect()


def _has_bearer() -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _csrf_error(error: CSRFError) -> Any:
    reason = error.description or "The CSRF token is missing or invalid."
    if request.path.startswith(JSON_PREFIXES):
        message = (
            f"CSRF check failed: {reason} A session request needs the X-CSRFToken header "
            "(the csrf-token of the page); API clients send 'Authorization: Bearer <token>'."
        )
        return error_body(400, message, "CSRFError")
    if request.path == "/login" and request.method == "POST":
        message = "This login form has expired (or came from another site): please try again."
        return _login_page(request.form.get("name", ""), message, 400)
    message = f"Refused: {reason} Reload the page and try again.\n"
    return Response(message, 400, mimetype="text/plain")


# -- failed logins --------------------------------------------------------------------------
class LoginThrottle:
    """Failures per key within ``window`` seconds; ``limit`` of them lock the key out for
    ``cooldown`` seconds. In memory, for one process; thread-safe."""

    def __init__(
        self,
        limit: int,
        window: float = 300.0,
        cooldown: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window, self.cooldown = limit, window, cooldown
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[object, list[float]] = {}
        self._locked: dict[object, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: object) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        with self._lock:
            until = self._locked.get(key)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._locked[key]
                return 0.0
            return left

    def failed(self, key: object) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._forget_old(now)
            recent = [t for t in self._failures.get(key, ()) if now - t < self.window]
            recent.append(now)
            if len(recent) >= self.limit:
                self._locked[key] = now + self.cooldown
                self._failures.pop(key, None)
            else:
                self._failures[key] = recent

    def succeeded(self, key: object) -> None:
        with self._lock:
            self._failures.pop(key, None)
            self._locked.pop(key, None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, times in self._failures.items() if now - times[-1] >= self.window]:
            del self._failures[key]
        for key in [k for k, until in self._locked.items() if until <= now]:
            del self._locked[key]


def _retry_message(name: str, seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return (
        f"Too many failed logins for “{name}” from your address: try again in {minutes} "
        f"minute{'s' if minutes > 1 else ''} (after {at:%H:%M} UTC)."
    )


# -- routes ---------------------------------------------------------------------------------
def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site (``/datasets?q=x``), else ``/``: no scheme,
    no host, no ``//`` or backslash a browser would read as another host."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(char) < 32 or ord(char) == 127 for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _login_page(
    name: str = "", error: str = "", status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    target = safe_next(request.values.get("next"))
    html = render_template("login.html", user=None, name=name, error=error, next=target)
    response = Response(html, status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers or {})
    return response


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The login form; a correct name and password start a session and go to ``next``."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if session_user() is not None:
            return redirect(target)
        return _login_page()
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    if not name or not password:
        return _login_page(name, "Give your user name and password.", 400)
    state, address = _state(), request.remote_addr or "unknown"
    by_name, by_address = (address, name.casefold()), address
    wait = max(state.per_name.retry_after(by_name), state.per_address.retry_after(by_address))
    if wait:
        message = _retry_message(name, wait)
        return _login_page(name, message, 429, {"Retry-After": str(math.ceil(wait))})
    try:
        user = check_password(app_catalog(), name, password)
    except AccessDeniedError:
        state.per_name.failed(by_name)
        state.per_address.failed(by_address)
        return _login_page(name, f"Wrong user name or password (user “{name}”).", 401)
    state.per_name.succeeded(by_name)
    _start_session(user)
    return redirect(target)


@blueprint.get("/login/link/<token>")
def login_link(token: str) -> Any:
    """A one-time login link: logs its user in and goes to the map; works once."""
    try:
        user = use_login_link(app_catalog(), token)
    except AccessDeniedError as error:
        return _login_page(error=f"{str(error)[0].upper()}{str(error)[1:]}.", status=410)
    _start_session(user)
    return redirect("/")


@blueprint.post("/logout")
def logout() -> Any:
    """End the session (the form carries the CSRF token like any other)."""
    if current_user.is_authenticated:
        end_session(app_catalog(), current_user.token)
    logout_user()
    session.clear()
    return redirect("/login")
