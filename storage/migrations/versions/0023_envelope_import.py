"""envelope_import (each import of another vault's export package, unique per origin release event), and
org_signing_key and receipt_countersignature (parties countersign their transfer receipts)

Revision ID: 0023_envelope_import
Revises: 0022_chain_follows_control
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0023_envelope_import"
down_revision = "0022_chain_follows_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "envelope_import",
        sa.Column("envelope_id", string(length=40), nullable=False),
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("origin_log", string(length=300), nullable=False),
        sa.Column("origin_envelope_id", string(length=40), nullable=False),
        sa.Column("release_leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("origin_key_id", string(length=80), nullable=False),
        sa.Column("release_receipt_sha256", string(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("envelope_id"),
        sa.UniqueConstraint("origin_log", "release_leaf_index", name="ux_envelope_import_release"),
    )
    op.create_index("ix_envelope_import_org_id", "envelope_import", ["org_id"])
    op.create_table(
        "org_signing_key",
        sa.Column("key_id", string(length=80), nullable=False),
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("public_pem", string(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_org_signing_key_org_id", "org_signing_key", ["org_id"])
    op.create_table(
        "receipt_countersignature",
        sa.Column("transfer_id", string(length=40), nullable=False),
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("key_id", string(length=80), nullable=False),
        sa.Column("value", string(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfer.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.ForeignKeyConstraint(["key_id"], ["org_signing_key.key_id"]),
        sa.PrimaryKeyConstraint("transfer_id", "org_id"),
    )


def downgrade() -> None:
    op.drop_table("receipt_countersignature")
    op.drop_index("ix_org_signing_key_org_id", table_name="org_signing_key")
    op.drop_table("org_signing_key")
    op.drop_index("ix_envelope_import_org_id", table_name="envelope_import")
    op.drop_table("envelope_import")
