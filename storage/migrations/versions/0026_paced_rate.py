"""paced rate limits: ``rate_counter.tat``, the theoretical arrival time of a paced policy's row

The organisation's limit spreads its quota over the window (GCRA, vault/ratelimit.py): its one row per
organisation keeps the time at which its next request would be on schedule. Windowed rows leave it NULL. The
organisation's old windowed rows are left to the sweeper.

Revision ID: 0026_paced_rate
Revises: 0025_org_rate_limit
Create Date: 2026-12-05 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_paced_rate"
down_revision = "0025_org_rate_limit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rate_counter", sa.Column("tat", sa.Float(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM rate_counter WHERE tat IS NOT NULL")  # a paced row would read as a windowed count
    with op.batch_alter_table("rate_counter") as batch:
        batch.drop_column("tat")
