"""Series generations: what changed in the series table since a reader last looked.

Every transaction that creates or deletes series takes the next generation from
``catalog_state`` (a row lock on PostgreSQL, so generations commit in order); new series carry
it, deleted series leave a tombstone with it. The search column index reads only what is newer
than what it holds.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = op.create_table(
        "catalog_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_catalog_state")),
    )
    op.bulk_insert(state, [{"key": "series_generation", "value": 1}])
    op.add_column(
        "series", sa.Column("generation", sa.BigInteger(), nullable=False, server_default="1")
    )
    op.create_index("ix_series_generation", "series", ["generation"])
    op.create_table(
        "series_tombstones",
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("generation", "series_pk", name=op.f("pk_series_tombstones")),
    )


def downgrade() -> None:
    op.drop_table("series_tombstones")
    op.drop_index("ix_series_generation", table_name="series")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("generation")
    op.drop_table("catalog_state")
