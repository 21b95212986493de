"""webhook disabled: when and why an organisation's webhook stopped sending (a 410 Gone from the receiver, as the
Standard Webhooks specification asks, or the organisation's own choice)

Revision ID: 0029_webhook_disabled
Revises: 0028_shared_secrets
Create Date: 2026-12-07 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0029_webhook_disabled"
down_revision = "0028_shared_secrets"
branch_labels = None
depends_on = None


# Plain ALTER TABLE: nullable columns need no rebuild, and a rebuild would drop any triggers on SQLite.
def upgrade() -> None:
    op.add_column("webhook_config", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "webhook_config", sa.Column("disabled_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_config", "disabled_reason")
    op.drop_column("webhook_config", "disabled_at")
