"""partner API: staged documents, idempotency records, rate counters, envelope expiry, unique external ids

Revision ID: 0007_staged_documents
Revises: 0006_key_rotation
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_staged_documents"
down_revision = "0006_key_rotation"
branch_labels = None
depends_on = None


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    # Plain ALTER TABLE, never a batch rebuild (a rebuild would drop 0002's triggers on SQLite).
    op.add_column("envelope", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    # One external id per organisation, where one is given.
    op.create_index(
        "ux_envelope_org_external_id",
        "envelope",
        ["org_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
        sqlite_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index("ix_envelope_org_created", "envelope", ["org_id", "created_at", "id"])
    op.create_table(
        "staged_document",
        sa.Column("id", _str(40), nullable=False),
        sa.Column("org_id", _str(40), nullable=False),
        sa.Column("envelope_id", _str(40), nullable=False),
        sa.Column("filename", _str(255), nullable=False),
        sa.Column("sha256", _str(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("s3_bucket", _str(63), nullable=False),
        sa.Column("s3_key", _str(1024), nullable=False),
        sa.Column("s3_version_id", _str(1024), nullable=False),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["envelope_id"], ["envelope.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staged_document_org_id", "staged_document", ["org_id"])
    op.create_index("ix_staged_document_envelope_id", "staged_document", ["envelope_id"])
    op.create_index("ix_staged_document_expires_at", "staged_document", ["expires_at"])
    op.create_table(
        "idempotency_record",
        sa.Column("id", _str(40), nullable=False),
        sa.Column("org_id", _str(40), nullable=False),
        sa.Column("key", _str(255), nullable=False),
        sa.Column("fingerprint", _str(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "key"),
    )
    op.create_index("ix_idempotency_record_expires_at", "idempotency_record", ["expires_at"])
    op.create_table(
        "rate_counter",
        sa.Column("key_id", _str(40), nullable=False),
        sa.Column("policy", _str(32), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "policy", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("rate_counter")
    op.drop_index("ix_idempotency_record_expires_at", table_name="idempotency_record")
    op.drop_table("idempotency_record")
    for name in ("ix_staged_document_expires_at", "ix_staged_document_envelope_id", "ix_staged_document_org_id"):
        op.drop_index(name, table_name="staged_document")
    op.drop_table("staged_document")
    op.drop_index("ix_envelope_org_created", table_name="envelope")
    op.drop_index("ux_envelope_org_external_id", table_name="envelope")
    op.drop_column("envelope", "expires_at")
