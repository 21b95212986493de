"""leases: the webhook sender's lease table becomes the one lease table of every background job

Revision ID: 0013_leases
Revises: 0012_signing_keys
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlmodel
from alembic import op

revision = "0013_leases"
down_revision = "0012_signing_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The sender's row (name "webhook-sender") keeps its token: fencing stays monotonic across the upgrade.
    op.rename_table("webhook_lease", "lease")
    with op.batch_alter_table("lease") as batch:  # "checkpointer:<org_id>" needs more than 40 characters
        batch.alter_column(
            "name",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=40),
            type_=sqlmodel.sql.sqltypes.AutoString(length=80),
            existing_nullable=False,
        )


def downgrade() -> None:
    op.execute("DELETE FROM lease WHERE name <> 'webhook-sender'")
    with op.batch_alter_table("lease") as batch:
        batch.alter_column(
            "name",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=80),
            type_=sqlmodel.sql.sqltypes.AutoString(length=40),
            existing_nullable=False,
        )
    op.rename_table("lease", "webhook_lease")
