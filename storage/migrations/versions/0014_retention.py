"""retention and legal hold: the record's hold (its reason and since when) and its disposal

Revision ID: 0014_retention
Revises: 0013_leases
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014_retention"
down_revision = "0013_leases"
branch_labels = None
depends_on = None


_IDENTITY = ("id", "envelope_id", "org_id", "source", "vaulted_at", "vaulted_by")
_RELEASE = ("released_at", "released_by", "release_reason", "release_details")
_WHY = "a record changes only to be released, once; retained longer; held or released from a hold; disposed of once"
_OLD_WHY = "a record changes only to be released, once"


def _refused(differ: str, text: str) -> str:
    """When an update of vault_record is refused; ``differ`` is the dialect's null-safe inequality."""
    identity = " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in _IDENTITY)
    release = " OR ".join(f"NEW.{c}{text} {differ} OLD.{c}{text}" for c in _RELEASE)
    return (
        f"{identity} OR NEW.retain_until < OLD.retain_until"
        f" OR (({release}) AND (OLD.released_at IS NOT NULL OR NEW.released_at IS NULL))"
        f" OR (OLD.disposed_at IS NOT NULL AND NEW.disposed_at {differ} OLD.disposed_at)"
    )


def _pg_function(condition: str, why: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION evault_vault_record_release_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {condition} THEN
            RAISE EXCEPTION 'UPDATE on vault_record is refused: {why}'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """


def _sqlite_trigger(condition: str, why: str) -> list[str]:
    return [
        "DROP TRIGGER vault_record_release_once",
        f"CREATE TRIGGER vault_record_release_once BEFORE UPDATE ON vault_record WHEN {condition}"
        f" BEGIN SELECT RAISE(ABORT, 'UPDATE on vault_record is refused: {why}'); END",
    ]


def upgrade() -> None:
    # Plain ADD COLUMN: a batch (table copy) on SQLite would trip the guard triggers that name vault_record.
    op.add_column(
        "vault_record", sa.Column("legal_hold_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
    )
    op.add_column("vault_record", sa.Column("legal_hold_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("vault_record", sa.Column("disposed_at", sa.DateTime(timezone=True), nullable=True))
    # The record's guard now also lets retention lengthen (never shorten), a hold come and go, and a disposal
    # happen once; everything that names the copy stays as it was written.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_function(_refused("IS DISTINCT FROM", "::text"), _WHY))
    else:
        for statement in _sqlite_trigger(_refused("IS NOT", ""), _WHY):
            op.execute(statement)


def downgrade() -> None:
    cols = ("id", "envelope_id", "org_id", "source", "retain_until", "vaulted_at", "vaulted_by")
    if op.get_bind().dialect.name == "postgresql":
        changed = f"({', '.join('NEW.' + c for c in cols)}) IS DISTINCT FROM ({', '.join('OLD.' + c for c in cols)})"
        op.execute(_pg_function(f"OLD.released_at IS NOT NULL OR NEW.released_at IS NULL OR {changed}", _OLD_WHY))
    else:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in cols)
        for statement in _sqlite_trigger(
            f"OLD.released_at IS NOT NULL OR NEW.released_at IS NULL OR {changed}", _OLD_WHY
        ):
            op.execute(statement)
    op.drop_column("vault_record", "disposed_at")
    op.drop_column("vault_record", "legal_hold_since")
    op.drop_column("vault_record", "legal_hold_reason")
