"""Web sessions held by the catalog (migration 0005).

A session is a random token in the browser's signed cookie and its SHA-256 here, with an
expiry. The web app checks the row on every request, so ending a session (logging out, a
new password, an admin) holds even for a copy of the cookie taken before: a signed cookie
alone cannot be taken back. Expired rows are removed as new sessions start.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from madrone.catalog.db import Catalog
from madrone.catalog.models import Base, User, UTCDateTime, utc_now
from madrone.catalog.users import hash_token

SESSION_PREFIX = "mds_"


class WebSession(Base):
    """One logged-in browser session, kept only as its token's SHA-256."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


def start_session(catalog: Catalog, user_id: int, lifetime: timedelta) -> str:
    """A new session of the user for ``lifetime``; returns the token for the cookie."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    now = utc_now()
    with catalog.session() as session:
        session.execute(delete(WebSession).where(WebSession.expires_at <= now))
        session.add(
            WebSession(
                token_hash=hash_token(token),
                user_id=user_id,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return token


def session_owner(catalog: Catalog, token: str) -> User | None:
    """The user of a live session (one query), or None when the session ended or expired."""
    query = (
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == hash_token(token), WebSession.expires_at > utc_now())
    )
    with catalog.session() as session:
        return session.scalars(query).one_or_none()


def end_session(catalog: Catalog, token: str) -> bool:
    """End one session; False when it had already ended."""
    with catalog.session() as session:
        gone = session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))
        return bool(gone.rowcount)


def end_user_sessions(catalog: Catalog, user_id: int) -> int:
    """End every session of a user (a new password, a removed role); how many ended."""
    with catalog.session() as session:
        gone = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
        return int(gone.rowcount or 0)
