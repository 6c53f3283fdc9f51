"""Schema migrations with Alembic, run from the application at start-up.

:func:`migrate` brings any database to the newest schema, on the async URL the app uses
(``Store.create`` calls it); new columns and tables come as new revisions under
db/migrations/versions (make one with
``alembic -c db/alembic.ini -x url=sqlite+aiosqlite:///data/fashionbot.sqlite3 revision --autogenerate -m "..."``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

HERE = Path(__file__).resolve().parent

BASELINE = "0001"  # the revision that matches the schema of databases made before migrations
MIGRATION_LOCK = 0x6661_7368  # PostgreSQL advisory lock key held while migrating
BASELINE_TABLES = ("items", "users", "photos", "recommendations", "feedback", "trends", "offers")


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Run every pending migration on ``connection`` (sync; call via run_sync).

    A database made before migrations existed (tables but no version recorded; SQLite
    commits DDL as it goes, so an interrupted first migration can leave an empty
    ``alembic_version``) gets its missing baseline tables and is stamped at the baseline first."""
    cfg = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    stamped = "alembic_version" in tables and connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
    if "items" in tables and not stamped:
        from db.models import Base

        missing = [Base.metadata.tables[t] for t in BASELINE_TABLES if t not in tables]
        Base.metadata.create_all(connection, tables=missing)
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, revision)


def downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


async def migrate(url: str, revision: str = "head", *, down: bool = False) -> None:
    """Migrate the database at ``url`` (an async SQLAlchemy URL) on a connection of its own.

    SQLite: foreign keys are switched off for the migration (outside its transaction,
    where SQLite allows it), since rebuilding a table in batch mode drops the old one and a
    DROP with foreign keys on would cascade into the tables that refer to it. The
    connection is closed afterwards (no pool), so the setting never leaks into the app."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA busy_timeout=30000")
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                await conn.commit()
            if engine.dialect.name == "postgresql":
                # Workers starting together: one migrates, the others wait and find nothing to do.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if down:
                await conn.run_sync(downgrade, revision)
            else:
                await conn.run_sync(upgrade, revision)
            await conn.commit()
    finally:
        await engine.dispose()
