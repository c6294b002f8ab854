"""Runs and triggers belong to a project (existing ones to ``default``).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(
            sa.Column("project", sa.String(length=64), server_default="default", nullable=False)
        )
        batch.create_index("ix_flow_runs_project", ["project"])
    with op.batch_alter_table("flow_triggers") as batch:
        batch.add_column(
            sa.Column("project", sa.String(length=64), server_default="default", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("flow_triggers") as batch:
        batch.drop_column("project")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_index("ix_flow_runs_project")
        batch.drop_column("project")
