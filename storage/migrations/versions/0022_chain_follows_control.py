"""the chain follows control: an envelope's entries may sit in the log of an organisation it was handed to

A transfer of control moves the envelope's chain into the receiver's log (docs/transfers.md), so an event's
organisation is no longer always its envelope's: the composite key (envelope_id, org_id) -> envelope(id, org_id)
on ``event`` goes; ``envelope_id`` still references the envelope. Which log may hold an entry is the ledger's
to say (a hand-off and its arrival), and the verifier checks it (compliance/verifier/logs.py and rows.py).

On SQLite the table is recreated (batch mode), so its append-only triggers are dropped first and made again.

Revision ID: 0022_chain_follows_control
Revises: 0021_tile_interiors
Create Date: 2026-12-05 03:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0022_chain_follows_control"
down_revision = "0021_tile_interiors"
branch_labels = None
depends_on = None

FK = "fk_event_envelope_org"
_SQLITE_TRIGGERS = {
    name: f"BEFORE {operation} ON event BEGIN SELECT RAISE(ABORT, '{operation} on event is refused: append-only'); END"
    for name, operation in (("event_no_update", "UPDATE"), ("event_no_delete", "DELETE"))
}


def _recreating(change: str) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("event") as batch:
        if change == "drop":
            batch.drop_constraint(FK, type_="foreignkey")
        else:
            batch.create_foreign_key(FK, "envelope", ["envelope_id", "org_id"], ["id", "org_id"])
    if sqlite:
        for name, statement in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {statement}")


def upgrade() -> None:
    _recreating("drop")


def downgrade() -> None:
    _recreating("create")  # refused by the database once a chain crossed logs: such a vault cannot go back
