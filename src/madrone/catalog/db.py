"""Connecting to a catalog: the local SQLite file by default, PostgreSQL + PostGIS for the
team. Both get the same schema through Alembic; the local file upgrades itself on first use
(nothing to install), a central database only through ``madrone db upgrade``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from madrone.catalog.vocabulary import HEAD
from madrone.config import Settings, user_data_dir
from madrone.errors import CatalogError


def default_db_url(settings: Settings) -> str:
    """The local catalog's URL: the setting, else a SQLite file in the user's data folder."""
    if settings.db_url:
        return settings.db_url
    return "sqlite:///" + os.path.join(user_data_dir(), "catalog.sqlite")


class Catalog:
    """One catalog database: its engine, sessions and migrations.

    Args:
        url: an SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).
        upgrade: bring the schema to the newest revision when it is behind (the default for
            the local SQLite catalog; a central database is upgraded by its admin).
    """

    def __init__(self, url: str, *, upgrade: bool | None = None) -> None:
        self.url = _normalise(url)
        self.engine = _make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        wanted = upgrade if upgrade is not None else self.dialect == "sqlite"
        if wanted and self.current() != HEAD:
            self.upgrade()
        self._checked = False

    @classmethod
    def local(cls, settings: Settings) -> Catalog:
        return cls(default_db_url(settings))

    @classmethod
    def central(cls, settings: Settings) -> Catalog:
        if not settings.central_db_url:
            raise CatalogError(
                "no central catalog configured: set MADRONE_CENTRAL_DB_URL "
                "(postgresql+psycopg://user:password@host/database)"
            )
        return cls(settings.central_db_url)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        self.require_schema()
        with self.sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def statement_connection(self) -> Iterator[Connection]:
        """A connection for statements that are atomic by themselves (a claim, a heartbeat):
        on PostgreSQL in autocommit, one round trip instead of BEGIN, statement and COMMIT;
        on SQLite in a transaction (its BEGIN IMMEDIATE costs no round trip)."""
        self.require_schema()
        if self.is_postgres:
            with self._autocommit.connect() as connection:
                yield connection
        else:
            with self.engine.begin() as connection:
                yield connection

    def require_schema(self) -> None:
        """Refuse to work on a database whose schema is not at the newest revision."""
        if self._checked:
            return
        revision = self.current()
        if revision != HEAD:
            raise CatalogError(
                f"catalog {self.safe_url} is at revision {revision or 'none (empty)'}, this "
                f"madrone needs {HEAD}: run `madrone db upgrade` (with the same --db URL, or "
                "--central)"
            )
        self._checked = True

    def current(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self._connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate the schema up to ``revision``; returns the revision reached."""
        from alembic import command

        with self._connect() as connection, connection.begin():
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        self._checked = False
        return self.current()

    def tables(self) -> set[str]:
        return set(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _connect(self):
        try:
            with self.engine.connect() as connection:
                yield connection
        except OperationalError as error:
            raise CatalogError(
                f"cannot reach catalog {self.safe_url}: {error.orig or error}"
            ) from error


def _normalise(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs; make SQLite folders."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CatalogError(f"catalog URL {url!r} is not an SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = os.path.dirname(os.path.abspath(parsed.database))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise CatalogError(f"cannot create catalog folder {folder}: {error.strerror}") from None
    elif parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise CatalogError(
            f"catalog URL {parsed.render_as_string(hide_password=True)}: "
            "only sqlite:/// and postgresql:// catalogs are supported"
        )
    return url


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            _serialise_sqlite_writes(engine)
            return engine
        # No ping per checkout (a round trip per claim): a connection a restart broke fails
        # once, is discarded by the pool, and the service retries.
        return create_engine(url, pool_size=5, max_overflow=10, pool_recycle=1800)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise CatalogError(
            f"no driver for {url.split(':', 1)[0]}: install madrone[postgres] ({error})"
        ) from None


def _serialise_sqlite_writes(engine: Engine) -> None:
    """Every SQLite transaction begins IMMEDIATE: it takes the write lock at once, so two
    processes claiming the same job queue one after the other instead of both reading the
    same row (SQLite's stand-in for ``FOR UPDATE SKIP LOCKED``). WAL keeps readers going."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("madrone.catalog") / "migrations")
    )
    return config
