"""a recipient rebuilt from the log alone says its off-log values are still to come from a backup

Revision ID: 0019_recipient_restore_pending
Revises: 0018_transfers
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_recipient_restore_pending"
down_revision = "0018_transfers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipient") as batch:
        batch.add_column(sa.Column("restore_pending", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("recipient") as batch:
        batch.drop_column("restore_pending")
