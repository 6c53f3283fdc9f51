"""Schema migrations with Alembic, run from the application at start-up.

`upgrade(connection)` brings any database to the newest schema; new columns and
tables come as new revisions under db/migrations/versions (make one with
`alembic -c db/alembic.ini revision --autogenerate -m "..."`).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


BASELINE = "0001"  # the revision that matches the schema of databases made before migrations


def upgrade(connection: Connection) -> None:
    """Run every pending migration on ``connection`` (sync; call via run_sync).

    A database made before migrations existed (tables but no version recorded; SQLite
    commits DDL as it goes, so an interrupted first migration can leave an empty
    ``alembic_version``) gets its missing tables and is stamped at the baseline first."""
    cfg = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    stamped = "alembic_version" in tables and connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
    if "items" in tables and not stamped:
        from db.models import Base

        Base.metadata.create_all(connection)
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, "head")
