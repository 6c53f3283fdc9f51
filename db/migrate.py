"""Schema migrations with Alembic, run from the application at start-up.

`upgrade(connection)` brings any database to the newest schema; new columns and
tables come as new revisions under db/migrations/versions (make one with
`alembic -c db/alembic.ini revision --autogenerate -m "..."`).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection) -> None:
    """Run every pending migration on ``connection`` (sync; call via run_sync)."""
    command.upgrade(alembic_config(connection), "head")
