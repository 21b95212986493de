"""copy claims: a copy in flight, committed before its object is put, so a request that dies before the
register leaves an object the verifier and the reconciler can name

Revision ID: 0027_copy_claims
Revises: 0026_paced_rate
Create Date: 2026-12-06 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0027_copy_claims"
down_revision = "0026_paced_rate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "copy_claim",
        sa.Column("copy_id", string(length=40), nullable=False),
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("envelope_id", string(length=40), nullable=False),
        sa.Column("s3_key", string(length=1024), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["envelope_id"], ["envelope.id"]),
        sa.PrimaryKeyConstraint("copy_id"),
    )
    op.create_index("ix_copy_claim_org_id", "copy_claim", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_copy_claim_org_id", table_name="copy_claim")
    op.drop_table("copy_claim")
