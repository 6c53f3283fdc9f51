"""garments: each garment found in a user's photo (box, group, vector); photos get
their size and whether they count as a whole picture in the style profile.

Old photo rows are kept as whole-photo entries (``whole`` defaults to true), so a
user's style keeps its history across the upgrade.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("whole", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "garments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("garment_group", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("embedding_model", sa.String(length=96), nullable=False),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("photo_id", "number", name="uq_garment_photo_number"),
    )
    op.create_index("ix_garments_photo_id", "garments", ["photo_id"])


def downgrade() -> None:
    op.drop_index("ix_garments_photo_id", table_name="garments")
    op.drop_table("garments")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("whole")
        batch.drop_column("height")
        batch.drop_column("width")
