"""vaulted_document.signatures: the graded result of the document's embedded signatures

Revision ID: 0004_document_signatures
Revises: 0003_vault_claim
Create Date: 2026-11-29 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_document_signatures"
down_revision = "0003_vault_claim"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never a batch rebuild: on SQLite a rebuild would drop the table's append-only triggers
# (0002) and break the triggers of other tables that name it.


def upgrade() -> None:
    op.add_column("vaulted_document", sa.Column("signatures", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("vaulted_document", "signatures")
