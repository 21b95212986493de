"""map nodes: the head map's nodes per version, so a proof at any version reads one path

Revision ID: 0020_map_nodes
Revises: 0019_recipient_restore_pending
Create Date: 2026-12-05 03:00:00

Existing maps are backfilled lazily, not here: hashing belongs to compliance/, which storage/ does not import.
The first map commit of an organisation after the upgrade replays its map_leaf rows into nodes (once, in that
commit's transaction); until then a proof at one of its versions is rebuilt from the leaves as before.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0020_map_nodes"
down_revision = "0019_recipient_restore_pending"
branch_labels = None
depends_on = None


def _triggers(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"CREATE TRIGGER map_node_no_{op_} BEFORE {op_.upper()} ON map_node FOR EACH ROW "
            "EXECUTE FUNCTION evault_refuse('append-only')"
            for op_ in ("update", "delete")
        ]
    return [
        f"CREATE TRIGGER map_node_no_{op_} BEFORE {op_.upper()} ON map_node "
        f"BEGIN SELECT RAISE(ABORT, '{op_.upper()} on map_node is refused: append-only'); END"
        for op_ in ("update", "delete")
    ]


def upgrade() -> None:
    string = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "map_node",
        sa.Column("org_id", string(length=40), nullable=False),
        sa.Column("node", string(length=65), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("hash", string(length=64), nullable=False),
        sa.Column("leaf_key", string(length=64), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("org_id", "node", "version"),
    )
    for statement in _triggers(op.get_bind().dialect.name):  # append-only, like map_leaf and map_root (0005)
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in ("map_node_no_update", "map_node_no_delete"):
        op.execute(f"DROP TRIGGER {name} ON map_node" if dialect == "postgresql" else f"DROP TRIGGER {name}")
    op.drop_table("map_node")
