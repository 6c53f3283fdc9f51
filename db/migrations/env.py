"""Alembic environment: runs on the connection the Store hands over (see db/migrate.py),
or on FASHIONBOT_DATABASE_URL / the default SQLite file when run by the alembic CLI."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from engine.config import Settings

    url = Settings().db_url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
