"""Federation: invitations, peers, per-coordinator policies, federated runs and their sites'
parts and outputs, the work done for coordinators, and the egress ledger. The database itself
keeps the ledger append-only: no entry is deleted, and the only change an entry takes is
``delivered`` from false to true.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER = (
    "seq",
    "at",
    "partner",
    "partner_id",
    "run",
    "local_run",
    "task",
    "output",
    "kind",
    "bytes",
    "sha256",
    "policy",
    "approved_by",
    "prev_hash",
    "hash",
)


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "fed_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", True),
        sa.Column("used_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_invites")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_fed_invites_token_hash")),
    )
    op.create_table(
        "fed_peers",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        _at("joined_at"),
        _at("revoked_at", True),
        sa.Column("revoked_reason", sa.Text(), nullable=False),
        _at("last_seen_at", True),
        sa.PrimaryKeyConstraint("site_id", "role", name=op.f("pk_fed_peers")),
    )
    op.create_table(
        "fed_policies",
        sa.Column("coordinator", sa.String(length=64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("coordinator", name=op.f("pk_fed_policies")),
    )
    op.create_table(
        "fed_runs",
        sa.Column("id", sa.String(length=96), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        _at("created_at"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("aggregate_run", sa.String(length=96), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        _at("finished_at", True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_runs")),
    )
    op.create_index("ix_fed_runs_created_at", "fed_runs", ["created_at"])
    op.create_index("ix_fed_runs_state", "fed_runs", ["state"])
    op.create_table(
        "fed_site_runs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("fed_run", sa.String(length=96), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("site_name", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        _at("picked_up_at", True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        _at("updated_at"),
        sa.ForeignKeyConstraint(
            ["fed_run"],
            ["fed_runs.id"],
            name=op.f("fk_fed_site_runs_fed_run_fed_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_site_runs")),
    )
    op.create_index("ix_fed_site_runs_fed_run", "fed_site_runs", ["fed_run"])
    op.create_index("ix_fed_site_runs_site_id", "fed_site_runs", ["site_id"])
    op.create_table(
        "fed_outputs",
        sa.Column("site_run", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        _at("received_at"),
        sa.ForeignKeyConstraint(
            ["site_run"],
            ["fed_site_runs.id"],
            name=op.f("fk_fed_outputs_site_run_fed_site_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_run", "name", name=op.f("pk_fed_outputs")),
    )
    op.create_table(
        "fed_jobs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("coordinator", sa.String(length=64), nullable=False),
        sa.Column("fed_run", sa.String(length=96), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reported", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=False),
        sa.Column("local_run", sa.String(length=96), nullable=False),
        _at("received_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fed_jobs")),
    )
    op.create_index("ix_fed_jobs_coordinator", "fed_jobs", ["coordinator"])
    op.create_index("ix_fed_jobs_state", "fed_jobs", ["state"])
    op.create_table(
        "egress_ledger",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        _at("at"),
        sa.Column("partner", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("run", sa.String(length=128), nullable=False),
        sa.Column("local_run", sa.String(length=96), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("output", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_egress_ledger")),
        sa.UniqueConstraint("hash", name=op.f("uq_egress_ledger_hash")),
    )
    op.create_index("ix_egress_ledger_at", "egress_ledger", ["at"])
    op.create_index("ix_egress_ledger_partner", "egress_ledger", ["partner"])
    op.create_index("ix_egress_ledger_run", "egress_ledger", ["run"])
    if op.get_context().dialect.name == "postgresql":
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _LEDGER)
        op.execute(
            "CREATE FUNCTION egress_ledger_append_only() RETURNS trigger AS $$ BEGIN "
            "IF TG_OP = 'DELETE' OR (OLD.delivered AND NOT NEW.delivered) OR " + changed + " THEN "
            "RAISE EXCEPTION 'the egress ledger is append-only'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER egress_ledger_append_only BEFORE UPDATE OR DELETE ON egress_ledger "
            "FOR EACH ROW EXECUTE FUNCTION egress_ledger_append_only()"
        )
    else:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _LEDGER)
        op.execute(
            "CREATE TRIGGER egress_ledger_no_delete BEFORE DELETE ON egress_ledger "
            "BEGIN SELECT RAISE(ABORT, 'the egress ledger is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER egress_ledger_no_update BEFORE UPDATE ON egress_ledger "
            f"WHEN (OLD.delivered AND NOT NEW.delivered) OR {changed} "
            "BEGIN SELECT RAISE(ABORT, 'the egress ledger is append-only'); END"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER egress_ledger_append_only ON egress_ledger")
        op.execute("DROP FUNCTION egress_ledger_append_only()")
    for table in (
        "egress_ledger",
        "fed_jobs",
        "fed_outputs",
        "fed_site_runs",
        "fed_runs",
        "fed_policies",
        "fed_peers",
        "fed_invites",
    ):
        op.drop_table(table)
