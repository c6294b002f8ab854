"""Projects: who may see which series. Existing series and users join the project
``default``, so nothing changes for them until an administrator divides the catalog.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "project_members",
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"],
            ["projects.id"],
            name=op.f("fk_project_members_project_pk_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_pk"],
            ["users.id"],
            name=op.f("fk_project_members_user_pk_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_pk", "user_pk", name=op.f("pk_project_members")),
    )
    op.create_index("ix_project_members_user_pk", "project_members", ["user_pk"])
    op.create_table(
        "project_series",
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"],
            ["projects.id"],
            name=op.f("fk_project_series_project_pk_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["series_pk"],
            ["series.id"],
            name=op.f("fk_project_series_series_pk_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_pk", "series_pk", name=op.f("pk_project_series")),
    )
    op.create_index("ix_project_series_series_pk", "project_series", ["series_pk"])
    op.create_table(
        "ae_projects",
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("project_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_pk"],
            ["projects.id"],
            name=op.f("fk_ae_projects_project_pk_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ae_title", name=op.f("pk_ae_projects")),
    )
    op.create_index("ix_ae_projects_project_pk", "ae_projects", ["project_pk"])

    now = datetime.now(UTC)
    op.bulk_insert(projects, [{"name": "default", "description": "", "created_at": now}])
    op.execute(
        sa.text(
            "INSERT INTO project_series (project_pk, series_pk, added_at) "
            "SELECT (SELECT id FROM projects WHERE name = 'default'), id, :now FROM series"
        ).bindparams(now=now)
    )
    op.execute(
        sa.text(
            "INSERT INTO project_members (project_pk, user_pk, role, added_at) "
            "SELECT (SELECT id FROM projects WHERE name = 'default'), id, 'scientist', :now "
            "FROM users WHERE NOT is_admin"
        ).bindparams(now=now)
    )


def downgrade() -> None:
    op.drop_index("ix_ae_projects_project_pk", table_name="ae_projects")
    op.drop_table("ae_projects")
    op.drop_index("ix_project_series_series_pk", table_name="project_series")
    op.drop_table("project_series")
    op.drop_index("ix_project_members_user_pk", table_name="project_members")
    op.drop_table("project_members")
    op.drop_table("projects")
