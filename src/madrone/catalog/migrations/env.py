"""Alembic's entry point: migrations always run on a connection that madrone hands over
(``madrone db upgrade``), never on a URL read from an ini file."""

from alembic import context

from madrone.catalog.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
