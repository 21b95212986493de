"""embed origins: the origins allowed to frame an organisation's embedded signing page

Revision ID: 0016_embed_origins
Revises: 0015_ceremony
Create Date: 2026-12-04 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_embed_origins"
down_revision = "0015_ceremony"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embed_origin",
        sa.Column("org_id", sa.String(length=40), sa.ForeignKey("organisation.id"), primary_key=True),
        sa.Column("origin", sa.String(length=300), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("embed_origin")
