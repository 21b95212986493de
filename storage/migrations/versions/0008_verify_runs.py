"""verify runs: the nightly verifier's run records, durable progress, findings and open findings

Revision ID: 0008_verify_runs
Revises: 0007_staged_documents
Create Date: 2026-11-30 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_verify_runs"
down_revision = "0007_staged_documents"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def _no_delete(dialect: str, table: str) -> str:
    """A run's findings are evidence: they may be added, never removed (0002's evault_refuse on PostgreSQL)."""
    if dialect == "postgresql":
        return (
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION evault_refuse('append-only')"
        )
    return (
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'DELETE on {table} is refused: append-only'); END"
    )


def upgrade() -> None:
    op.create_table(
        "verify_run",
        sa.Column("id", _str(length=40), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("code_version", _str(length=200), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("verdict", _str(length=16), nullable=True),
        sa.CheckConstraint("status IN ('running', 'finished', 'failed')", name="ck_verify_run_status"),
    )
    op.create_table(
        "verify_progress",
        sa.Column("run_id", _str(length=40), sa.ForeignKey("verify_run.id"), primary_key=True),
        sa.Column("unit", _str(length=120), primary_key=True),
        sa.Column("state", _str(length=16), nullable=False),
        sa.Column("position", _str(length=1024), nullable=True),
        sa.Column("checked", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'done')", name="ck_verify_progress_state"),
    )
    op.create_table(
        "verify_finding",
        sa.Column("run_id", _str(length=40), sa.ForeignKey("verify_run.id"), primary_key=True),
        sa.Column("fingerprint", _str(length=64), primary_key=True),
        sa.Column("code", _str(length=64), nullable=False),
        sa.Column("org_id", _str(length=40), nullable=True),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("message", _str(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "open_finding",
        sa.Column("fingerprint", _str(length=64), primary_key=True),
        sa.Column("code", _str(length=64), nullable=False),
        sa.Column("org_id", _str(length=40), nullable=True),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("first_run_id", _str(length=40), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", _str(length=40), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    dialect = op.get_bind().dialect.name
    op.execute(_no_delete(dialect, "verify_finding"))
    op.execute(_no_delete(dialect, "verify_run"))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in ("verify_finding", "verify_run"):
        name = f"{table}_no_delete"
        op.execute(f"DROP TRIGGER {name} ON {table}" if dialect == "postgresql" else f"DROP TRIGGER {name}")
    for table in ("open_finding", "verify_finding", "verify_progress", "verify_run"):
        op.drop_table(table)
