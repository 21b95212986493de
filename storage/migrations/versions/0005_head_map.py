"""head map: per-version envelope heads and the map roots committed to the log

Revision ID: 0005_head_map
Revises: 0004_document_signatures
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_head_map"
down_revision = "0004_document_signatures"
branch_labels = None
depends_on = None


APPEND_ONLY = ("map_leaf", "map_root")


def _triggers(dialect: str, table: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"CREATE TRIGGER {table}_no_{op_} BEFORE {op_.upper()} ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION evault_refuse('append-only')"
            for op_ in ("update", "delete")
        ]
    return [
        f"CREATE TRIGGER {table}_no_{op_} BEFORE {op_.upper()} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{op_.upper()} on {table} is refused: append-only'); END"
        for op_ in ("update", "delete")
    ]


def upgrade() -> None:
    op.create_table(
        "map_leaf",
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("envelope_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("org_id", "envelope_key", "version"),
    )
    op.create_index("ix_map_leaf_org_version", "map_leaf", ["org_id", "version"])
    op.create_table(
        "map_root",
        sa.Column("org_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entry_index", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("org_id", "version"),
    )
    # Append-only, like the log that commits them (0002's evault_refuse on PostgreSQL).
    for table in APPEND_ONLY:
        for statement in _triggers(op.get_bind().dialect.name, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for name in (f"{table}_no_update", f"{table}_no_delete"):
            op.execute(f"DROP TRIGGER {name} ON {table}" if dialect == "postgresql" else f"DROP TRIGGER {name}")
    op.drop_table("map_root")
    op.drop_index("ix_map_leaf_org_version", table_name="map_leaf")
    op.drop_table("map_leaf")
