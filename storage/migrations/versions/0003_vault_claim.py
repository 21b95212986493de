"""vault_claim: a vault-in claims its envelope before the S3 put

Revision ID: 0003_vault_claim
Revises: 0002_invariants
Create Date: 2026-11-29 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003_vault_claim"
down_revision = "0002_invariants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_claim",
        sa.Column("envelope_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("claim_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("digests", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["envelope_id"], ["envelope.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("envelope_id"),
        sa.UniqueConstraint("claim_id"),
    )
    op.create_index(op.f("ix_vault_claim_org_id"), "vault_claim", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_vault_claim_org_id"), table_name="vault_claim")
    op.drop_table("vault_claim")
