"""transfers: who controls and who keeps an envelope now, and the transfers between organisations

Revision ID: 0018_transfers
Revises: 0017_parties
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018_transfers"
down_revision = "0017_parties"
branch_labels = None
depends_on = None

_OPEN = "status IN ('pending', 'accepted')"


def upgrade() -> None:
    # Plain ADD COLUMN (no batch): a table copy on SQLite would trip the guard triggers that name envelope.
    string = sqlmodel.sql.sqltypes.AutoString
    op.add_column("envelope", sa.Column("controller_org_id", string(length=40), nullable=True))
    op.add_column("envelope", sa.Column("custodian_org_id", string(length=40), nullable=True))
    op.create_index("ix_envelope_controller_org_id", "envelope", ["controller_org_id"])
    op.create_index("ix_envelope_custodian_org_id", "envelope", ["custodian_org_id"])
    op.create_table(
        "transfer",
        sa.Column("id", string(length=40), nullable=False),
        sa.Column("envelope_id", string(length=40), nullable=False),
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("from_org_id", string(length=40), nullable=False),
        sa.Column("to_org_id", string(length=40), nullable=False),
        sa.Column("type", string(length=32), nullable=False),
        sa.Column("status", string(length=16), nullable=False),
        sa.Column("confirm_required", sa.Boolean(), nullable=False),
        sa.Column("note", string(length=1000), nullable=True),
        sa.Column("reason", string(length=1000), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", string(length=40), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", string(length=40), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", string(length=40), nullable=True),
        sa.Column("initiated_index", sa.BigInteger(), nullable=False),
        sa.Column("accepted_index", sa.BigInteger(), nullable=True),
        sa.Column("completed_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["envelope_id"], ["envelope.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["from_org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["to_org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(
            ["envelope_id", "org_id"], ["envelope.id", "envelope.org_id"], name="fk_transfer_envelope_org"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("type IN ('control', 'location', 'control_and_location')", name="ck_transfer_type"),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'completed', 'rejected', 'cancelled', 'expired')",
            name="ck_transfer_status",
        ),
        sa.CheckConstraint("from_org_id <> to_org_id", name="ck_transfer_two_parties"),
    )
    op.create_index("ix_transfer_envelope_id", "transfer", ["envelope_id"])
    op.create_index("ix_transfer_expires_at", "transfer", ["expires_at"])
    op.create_index("ix_transfer_from_created", "transfer", ["from_org_id", "created_at", "id"])
    op.create_index("ix_transfer_to_created", "transfer", ["to_org_id", "created_at", "id"])
    op.create_index(
        "ux_transfer_open_per_envelope",
        "transfer",
        ["envelope_id"],
        unique=True,
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_table("transfer")
    op.drop_index("ix_envelope_custodian_org_id", table_name="envelope")
    op.drop_index("ix_envelope_controller_org_id", table_name="envelope")
    op.drop_column("envelope", "custodian_org_id")
    op.drop_column("envelope", "controller_org_id")
