"""rate counters per organisation: ``rate_counter.key_id`` becomes ``subject``

A counter now counts an API key's requests (policies ``default``, ``copies``) or an organisation's (``org``, all
its keys together; ``checkpoints``, which already stored an organisation id under the old name). The column holds
either id, so it is named for what it is; the policy in the row's key says which kind (vault/ratelimit.py).
The rows themselves are kept: a count in its window goes on counting.

Revision ID: 0025_org_rate_limit
Revises: 0024_slot_leases
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0025_org_rate_limit"
down_revision = "0024_slot_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rate_counter RENAME COLUMN key_id TO subject")  # SQLite 3.25+ and PostgreSQL alike


def downgrade() -> None:
    op.execute("ALTER TABLE rate_counter RENAME COLUMN subject TO key_id")
