"""apikey.rotated_from: a rotated key names the key it replaced (unique: one successor per key)

Revision ID: 0005_key_rotation
Revises: 0007_head_map
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_key_rotation"
down_revision = "0007_head_map"
branch_labels = None
depends_on = None


# Plain ALTER TABLE and a unique index, never a batch rebuild: on SQLite a rebuild drops a table's triggers.
# SQLite adds a column with its foreign key in one statement, and cannot add the constraint afterwards.


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE apikey ADD COLUMN rotated_from VARCHAR(40) REFERENCES apikey (id)")
    else:
        op.add_column("apikey", sa.Column("rotated_from", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        op.create_foreign_key("fk_apikey_rotated_from", "apikey", "apikey", ["rotated_from"], ["id"])
    op.create_index(op.f("ix_apikey_rotated_from"), "apikey", ["rotated_from"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_apikey_rotated_from"), table_name="apikey")
    with op.batch_alter_table("apikey") as batch_op:  # SQLite drops a column with a foreign key only by rebuild
        batch_op.drop_column("rotated_from")
