"""database invariants: checks, organisation-consistent keys, append-only triggers, 64-bit log positions

The application already keeps these rules; the database now refuses a write that breaks them, whoever makes
it. Checks pin states, sizes and digests; composite foreign keys keep a row's organisation that of its
envelope; triggers make the ledger, checkpoints, documents and copies append-only, let a vault record change
only to record its release (once), and let log tiles and the log size only grow. A database owner can still
drop a trigger: the WORM audit (``compliance.verifier``) remains the defence that does not trust the database.

On SQLite the tables are recreated (batch mode; ``env.py`` turns foreign keys off around it), data kept.
Triggers come last: SQLite checks every trigger's body when a table is renamed.

Revision ID: 0002_invariants
Revises: 0001
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_invariants"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_COLUMNS = {
    "event": ["leaf_index", "chain_seq"],
    "log_state": ["size"],
    "log_tile": ["idx"],
    "checkpoint": ["size"],
    "vaulted_document": ["size"],
    "copy_record": ["size"],
}
NULLABLE = {"chain_seq"}
ENVELOPE_ORG_FKS = {  # child table -> constraint name; (envelope_id, org_id) -> envelope(id, org_id)
    "vault_record": "fk_vault_record_envelope_org",
    "copy_record": "fk_copy_record_envelope_org",
    "event": "fk_event_envelope_org",
}
ENVELOPE_ID_ORG = "uq_envelope_id_org_id"


def _hex(column: str, dialect: str) -> str:
    """64 lower-case hex characters, in a form each database can evaluate."""
    if dialect == "postgresql":
        return f"{column} ~ '^[0-9a-f]{{64}}$'"
    return f"length({column}) = 64 AND {column} NOT GLOB '*[^0-9a-f]*'"


def _checks(dialect: str) -> dict[str, dict[str, str]]:
    released = "released_at IS NOT NULL AND released_by IS NOT NULL AND release_reason IS NOT NULL"
    unreleased = "released_at IS NULL AND released_by IS NULL AND release_reason IS NULL"
    return {
        "envelope": {
            "ck_envelope_kind": "kind IN ('esign', 'paper')",
            # 'sent' is reserved for the e-sign ceremony
            "ck_envelope_status": "status IN ('draft', 'sent', 'awaiting_upload', 'completed', 'voided', 'expired')",
            "ck_envelope_vault_state": "vault_state IN ('not_vaulted', 'vaulted', 'released')",
            "ck_envelope_revision": "revision >= 1",
        },
        "vault_record": {
            "ck_vault_record_source": "source IN ('signed', 'upload')",
            "ck_vault_record_release_reason": (
                "release_reason IS NULL OR release_reason IN ('transfer', 'paper_out', 'payoff', 'other')"
            ),
            "ck_vault_record_release": f"({unreleased}) OR ({released})",
        },
        "vaulted_document": {
            "ck_vaulted_document_position": "position >= 0",
            "ck_vaulted_document_size": "size >= 0",
            "ck_vaulted_document_page_count": "page_count >= 1",
            "ck_vaulted_document_sha256": _hex("sha256", dialect),
        },
        "copy_record": {
            "ck_copy_record_size": "size >= 0",
            "ck_copy_record_sha256": _hex("sha256", dialect),
            "ck_copy_record_source_sha256": _hex("source_sha256", dialect),
        },
        "event": {
            "ck_event_leaf_index": "leaf_index >= 0",
            "ck_event_chain_seq": (
                "(envelope_id IS NULL AND chain_seq IS NULL) OR (envelope_id IS NOT NULL AND chain_seq >= 0)"
            ),
            "ck_event_entry_hash": _hex("entry_hash", dialect),
        },
        "log_state": {"ck_log_state_size": "size >= 0"},
        "log_tile": {
            "ck_log_tile_position": "level >= 0 AND idx >= 0",
            # whole 32-byte hashes, one to 256 of them
            "ck_log_tile_hashes": "length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0",
        },
        "checkpoint": {
            "ck_checkpoint_size": "size >= 1",
            "ck_checkpoint_root_hash": _hex("root_hash", dialect),
        },
    }


# Rows that may never change or go: the ledger, its checkpoints, an authoritative copy's documents, copies.
APPEND_ONLY = ["event", "checkpoint", "vaulted_document", "copy_record"]
IMMUTABLE_RECORD_COLUMNS = ["id", "envelope_id", "org_id", "source", "retain_until", "vaulted_at", "vaulted_by"]

PG_FUNCTIONS = [
    """
    CREATE FUNCTION evault_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% on % is refused: %', TG_OP, TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    f"""
    CREATE FUNCTION evault_vault_record_release_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.released_at IS NOT NULL OR NEW.released_at IS NULL
           OR ({", ".join("NEW." + c for c in IMMUTABLE_RECORD_COLUMNS)})
              IS DISTINCT FROM ({", ".join("OLD." + c for c in IMMUTABLE_RECORD_COLUMNS)}) THEN
            RAISE EXCEPTION 'UPDATE on vault_record is refused: a record changes only to be released, once'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION evault_log_tile_grows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (NEW.org_id, NEW.level, NEW.idx) IS DISTINCT FROM (OLD.org_id, OLD.level, OLD.idx)
           OR length(NEW.hashes) < length(OLD.hashes)
           OR substring(NEW.hashes from 1 for length(OLD.hashes)) <> OLD.hashes THEN
            RAISE EXCEPTION 'UPDATE on log_tile is refused: a tile only grows, its old hashes a prefix of the new'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION evault_log_state_grows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.org_id IS DISTINCT FROM OLD.org_id OR NEW.size < OLD.size THEN
            RAISE EXCEPTION 'UPDATE on log_state is refused: a log only grows'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION evault_copy_record_source() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM vaulted_document d JOIN vault_record r ON r.id = d.record_id
            WHERE d.id = NEW.document_id AND r.envelope_id = NEW.envelope_id
        ) THEN
            RAISE EXCEPTION 'INSERT on copy_record is refused: its document is not of its envelope'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
]
PG_FUNCTION_NAMES = [
    "evault_refuse",
    "evault_vault_record_release_once",
    "evault_log_tile_grows",
    "evault_log_state_grows",
    "evault_copy_record_source",
]


def _pg_triggers() -> dict[str, str]:
    """Trigger name -> its CREATE TRIGGER statement (without the name)."""
    triggers: dict[str, str] = {}
    for table in APPEND_ONLY:
        triggers[f"{table}_append_only"] = (
            f"BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION evault_refuse('append-only')"
        )
    for table in [*APPEND_ONLY, "vault_record", "log_tile", "log_state"]:
        triggers[f"{table}_no_truncate"] = (
            f"BEFORE TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION evault_refuse('append-only')"
        )
    triggers["vault_record_no_delete"] = (
        "BEFORE DELETE ON vault_record FOR EACH ROW EXECUTE FUNCTION evault_refuse('a record is kept for good')"
    )
    triggers["vault_record_release_once"] = (
        "BEFORE UPDATE ON vault_record FOR EACH ROW EXECUTE FUNCTION evault_vault_record_release_once()"
    )
    triggers["log_tile_no_delete"] = (
        "BEFORE DELETE ON log_tile FOR EACH ROW EXECUTE FUNCTION evault_refuse('a tile is kept for good')"
    )
    triggers["log_tile_grows"] = "BEFORE UPDATE ON log_tile FOR EACH ROW EXECUTE FUNCTION evault_log_tile_grows()"
    triggers["log_state_no_delete"] = (
        "BEFORE DELETE ON log_state FOR EACH ROW EXECUTE FUNCTION evault_refuse('a log is kept for good')"
    )
    triggers["log_state_grows"] = "BEFORE UPDATE ON log_state FOR EACH ROW EXECUTE FUNCTION evault_log_state_grows()"
    triggers["copy_record_source"] = (
        "BEFORE INSERT ON copy_record FOR EACH ROW EXECUTE FUNCTION evault_copy_record_source()"
    )
    return triggers


def _sqlite_triggers() -> dict[str, str]:
    """Trigger name -> its CREATE TRIGGER statement (without the name)."""

    def refuse(timing: str, why: str, when: str = "") -> str:
        table = timing.rsplit(" ", 1)[1]
        operation = timing.split(" ")[1]
        condition = f" WHEN {when}" if when else ""
        return f"{timing}{condition} BEGIN SELECT RAISE(ABORT, '{operation} on {table} is refused: {why}'); END"

    triggers: dict[str, str] = {}
    for table in APPEND_ONLY:
        triggers[f"{table}_no_update"] = refuse(f"BEFORE UPDATE ON {table}", "append-only")
        triggers[f"{table}_no_delete"] = refuse(f"BEFORE DELETE ON {table}", "append-only")
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in IMMUTABLE_RECORD_COLUMNS)
    triggers["vault_record_no_delete"] = refuse("BEFORE DELETE ON vault_record", "a record is kept for good")
    triggers["vault_record_release_once"] = refuse(
        "BEFORE UPDATE ON vault_record",
        "a record changes only to be released, once",
        f"OLD.released_at IS NOT NULL OR NEW.released_at IS NULL OR {changed}",
    )
    triggers["log_tile_no_delete"] = refuse("BEFORE DELETE ON log_tile", "a tile is kept for good")
    triggers["log_tile_grows"] = refuse(
        "BEFORE UPDATE ON log_tile",
        "a tile only grows, its old hashes a prefix of the new",
        "NEW.org_id IS NOT OLD.org_id OR NEW.level IS NOT OLD.level OR NEW.idx IS NOT OLD.idx"
        " OR length(NEW.hashes) < length(OLD.hashes)"
        " OR substr(NEW.hashes, 1, length(OLD.hashes)) IS NOT OLD.hashes",
    )
    triggers["log_state_no_delete"] = refuse("BEFORE DELETE ON log_state", "a log is kept for good")
    triggers["log_state_grows"] = refuse(
        "BEFORE UPDATE ON log_state", "a log only grows", "NEW.org_id IS NOT OLD.org_id OR NEW.size < OLD.size"
    )
    triggers["copy_record_source"] = refuse(
        "BEFORE INSERT ON copy_record",
        "its document is not of its envelope",
        "NOT EXISTS (SELECT 1 FROM vaulted_document d JOIN vault_record r ON r.id = d.record_id"
        " WHERE d.id = NEW.document_id AND r.envelope_id = NEW.envelope_id)",
    )
    return triggers


def _triggers(dialect: str) -> dict[str, str]:
    return _pg_triggers() if dialect == "postgresql" else _sqlite_triggers()


def _trigger_table(statement: str) -> str:
    return statement.split(" ON ", 1)[1].split(" ", 1)[0]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    checks = _checks(dialect)
    with op.batch_alter_table("envelope") as batch:
        batch.create_unique_constraint(ENVELOPE_ID_ORG, ["id", "org_id"])
        for name, condition in checks.pop("envelope").items():
            batch.create_check_constraint(name, condition)
    for table, table_checks in checks.items():
        with op.batch_alter_table(table) as batch:
            for column in BIG_COLUMNS.get(table, []):
                batch.alter_column(
                    column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=column in NULLABLE
                )
            if table in ENVELOPE_ORG_FKS:
                batch.create_foreign_key(
                    ENVELOPE_ORG_FKS[table], "envelope", ["envelope_id", "org_id"], ["id", "org_id"]
                )
            for name, condition in table_checks.items():
                batch.create_check_constraint(name, condition)
    if dialect == "postgresql":
        for function in PG_FUNCTIONS:
            op.execute(function)
    for name, statement in _triggers(dialect).items():
        op.execute(f"CREATE TRIGGER {name} {statement}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, statement in _triggers(dialect).items():
        op.execute(
            f"DROP TRIGGER {name} ON {_trigger_table(statement)}" if dialect == "postgresql" else f"DROP TRIGGER {name}"
        )
    if dialect == "postgresql":
        for function in PG_FUNCTION_NAMES:
            op.execute(f"DROP FUNCTION {function}()")
    checks = _checks(dialect)
    envelope_checks = checks.pop("envelope")
    for table, table_checks in checks.items():
        with op.batch_alter_table(table) as batch:
            for name in table_checks:
                batch.drop_constraint(name, type_="check")
            if table in ENVELOPE_ORG_FKS:
                batch.drop_constraint(ENVELOPE_ORG_FKS[table], type_="foreignkey")
            for column in BIG_COLUMNS.get(table, []):
                batch.alter_column(
                    column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=column in NULLABLE
                )
    with op.batch_alter_table("envelope") as batch:
        for name in envelope_checks:
            batch.drop_constraint(name, type_="check")
        batch.drop_constraint(ENVELOPE_ID_ORG, type_="unique")
