"""vaulted_document.signatures: the graded result of the document's embedded signatures

Revision ID: 0006_document_signatures
Revises: 0003_vault_claim
Create Date: 2026-11-29 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_document_signatures"
down_revision = "0003_vault_claim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaulted_document") as batch_op:
        batch_op.add_column(sa.Column("signatures", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vaulted_document") as batch_op:
        batch_op.drop_column("signatures")
