"""webhooks: each organisation's endpoint and keys, the outbox of deliveries, their attempts, the sender's lease

Revision ID: 0011_webhooks
Revises: 0010_copy_mark_verified
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011_webhooks"
down_revision = "0010_copy_mark_verified"
branch_labels = None
depends_on = None


def _str(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _utc(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_config",
        sa.Column("org_id", _str(40), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("url", _str(2048), nullable=False),
        sa.Column("secret", _str(200), nullable=False),
        sa.Column("previous_secret", _str(200), nullable=True),
        _utc("previous_until", nullable=True),
        _utc("created_at"),
        _utc("updated_at"),
        sa.CheckConstraint("(previous_secret IS NULL) = (previous_until IS NULL)", name="ck_webhook_config_rotation"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", _str(40), primary_key=True),
        sa.Column("org_id", _str(40), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("webhook_id", _str(40), nullable=False, unique=True),
        sa.Column("event_type", _str(64), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.Column("envelope_id", _str(40), nullable=True),
        sa.Column("body", _str(), nullable=False),
        sa.Column("status", _str(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_step", sa.Integer(), nullable=False),
        _utc("next_attempt_at", nullable=True),
        sa.Column("claimed_by", sa.BigInteger(), nullable=True),
        _utc("created_at"),
        _utc("last_attempt_at", nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_webhook_delivery_status"),
        sa.CheckConstraint(
            "(status = 'pending') = (next_attempt_at IS NOT NULL)", name="ck_webhook_delivery_pending_due"
        ),
    )
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_delivery_org_created", "webhook_delivery", ["org_id", "created_at", "id"])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", _str(40), sa.ForeignKey("webhook_delivery.id"), nullable=False),
        _utc("attempted_at"),
        sa.Column("outcome", _str(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", _str(500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
    )
    op.create_index("ix_webhook_attempt_delivery_id", "webhook_attempt", ["delivery_id"])
    op.create_table(
        "webhook_lease",
        sa.Column("name", _str(40), primary_key=True),
        sa.Column("holder", _str(80), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        _utc("expires_at"),
    )


def downgrade() -> None:
    op.drop_table("webhook_lease")
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_config")
