"""the parties behind the record: MERS Org IDs and an organisation's retention default, the MIN registry,
amendments (with their in-flight claims) and paper-in attestations

Revision ID: 0017_parties
Revises: 0016_embed_origins
Create Date: 2026-12-04 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017_parties"
down_revision = "0016_embed_origins"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_ENVELOPE_ORG = ("envelope_id", "org_id")


def _envelope_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        list(_ENVELOPE_ORG), ["envelope.id", "envelope.org_id"], name=f"fk_{table}_envelope_org"
    )


def _min_registry_is_for_good() -> list[str]:
    """A MIN, once registered, is never changed or freed: no update, no delete (the reuse guard)."""
    if op.get_bind().dialect.name == "postgresql":
        return [
            "CREATE TRIGGER mers_min_append_only BEFORE UPDATE OR DELETE ON mers_min"
            " FOR EACH ROW EXECUTE FUNCTION evault_refuse('append-only')",
            "CREATE TRIGGER mers_min_no_truncate BEFORE TRUNCATE ON mers_min"
            " FOR EACH STATEMENT EXECUTE FUNCTION evault_refuse('append-only')",
        ]
    return [
        f"CREATE TRIGGER mers_min_no_{op_name.lower()} BEFORE {op_name} ON mers_min"
        f" BEGIN SELECT RAISE(ABORT, '{op_name} on mers_min is refused: a MIN is never reused'); END"
        for op_name in ("UPDATE", "DELETE")
    ]


def upgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        batch.add_column(sa.Column("mers_org_id", _S(length=7), nullable=True))
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_organisation_mers_org_id", ["mers_org_id"])
        batch.create_check_constraint(
            "ck_organisation_retention_days", "retention_days IS NULL OR (retention_days BETWEEN 1 AND 36600)"
        )
    op.create_table(
        "mers_min",
        sa.Column("min", _S(length=18), nullable=False),
        sa.Column("org_id", _S(length=40), nullable=False),
        sa.Column("envelope_id", _S(length=40), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("min"),
        sa.UniqueConstraint("envelope_id"),
        sa.CheckConstraint("length(min) = 18", name="ck_mers_min_length"),
    )
    op.create_index("ix_mers_min_org_id", "mers_min", ["org_id"])
    for statement in _min_registry_is_for_good():
        op.execute(statement)
    op.create_table(
        "amendment",
        sa.Column("id", _S(length=40), nullable=False),
        sa.Column("org_id", _S(length=40), nullable=False),
        sa.Column("envelope_id", _S(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", _S(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", _S(length=40), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        _envelope_fk("amendment"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("envelope_id", "position"),
        sa.CheckConstraint("type IN ('modification', 'assumption')", name="ck_amendment_type"),
    )
    op.create_index("ix_amendment_org_id", "amendment", ["org_id"])
    op.create_index("ix_amendment_envelope_id", "amendment", ["envelope_id"])
    op.create_table(
        "amendment_claim",
        sa.Column("envelope_id", _S(length=40), nullable=False),
        sa.Column("org_id", _S(length=40), nullable=False),
        sa.Column("claim_id", _S(length=40), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["envelope_id"], ["envelope.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("envelope_id"),
        sa.UniqueConstraint("claim_id"),
    )
    op.create_table(
        "paper_in_attestation",
        sa.Column("id", _S(length=40), nullable=False),
        sa.Column("org_id", _S(length=40), nullable=False),
        sa.Column("envelope_id", _S(length=40), nullable=False),
        sa.Column("original", _S(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", _S(length=500), nullable=True),
        sa.Column("attested_by", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", _S(length=40), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        _envelope_fk("paper_in_attestation"),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("original IN ('held', 'destroyed')", name="ck_paper_in_attestation_original"),
    )
    op.create_index("ix_paper_in_attestation_org_id", "paper_in_attestation", ["org_id"])
    op.create_index("ix_paper_in_attestation_envelope_id", "paper_in_attestation", ["envelope_id"])


def downgrade() -> None:
    op.drop_table("paper_in_attestation")
    op.drop_table("amendment_claim")
    op.drop_table("amendment")
    op.drop_table("mers_min")  # its triggers go with it
    with op.batch_alter_table("organisation") as batch:
        batch.drop_constraint("ck_organisation_retention_days", type_="check")
        batch.drop_constraint("uq_organisation_mers_org_id", type_="unique")
        batch.drop_column("retention_days")
        batch.drop_column("mers_org_id")
