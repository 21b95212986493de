"""slot leases: the upload and stamping caps per API key and per organisation, shared by every process

Revision ID: 0024_slot_leases
Revises: 0023_envelope_import
Create Date: 2026-12-05 02:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0024_slot_leases"
down_revision = "0023_envelope_import"
branch_labels = None
depends_on = None


def upgrade() -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "slot_lease",
        sa.Column("pool", string(length=16), nullable=False),
        sa.Column("scope", string(length=40), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", string(length=80), nullable=False),
        sa.Column("ticket", string(length=32), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pool", "scope", "slot"),
    )
    op.create_index("ix_slot_lease_holder", "slot_lease", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_slot_lease_holder", table_name="slot_lease")
    op.drop_table("slot_lease")
