"""copy_record.mark_verified_at: a copy's mark is verified once, at issuance, and the result kept with its row

Revision ID: 0010_copy_mark_verified
Revises: 0009_data_subjects
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_copy_mark_verified"
down_revision = "0009_data_subjects"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, never a batch rebuild (a rebuild would drop 0002's append-only triggers on SQLite).
    # Copies issued before this revision keep NULL: their mark was never verified at issuance.
    op.add_column("copy_record", sa.Column("mark_verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE copy_record DROP COLUMN mark_verified_at")
