"""Alembic environment (the async recipe): migrations run on the same async URL the app
uses (``sqlite+aiosqlite://…``, ``postgresql+asyncpg://…``), no second driver.

The URL, or an open connection, comes in from the caller: ``db.migrate`` hands over its
connection (``config.attributes["connection"]``); the alembic CLI passes a URL with
``-x url=…`` or ``sqlalchemy.url``, else FASHIONBOT_DATABASE_URL is used."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.models import Base

target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    config = context.config
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("FASHIONBOT_DATABASE_URL")
    )
    if not url:
        raise SystemExit(
            "No database URL: pass -x url=sqlite+aiosqlite:///data/fashionbot.sqlite3 (or set FASHIONBOT_DATABASE_URL)"
        )
    return url


async def run_async_migrations(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations(_url()))


run_migrations_online()
