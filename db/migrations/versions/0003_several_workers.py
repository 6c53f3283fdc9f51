"""several workers on one database: the missing foreign-key indexes, prices as
Numeric(12, 2), convention names for constraints, ids never reused on SQLite, trend
leases, item removal events, and the trend row's shop counts (read by other workers).

- ``recommendations.photo_id``, ``items.duplicate_of``, ``trends.started_by`` get indexes
  (a /forget or a removal deletes by them; PostgreSQL does not index foreign keys itself);
- ``items.price`` and ``offers.price`` become ``NUMERIC(12, 2)`` (rounded to the cent);
- on PostgreSQL, primary and foreign keys made before the naming convention
  (``items_pkey``, ``photos_user_id_fkey`` …) are renamed to it (``pk_items``,
  ``fk_photos_user_id_users`` …), so later migrations can drop them by name;
- on SQLite, ``items``, ``users`` and ``photos`` are rebuilt with AUTOINCREMENT, so a
  deleted row's id never names another row later (db/migrate.py runs migrations with
  foreign keys off, so rebuilding a table does not cascade);
- ``trend_leases`` (one trend per tag across workers) and ``item_events`` (removals every
  worker's index follows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PRICE = sa.Numeric(12, 2, asdecimal=False)
# db.models.NAMING_CONVENTION as of this revision (a migration never imports the live models)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# table → foreign-key columns (and the table each refers to), as made by 0001 / 0002
FOREIGN_KEYS = {
    "items": [("duplicate_of", "items")],
    "users": [],
    "photos": [("user_id", "users")],
    "garments": [("photo_id", "photos")],
    "recommendations": [("user_id", "users"), ("photo_id", "photos"), ("item_id", "items")],
    "feedback": [("user_id", "users"), ("item_id", "items")],
    "trends": [("started_by", "users")],
    "offers": [("item_id", "items")],
}


def _rename_postgres_constraints() -> None:
    bind = op.get_bind()
    for table, fks in FOREIGN_KEYS.items():
        names = {
            r[0]
            for r in bind.execute(
                sa.text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"), {"t": table}
            )
        }
        renames = [(f"{table}_pkey", f"pk_{table}")]
        renames += [(f"{table}_{col}_fkey", f"fk_{table}_{col}_{ref}") for col, ref in fks]
        for old, new in renames:
            if old in names and new not in names:
                op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if op.get_bind().dialect.name == "postgresql":
        _rename_postgres_constraints()
    rebuild: Literal["always", "auto"] = "always" if sqlite else "auto"
    sqlite_kwargs = {"sqlite_autoincrement": True} if sqlite else {}

    with op.batch_alter_table(
        "items", recreate=rebuild, table_kwargs=sqlite_kwargs, naming_convention=NAMING_CONVENTION
    ) as batch:
        batch.alter_column("price", type_=PRICE, existing_type=sa.Float(), postgresql_using="round(price::numeric, 2)")
        batch.create_index("ix_items_duplicate_of", ["duplicate_of"])
    with op.batch_alter_table("offers", naming_convention=NAMING_CONVENTION) as batch:
        batch.alter_column("price", type_=PRICE, existing_type=sa.Float(), postgresql_using="round(price::numeric, 2)")
    if sqlite:
        for table in ("users", "photos"):
            with op.batch_alter_table(
                table, recreate="always", table_kwargs=sqlite_kwargs, naming_convention=NAMING_CONVENTION
            ):
                pass
    op.create_index("ix_recommendations_photo_id", "recommendations", ["photo_id"])
    op.create_index("ix_trends_started_by", "trends", ["started_by"])
    with op.batch_alter_table("trends") as batch:
        batch.add_column(sa.Column("shops_searched", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("shops_total", sa.Integer(), nullable=False, server_default="0"))

    op.create_table(
        "trend_leases",
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tag", name="pk_trend_leases"),
    )
    op.create_table(
        "item_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_item_events"),
    )


def downgrade() -> None:
    op.drop_table("item_events")
    op.drop_table("trend_leases")
    with op.batch_alter_table("trends") as batch:
        batch.drop_column("shops_total")
        batch.drop_column("shops_searched")
    op.drop_index("ix_trends_started_by", table_name="trends")
    op.drop_index("ix_recommendations_photo_id", table_name="recommendations")
    with op.batch_alter_table("offers", naming_convention=NAMING_CONVENTION) as batch:
        batch.alter_column("price", type_=sa.Float(), existing_type=PRICE)
    with op.batch_alter_table("items", naming_convention=NAMING_CONVENTION) as batch:
        batch.drop_index("ix_items_duplicate_of")
        batch.alter_column("price", type_=sa.Float(), existing_type=PRICE)
