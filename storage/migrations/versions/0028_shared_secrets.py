"""shared secrets: a fingerprint of each secret every process of the vault must hold alike (the document-signing
identity, the signing-link secret), so that a replica started with its own is refused

Revision ID: 0028_shared_secrets
Revises: 0027_copy_claims
Create Date: 2026-12-07 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0028_shared_secrets"
down_revision = "0027_copy_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "shared_secret",
        sa.Column("name", string(length=40), nullable=False),
        sa.Column("fingerprint", string(length=100), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("shared_secret")
