"""initial schema: organisations, keys, envelopes, vault records, ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-23 13:30:18.917848
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisation",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "apikey",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apikey_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_apikey_prefix"), ["prefix"], unique=False)

    op.create_table(
        "checkpoint",
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("s3_key", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("s3_version_id", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("timestamp_token", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("org_id", "size"),
    )
    op.create_table(
        "envelope",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("vault_state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("parties", sa.JSON(), nullable=False),
        sa.Column("secured_party", sa.JSON(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_envelope_external_id"), ["external_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_envelope_org_id"), ["org_id"], unique=False)

    op.create_table(
        "log_state",
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("org_id"),
    )
    op.create_table(
        "log_tile",
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("org_id", "level", "idx"),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("chain_seq", sa.Integer(), nullable=True),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("entry_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelope.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("envelope_id", "chain_seq"),
        sa.UniqueConstraint("org_id", "leaf_index"),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_envelope_id"), ["envelope_id"], unique=False)

    op.create_table(
        "vault_record",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("envelope_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vaulted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vaulted_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("release_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("release_details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelope.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("envelope_id"),
    )
    with op.batch_alter_table("vault_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vault_record_org_id"), ["org_id"], unique=False)

    op.create_table(
        "vaulted_document",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("s3_bucket", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("s3_key", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("s3_version_id", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["vault_record.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_id", "position"),
    )
    with op.batch_alter_table("vaulted_document", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vaulted_document_record_id"), ["record_id"], unique=False)

    op.create_table(
        "copy_record",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("envelope_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("document_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("source_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("s3_bucket", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("s3_key", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("s3_version_id", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["vaulted_document.id"],
        ),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelope.id"],
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("copy_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_copy_record_envelope_id"), ["envelope_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_copy_record_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("copy_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_copy_record_org_id"))
        batch_op.drop_index(batch_op.f("ix_copy_record_envelope_id"))

    op.drop_table("copy_record")
    with op.batch_alter_table("vaulted_document", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vaulted_document_record_id"))

    op.drop_table("vaulted_document")
    with op.batch_alter_table("vault_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_record_org_id"))

    op.drop_table("vault_record")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_envelope_id"))

    op.drop_table("event")
    op.drop_table("log_tile")
    op.drop_table("log_state")
    with op.batch_alter_table("envelope", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_envelope_org_id"))
        batch_op.drop_index(batch_op.f("ix_envelope_external_id"))

    op.drop_table("envelope")
    op.drop_table("checkpoint")
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apikey_prefix"))
        batch_op.drop_index(batch_op.f("ix_apikey_org_id"))

    op.drop_table("apikey")
    op.drop_table("organisation")
