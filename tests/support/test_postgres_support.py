"""The throwaway PostgreSQL cluster itself: PostGIS works, spatial indexes are used, each test
gets its own database, and the server is gone (by PID) once the context exits."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer, postgres_cluster, process_alive


def scalar(url: str, statement: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(statement)).scalar_one()
    finally:
        engine.dispose()


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_postgis_is_installed(postgres_url: str) -> None:
    version = scalar(postgres_url, "SELECT postgis_full_version()")
    assert version.startswith('POSTGIS="3.')
    assert "GEOS=" in version and "PROJ=" in version


def test_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    assert scalar(postgres_server.url, "SHOW listen_addresses") == "127.0.0.1"
    assert int(scalar(postgres_server.url, "SHOW max_connections")) >= 40
    assert postgres_server.url.endswith(f"@127.0.0.1:{postgres_server.port}/madrone")


def test_gist_index_serves_bounding_box_queries(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("CREATE TABLE footprint (id int, geom geometry(Polygon, 4326))")
            )
            # A 20 x 20 grid of one-degree cells from (0, 0) to (20, 20).
            cells = "ST_MakeEnvelope(i, j, i + 1, j + 1, 4326)"
            connection.execute(sa.text(
                f"INSERT INTO footprint SELECT i * 20 + j, {cells} "
                "FROM generate_series(0, 19) i, generate_series(0, 19) j"
            ))  # fmt: skip
            connection.execute(
                sa.text("CREATE INDEX footprint_geom ON footprint USING gist (geom)")
            )
            connection.execute(sa.text("ANALYZE footprint"))
            connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
            query = "FROM footprint WHERE geom && ST_MakeEnvelope(2.5, 2.5, 4.5, 3.5, 4326)"
            plan = connection.execute(sa.text(f"EXPLAIN SELECT id {query}")).scalars().all()
            ids = connection.execute(sa.text(f"SELECT id {query} ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert any("Index Scan" in line and "footprint_geom" in line for line in plan), plan
    # Cells whose x span is 2..5 and y span 2..4 touch the envelope (edges included).
    assert ids == sorted(i * 20 + j for i in (2, 3, 4) for j in (2, 3))


def test_each_test_database_is_fresh_and_dropped(postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database() as first, postgres_server.fresh_database() as second:
        engine = sa.create_engine(first)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE left_behind (id int)"))
        leftover = engine.connect()  # the drop must end a connection a test forgot
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert scalar(first, tables) == 2  # spatial_ref_sys and the new table
        assert scalar(second, tables) == 1  # spatial_ref_sys only
    names = {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]}
    listed = scalar(postgres_server.url, "SELECT string_agg(datname, ' ') FROM pg_database")
    assert names.isdisjoint(listed.split())
    with pytest.raises(sa.exc.OperationalError):
        leftover.execute(sa.text("SELECT 1"))
    leftover.invalidate()
    leftover.close()
    engine.dispose()


def test_server_is_stopped_by_pid_and_removed() -> None:
    with postgres_cluster() as server:
        assert process_alive(server.pid)
        engine = sa.create_engine(server.url)
        with engine.connect() as connection:  # the backend lives while it is connected
            backend = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            assert parent_pid(backend) == server.pid  # the PID is the postmaster's
        engine.dispose()
        folder = server.folder
    assert not process_alive(server.pid)
    assert not Path(folder).exists()


def test_failed_start_raises_with_the_server_log() -> None:
    with (
        pytest.raises(RuntimeError, match="shared_buffers") as caught,
        postgres_cluster({"shared_buffers": "plenty"}),
    ):
        pass
    assert "PostgreSQL exited" in str(caught.value)
