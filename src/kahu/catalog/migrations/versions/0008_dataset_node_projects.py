"""Datasets belong to a project, and DICOM nodes read the series of theirs (C-FIND, C-MOVE,
C-GET); existing datasets and nodes belong to ``default``.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("project", sa.String(length=64), server_default="default", nullable=False)
        )
        batch.create_index("ix_datasets_project", ["project"])
    op.create_table(
        "node_projects",
        sa.Column("node_pk", sa.Integer(), nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_pk"],
            ["dicom_nodes.id"],
            name=op.f("fk_node_projects_node_pk_dicom_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_pk"],
            ["projects.id"],
            name=op.f("fk_node_projects_project_pk_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_pk", "project_pk", name=op.f("pk_node_projects")),
    )
    op.execute(
        "INSERT INTO node_projects (node_pk, project_pk) "
        "SELECT dicom_nodes.id, projects.id FROM dicom_nodes, projects "
        "WHERE projects.name = 'default'"
    )


def downgrade() -> None:
    op.drop_table("node_projects")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index("ix_datasets_project")
        batch.drop_column("project")
