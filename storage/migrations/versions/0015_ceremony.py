"""the e-sign ceremony: an envelope's document to sign and seal, its recipients, their emails; ``declined``

Revision ID: 0015_ceremony
Revises: 0014_retention
Create Date: 2026-12-04 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015_ceremony"
down_revision = "0014_retention"
branch_labels = None
depends_on = None

_OLD_STATUSES = "'draft', 'sent', 'awaiting_upload', 'completed', 'voided', 'expired'"
_NEW_STATUSES = f"{_OLD_STATUSES}, 'declined'"


def _str(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _utc(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _envelope_of_org(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["envelope_id", "org_id"], ["envelope.id", "envelope.org_id"], name=f"fk_{table}_envelope_org"
    )


def _statuses(statuses: str) -> None:
    with op.batch_alter_table("envelope") as batch:
        batch.drop_constraint("ck_envelope_status", type_="check")
        batch.create_check_constraint("ck_envelope_status", f"status IN ({statuses})")


def upgrade() -> None:
    _statuses(_NEW_STATUSES)
    op.create_table(
        "ceremony",
        sa.Column("envelope_id", _str(40), sa.ForeignKey("envelope.id"), primary_key=True),
        sa.Column("org_id", _str(40), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("document_id", _str(40), nullable=True),
        sa.Column("filename", _str(255), nullable=True),
        sa.Column("sha256", _str(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("s3_key", _str(1024), nullable=True),
        sa.Column("s3_version_id", _str(1024), nullable=True),
        sa.Column("pages", sa.JSON(), nullable=True),
        _utc("sent_at", nullable=True),
        sa.Column("sent_by", sa.JSON(), nullable=True),
        _utc("reminded_at", nullable=True),
        sa.Column("sealed_sha256", _str(64), nullable=True),
        sa.Column("sealed_size", sa.BigInteger(), nullable=True),
        sa.Column("sealed_key", _str(1024), nullable=True),
        sa.Column("sealed_version_id", _str(1024), nullable=True),
        _utc("sealed_at", nullable=True),
        _envelope_of_org("ceremony"),
    )
    op.create_index("ix_ceremony_org_id", "ceremony", ["org_id"])
    op.create_table(
        "recipient",
        sa.Column("id", _str(40), primary_key=True),
        sa.Column("envelope_id", _str(40), sa.ForeignKey("envelope.id"), nullable=False),
        sa.Column("org_id", _str(40), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("subject_id", _str(40), nullable=False),
        sa.Column("role", _str(16), nullable=False),
        sa.Column("signing_order", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("link_nonce", _str(64), nullable=False),
        _utc("viewed_at", nullable=True),
        _utc("consented_at", nullable=True),
        _utc("signed_at", nullable=True),
        _utc("declined_at", nullable=True),
        sa.Column("signature", sa.JSON(), nullable=True),
        sa.Column("decline_reason", _str(500), nullable=True),
        sa.CheckConstraint("role IN ('signer', 'viewer')", name="ck_recipient_role"),
        sa.CheckConstraint(
            "status IN ('pending', 'viewed', 'consented', 'signed', 'declined')", name="ck_recipient_status"
        ),
        sa.CheckConstraint("signing_order >= 1", name="ck_recipient_order"),
        _envelope_of_org("recipient"),
    )
    op.create_index("ix_recipient_envelope_id", "recipient", ["envelope_id"])
    op.create_index("ix_recipient_org_id", "recipient", ["org_id"])
    op.create_table(
        "mail_message",
        sa.Column("id", _str(40), primary_key=True),
        sa.Column("org_id", _str(40), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("envelope_id", _str(40), nullable=False),
        sa.Column("recipient_id", _str(40), sa.ForeignKey("recipient.id"), nullable=False),
        sa.Column("kind", _str(16), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc("next_attempt_at", nullable=True),
        _utc("created_at"),
        _utc("sent_at", nullable=True),
        sa.Column("last_error", _str(500), nullable=True),
        sa.CheckConstraint("kind IN ('link', 'reminder')", name="ck_mail_message_kind"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_mail_message_status"),
    )
    op.create_index("ix_mail_message_due", "mail_message", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_mail_message_due", table_name="mail_message")
    op.drop_table("mail_message")
    op.drop_index("ix_recipient_org_id", table_name="recipient")
    op.drop_index("ix_recipient_envelope_id", table_name="recipient")
    op.drop_table("recipient")
    op.drop_index("ix_ceremony_org_id", table_name="ceremony")
    op.drop_table("ceremony")
    op.execute("UPDATE envelope SET status = 'voided' WHERE status = 'declined'")
    _statuses(_OLD_STATUSES)
