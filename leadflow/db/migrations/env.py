"""Alembic's environment for the delivery ledger. leadflow runs it itself (leadflow.db.database.migrate,
on a connection it holds a lock on); `alembic -c delivery/alembic.ini ...` works too, with
LEADFLOW_DATABASE_URL naming the database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from leadflow.db.schema import metadata
from leadflow.settings import Settings

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = Settings.from_env().database_url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set LEADFLOW_DATABASE_URL to the ledger's database")
    with create_engine(url).connect() as connection:
        _migrate(connection)
        connection.commit()


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
