"""the vault's signing keys over the years: one row per generation, with its rotation and revocation notes

Revision ID: 0012_signing_keys
Revises: 0011_webhooks
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012_signing_keys"
down_revision = "0011_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_key",
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("vkey", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("public_pem", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key_ref", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("statement", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("compromised_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("generation"),
        sa.UniqueConstraint("vkey"),
        # Every key after the first names its rotation note; a revocation comes with its time, and the other way.
        sa.CheckConstraint("generation = 0 OR statement IS NOT NULL", name="ck_signing_key_statement"),
        sa.CheckConstraint("(compromised_since IS NULL) = (revocation IS NULL)", name="ck_signing_key_revocation"),
    )


def downgrade() -> None:
    op.drop_table("signing_key")
