"""The catalog's tables: datasets, jobs (mosaic requests), users and their API tokens.

One schema serves both engines: a SQLite file (the local catalog) and PostgreSQL with PostGIS
(the team's central catalog). Footprints are GeoJSON text plus a bbox in plain columns; the
spatial index over them is engine-specific and lives in the migrations (an R*Tree table kept
by triggers on SQLite, a PostGIS geometry column with a GiST index on PostgreSQL).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from madrone.catalog.vocabulary import (  # noqa: F401 (the models' words, re-exported)
    DATASET_KINDS,
    FINAL_STATES,
    JOB_STATES,
    ROLES,
    SCOPES,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every engine (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} given to the catalog; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    """A person or a service account; tokens and rows they make point back here."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(80))


class ApiToken(Base):
    """An API token, kept only as its SHA-256 (tokens are long random strings, so a fast
    hash suffices); the plain token is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(80))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Job(Base):
    """A processing request (a mosaic request in the original) and its whole life."""

    __tablename__ = "jobs"
    __table_args__ = (
        # Claim order over queued jobs only (migration 0003).
        Index(
            "ix_jobs_queued",
            text("priority DESC"),
            "created_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index("ix_jobs_running_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    tiles_done: Mapped[int] = mapped_column(Integer, default=0)
    tiles_total: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dataset_id: Mapped[str | None] = mapped_column(String(64))
    requester: Mapped[str | None] = mapped_column(String(80))


class Dataset(Base):
    """Something the map shows: an index product, a GeoTIFF, an image placed by two corners,
    vector GeoJSON or a point. Assets are storage URLs, each with its size and sha256."""

    __tablename__ = "datasets"
    __table_args__ = (
        Index("ix_datasets_created", "created_at", "id"),
        Index("ix_datasets_owner", "owner"),
        Index("ix_datasets_index", "index_name"),
        Index("ix_datasets_dates", "date_start", "date_end"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))
    index_name: Mapped[str | None] = mapped_column(String(80))
    expression: Mapped[str | None] = mapped_column(Text)
    footprint: Mapped[dict[str, Any]] = mapped_column(JSON)
    west: Mapped[float] = mapped_column(Float)
    south: Mapped[float] = mapped_column(Float)
    east: Mapped[float] = mapped_column(Float)
    north: Mapped[float] = mapped_column(Float)
    crs: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[float | None] = mapped_column(Float)
    date_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    date_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(16), default="local")
    job_id: Mapped[str | None] = mapped_column(String(64))
    shared_from: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)
