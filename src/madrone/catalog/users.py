"""Users, roles and API tokens.

A token is ``mdr_`` + 32 random bytes (URL-safe base64); the catalog keeps only its SHA-256,
so a leaked database gives no usable token, and a token is found by hashing what the caller
presents. The plain token is returned once, at creation. Passwords (for the web pages) are
hashed by the web app's memory-hard scheme; this module only stores the hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from madrone.catalog.db import Catalog
from madrone.catalog.models import ROLES, ApiToken, User, utc_now
from madrone.errors import AccessDeniedError, ConflictError, InputError, NotFoundError

TOKEN_PREFIX = "mdr_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``token`` is shown to its owner once and never stored."""

    id: int
    user: str
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(catalog: Catalog, name: str, role: str = "viewer", created_by: str | None = None):
    """Create a user; names are letters, digits and ``_.@-``, roles viewer/editor/admin."""
    if not _NAME.match(name or ""):
        raise InputError(f"user name {name!r}: use 1-80 letters, digits, '_', '.', '@' or '-'")
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    user = User(name=name, role=role, created_by=created_by, created_at=utc_now())
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


def require_role(user: User, role: str) -> None:
    """Refuse a user below ``role`` (viewer < editor < admin)."""
    if ROLES.index(user.role) < ROLES.index(role):
        raise AccessDeniedError(f"{role} role needed; {user.name} is {user.role}")
