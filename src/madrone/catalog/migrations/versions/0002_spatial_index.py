"""A spatial index over dataset footprints: PostGIS geometry with GiST on PostgreSQL, an
R*Tree kept by triggers on SQLite. Rows already in the catalog are indexed on upgrade.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE datasets_rtree USING rtree(rid, west, east, south, north)",
    "INSERT INTO datasets_rtree SELECT rowid, west, east, south, north FROM datasets",
    """CREATE TRIGGER datasets_rtree_insert AFTER INSERT ON datasets BEGIN
        INSERT INTO datasets_rtree VALUES (NEW.rowid, NEW.west, NEW.east, NEW.south, NEW.north);
    END""",
    """CREATE TRIGGER datasets_rtree_update AFTER UPDATE OF west, east, south, north
        ON datasets BEGIN
        UPDATE datasets_rtree SET west = NEW.west, east = NEW.east, south = NEW.south,
            north = NEW.north WHERE rid = NEW.rowid;
    END""",
    """CREATE TRIGGER datasets_rtree_delete AFTER DELETE ON datasets BEGIN
        DELETE FROM datasets_rtree WHERE rid = OLD.rowid;
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER datasets_rtree_delete",
    "DROP TRIGGER datasets_rtree_update",
    "DROP TRIGGER datasets_rtree_insert",
    "DROP TABLE datasets_rtree",
]

# The geometry follows the GeoJSON footprint through a trigger, so no writer can forget it.
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS postgis",
    "ALTER TABLE datasets ADD COLUMN geom geometry(Geometry, 4326)",
    """CREATE FUNCTION datasets_set_geom() RETURNS trigger AS $$
    BEGIN
        NEW.geom := ST_SetSRID(ST_GeomFromGeoJSON(NEW.footprint::text), 4326);
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER datasets_geom BEFORE INSERT OR UPDATE OF footprint ON datasets
        FOR EACH ROW EXECUTE FUNCTION datasets_set_geom()""",
    "UPDATE datasets SET geom = ST_SetSRID(ST_GeomFromGeoJSON(footprint::text), 4326)",
    "CREATE INDEX ix_datasets_geom ON datasets USING gist (geom)",
]
POSTGRES_DOWN = [
    "DROP TRIGGER datasets_geom ON datasets",
    "DROP FUNCTION datasets_set_geom()",
    "ALTER TABLE datasets DROP COLUMN geom",
]


def upgrade() -> None:
    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else POSTGRES_DOWN:
        op.execute(statement)
