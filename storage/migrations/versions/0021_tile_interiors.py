"""tile interiors: beside each tile's bottom row, the parents complete inside it, so that a proof reads its
hashes instead of recomputing up to 255 of them per tile; backfilled from the bottom rows

Revision ID: 0021_tile_interiors
Revises: 0020_map_nodes
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0021_tile_interiors"
down_revision = "0020_map_nodes"
branch_labels = None
depends_on = None

_BATCH = 500


def _interior(row: bytes) -> bytes:
    """The parents complete in ``row``, in the order they complete (the layout ``compliance.ledger.tiles`` reads);
    written out here so that this migration keeps computing what it defined."""
    stack: list[bytes] = []
    out: list[bytes] = []
    for count in range(1, len(row) // 32 + 1):
        h = row[(count - 1) * 32 : count * 32]
        while not count & 1:
            h = hashlib.sha256(b"\x01" + stack.pop() + h).digest()
            out.append(h)
            count >>= 1
        stack.append(h)
    return b"".join(out)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch): a table copy on SQLite would trip the guard triggers on log_tile.
    op.add_column("log_tile", sa.Column("interior", sa.LargeBinary(), nullable=True))
    tile = sa.table(
        "log_tile",
        sa.column("org_id", sa.String),
        sa.column("level", sa.Integer),
        sa.column("idx", sa.BigInteger),
        sa.column("hashes", sa.LargeBinary),
        sa.column("interior", sa.LargeBinary),
    )
    bind = op.get_bind()
    key = (tile.c.org_id, tile.c.level, tile.c.idx)
    update = (
        tile.update()
        .where(tile.c.org_id == sa.bindparam("o"), tile.c.level == sa.bindparam("l"), tile.c.idx == sa.bindparam("i"))
        .values(interior=sa.bindparam("interior"))
    )
    while True:  # every pass fills the first _BATCH tiles still without one
        rows = bind.execute(
            sa.select(*key, tile.c.hashes).where(tile.c.interior.is_(None)).order_by(*key).limit(_BATCH)
        )
        batch = [{"o": o, "l": lvl, "i": i, "interior": _interior(bytes(h))} for o, lvl, i, h in rows]
        if not batch:
            return
        bind.execute(update, batch)


def downgrade() -> None:
    op.drop_column("log_tile", "interior")
