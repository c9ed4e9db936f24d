"""Users, roles, API tokens, passwords and one-time login links.

A token is ``mdr_`` + 32 random bytes (URL-safe base64); the catalog keeps only its SHA-256,
so a leaked database gives no usable token, and a token is found by hashing what the caller
presents. The plain token is returned once, at creation. One-time login links (``mdl_`` +
32 random bytes) are kept the same way, with an expiry and the moment they were used.

Passwords (for the web pages) are hashed with Argon2id (argon2-cffi's ``PasswordHasher``,
memory-hard, RFC 9106 parameters); a hash made with older parameters is replaced at the next
successful login. A name that has no password is checked against a dummy hash all the same, so
the time a refusal takes does not tell which names exist.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ForeignKey, Integer, String, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from madrone.catalog.db import Catalog
from madrone.catalog.models import ROLES, ApiToken, Base, User, UTCDateTime, utc_now
from madrone.errors import AccessDeniedError, ConflictError, InputError, NotFoundError

TOKEN_PREFIX = "mdr_"
LINK_PREFIX = "mdl_"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # hashing is costly by design; a megabyte of "password" is an attack
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")
PASSWORDS = PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile
WRONG_PASSWORD = "wrong user name or password"


class LoginLink(Base):
    """A one-time login link (migration 0004), kept only as its token's SHA-256."""

    __tablename__ = "login_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(80))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``token`` is shown to its owner once and never stored."""

    id: int
    user: str
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewLoginLink:
    """A login link just made: ``token`` goes into the link once and is never stored."""

    user: str
    token: str
    expires_at: datetime

    def url(self, base: str) -> str:
        """The link on the web app at ``base`` (``http://host:port``)."""
        return f"{base.rstrip('/')}/login/link/{self.token}"


def add_user(
    catalog: Catalog,
    name: str,
    role: str = "viewer",
    created_by: str | None = None,
    password: str | None = None,
) -> User:
    """Create a user; names are letters, digits and ``_.@-``, roles viewer/editor/admin.
    With ``password`` the user can log in to the web pages (checked before anything is
    written, so a refused password leaves no user behind)."""
    if not _NAME.match(name or ""):
        raise InputError(f"user name {name!r}: use 1-80 letters, digits, '_', '.', '@' or '-'")
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    password_hash = None if password is None else hash_password(password, name)
    user = User(name=name, role=role, created_by=created_by, created_at=utc_now(),
                password_hash=password_hash)  # fmt: skip
    try:
        with catalog.session() as session:
            session.add(user)
    except IntegrityError:
        raise ConflictError(f"user {name!r} already exists") from None
    return user


def get_user(catalog: Catalog, name: str) -> User:
    with catalog.session() as session:
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None:
            raise NotFoundError(f"no user {name!r} in catalog {catalog.safe_url}")
        return user


def list_users(catalog: Catalog) -> list[User]:
    with catalog.session() as session:
        return list(session.scalars(select(User).order_by(User.name)))


def create_token(
    catalog: Catalog, user_name: str, name: str = "", created_by: str | None = None
) -> NewToken:
    """Make an API token for a user; only its hash is stored."""
    user = get_user(catalog, user_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:12],
        created_at=utc_now(),
        created_by=created_by,
        revoked=False,
    )
    with catalog.session() as session:
        session.add(row)
    return NewToken(row.id, user.name, token)


def authenticate(catalog: Catalog, token: str) -> User:
    """The user a token belongs to; an unknown or revoked token is refused."""
    if not token or not token.startswith(TOKEN_PREFIX):
        raise AccessDeniedError("no valid API token given (expected 'mdr_...')")
    with catalog.session() as session:
        query = select(ApiToken, User).join(User).where(ApiToken.token_hash == hash_token(token))
        row = session.execute(query).one_or_none()
        if row is None or row[0].revoked:
            raise AccessDeniedError(f"API token {token[:12]}... is unknown or revoked")
        row[0].last_used_at = utc_now()
        return row[1]


def revoke_token(catalog: Catalog, token_id: int) -> None:
    with catalog.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFoundError(f"no API token {token_id}")
        row.revoked = True


def get_user_by_id(catalog: Catalog, user_id: int) -> User | None:
    """The user with this id, or None (deleted since, say)."""
    with catalog.session() as session:
        return session.get(User, user_id)


def set_role(catalog: Catalog, name: str, role: str) -> User:
    """Give user ``name`` another role."""
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    with catalog.session() as session:
        user = _user_row(session, catalog, name)
        user.role = role
        return user


# -- passwords ------------------------------------------------------------------------------
def check_password_rules(password: str, name: str = "") -> None:
    """Refuse a password that is too short or too long, or equal to the user's name."""
    who = f" for user {name!r}" if name else ""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InputError(f"password{who}: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"password{who}: use at most {MAX_PASSWORD} characters")
    if name and password.casefold() == name.casefold():
        raise InputError(f"password{who}: must not be the user name")


def hash_password(password: str, name: str = "") -> str:
    """The Argon2id hash of a password that passes ``check_password_rules``."""
    check_password_rules(password, name)
    return PASSWORDS.hash(password)


def set_password(catalog: Catalog, name: str, password: str) -> User:
    """Set or reset the web password of user ``name`` (stored as an Argon2id hash); the
    user's web sessions end."""
    from madrone.catalog.sessions import WebSession

    password_hash = hash_password(password, name)
    with catalog.session() as session:
        user = _user_row(session, catalog, name)
        user.password_hash = password_hash
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return user


def check_password(catalog: Catalog, name: str, password: str) -> User:
    """The user ``name`` if ``password`` is theirs; the hash is renewed when the hasher's
    parameters have changed since it was made.

    Raises:
        AccessDeniedError: an unknown name, a user without a password or a wrong password,
            all with one message, after about the same time.
    """
    with catalog.session() as session:
        user = None
        if isinstance(name, str) and _NAME.match(name):
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
        stored = user.password_hash if user is not None else None
        if not _verify(stored or _dummy_hash(), password) or stored is None:
            raise AccessDeniedError(WRONG_PASSWORD)
        if PASSWORDS.check_needs_rehash(stored):
            user.password_hash = PASSWORDS.hash(password)
        return user


def _verify(stored: str, password: str) -> bool:
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    try:
        return PASSWORDS.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return PASSWORDS.hash(secrets.token_urlsafe(16))


# -- one-time login links -------------------------------------------------------------------
def create_login_link(
    catalog: Catalog,
    user_name: str,
    ttl: timedelta = timedelta(hours=24),
    created_by: str | None = None,
) -> NewLoginLink:
    """A link that logs ``user_name`` in once within ``ttl``; only its hash is stored."""
    if ttl <= timedelta(0):
        raise InputError(f"a login link must be valid for some time, not {ttl}")
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    expires_at = utc_now() + ttl
    with catalog.session() as session:
        user = _user_row(session, catalog, user_name)
        session.add(LoginLink(user_id=user.id, token_hash=hash_token(token), created_at=utc_now(),
                              created_by=created_by, expires_at=expires_at))  # fmt: skip
    return NewLoginLink(user_name, token, expires_at)


def use_login_link(catalog: Catalog, token: str) -> User:
    """The user a login link belongs to; the link is spent by this call (one winner even
    when two requests race for it).

    Raises:
        AccessDeniedError: the link is unknown, already used or expired (the message says
            which).
    """
    token_hash = hash_token(token or "")
    now = utc_now()
    with catalog.session() as session:
        spent = session.execute(
            update(LoginLink)
            .where(
                LoginLink.token_hash == token_hash,
                LoginLink.used_at.is_(None),
                LoginLink.expires_at > now,
            )
            .values(used_at=now)
        )
        link = session.scalars(select(LoginLink).where(LoginLink.token_hash == token_hash)).first()
        if spent.rowcount == 1 and link is not None:
            return session.get(User, link.user_id)
    if link is None:
        raise AccessDeniedError("this login link is not valid: ask an admin for a new one")
    if link.used_at is not None:
        raise AccessDeniedError(
            f"this login link was already used (at {link.used_at:%Y-%m-%d %H:%M} UTC); a link "
            "works once: log in with your password or ask an admin for a new link"
        )
    raise AccessDeniedError(
        f"this login link expired at {link.expires_at:%Y-%m-%d %H:%M} UTC: ask an admin for a "
        "new one"
    )


def first_admin_link(
    catalog: Catalog, name: str, ttl: timedelta = timedelta(hours=24)
) -> NewLoginLink | None:
    """When the catalog has no admin: make user ``name`` one (created if missing) and return
    a one-time login link for them; None when an admin exists."""
    with catalog.session() as session:
        admins = session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))
    if admins:
        return None
    try:
        get_user(catalog, name)
    except NotFoundError:
        add_user(catalog, name, "admin", created_by="madrone serve")
    else:
        set_role(catalog, name, "admin")
    return create_login_link(catalog, name, ttl, created_by="madrone serve")


def _user_row(session, catalog: Catalog, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        raise NotFoundError(f"no user {name!r} in catalog {catalog.safe_url}")
    return user


def require_role(user: User, role: str) -> None:
    """Refuse a user below ``role`` (viewer < editor < admin)."""
    if ROLES.index(user.role) < ROLES.index(role):
        raise AccessDeniedError(f"{role} role needed; {user.name} is {user.role}")
