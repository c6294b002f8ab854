"""Curation: query-defined and frozen datasets, tags on series.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("query", sa.Text(), nullable=True))
    op.add_column("datasets", sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "series_tags",
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_pk"],
            ["series.id"],
            name=op.f("fk_series_tags_series_pk_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_pk", "tag", name=op.f("pk_series_tags")),
    )
    op.create_index("ix_series_tags_tag", "series_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_series_tags_tag", table_name="series_tags")
    op.drop_table("series_tags")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("frozen_at")
        batch.drop_column("query")
