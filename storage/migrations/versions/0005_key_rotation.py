"""apikey.rotated_from: a rotated key names the key it replaced

Revision ID: 0005_key_rotation
Revises: 0003_vault_claim
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_key_rotation"
down_revision = "0003_vault_claim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotated_from", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.create_unique_constraint("uq_apikey_rotated_from", ["rotated_from"])
        batch_op.create_foreign_key("fk_apikey_rotated_from", "apikey", ["rotated_from"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("apikey", schema=None) as batch_op:
        batch_op.drop_constraint("fk_apikey_rotated_from", type_="foreignkey")
        batch_op.drop_constraint("uq_apikey_rotated_from", type_="unique")
        batch_op.drop_column("rotated_from")
