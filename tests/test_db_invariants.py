"""The database refuses invariant-breaking writes itself (migration 0002_invariants), on SQLite and PostgreSQL.

Every refused write below names the rule that refused it, so a case cannot pass by failing for another reason;
the honest writes the application makes still go through; models and migrations agree; and an attacker who
owns the database and drops the triggers is still caught by the WORM audit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Integer, MetaData, Table, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from compliance.ledger.tiles import interior_of
from compliance.verifier import audit_log
from storage.db import MIGRATIONS, Database
from storage.log_tiles import SqlTileStore, Tile
from storage.models import (
    ApiKey,
    Checkpoint,
    CopyRecord,
    Envelope,
    Event,
    LogState,
    LogTile,
    Organisation,
    VaultedDocument,
    VaultRecord,
)
from tests.helpers import API, create_envelope, disarm_triggers, together, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime
from vault.tenancy import bootstrap

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=3650)
H1, H2, H3 = (hashlib.sha256(bytes([i])).digest() for i in range(3))


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _envelope(env_id: str, org_id: str, vault_state: str) -> dict[str, Any]:
    status = "awaiting_upload" if vault_state == "not_vaulted" else "completed"
    return {
        "id": env_id,
        "org_id": org_id,
        "kind": "paper",
        "status": status,
        "vault_state": vault_state,
        "title": "Loan",
        "external_id": None,
        "parties": [],
        "secured_party": None,
        "meta": {},
        "revision": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }


def _record(rec_id: str, env_id: str, org_id: str, **release: Any) -> dict[str, Any]:
    row = {
        "id": rec_id,
        "envelope_id": env_id,
        "org_id": org_id,
        "source": "upload",
        "retain_until": LATER,
        "vaulted_at": NOW,
        "vaulted_by": "key_a",
        "released_at": None,
        "released_by": None,
        "release_reason": None,
        "release_details": None,
    }
    return {**row, **release}


def _document(doc_id: str, rec_id: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": doc_id,
        "record_id": rec_id,
        "position": 0,
        "filename": "loan.pdf",
        "sha256": _hex(doc_id),
        "size": 1000,
        "page_count": 2,
        "s3_bucket": "auth",
        "s3_key": f"k/{doc_id}",
        "s3_version_id": "v1",
    }
    return {**row, **changes}


def _copy(copy_id: str, org_id: str, env_id: str, doc_id: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": copy_id,
        "org_id": org_id,
        "envelope_id": env_id,
        "document_id": doc_id,
        "source_sha256": _hex(doc_id),
        "sha256": _hex(copy_id),
        "size": 1200,
        "s3_bucket": "copies",
        "s3_key": f"c/{copy_id}",
        "s3_version_id": "v1",
        "issued_at": NOW,
        "issued_by": "key_a",
    }
    return {**row, **changes}


def _event(org_id: str, leaf_index: int, env_id: str | None, chain_seq: int | None, **changes: Any) -> dict[str, Any]:
    entry = f"{org_id}/{leaf_index}".encode()
    row = {
        "org_id": org_id,
        "leaf_index": leaf_index,
        "envelope_id": env_id,
        "chain_seq": chain_seq,
        "event_type": "test",
        "occurred_at": NOW,
        "entry": entry,
        "entry_hash": hashlib.sha256(entry).hexdigest(),
    }
    return {**row, **changes}


def _checkpoint(org_id: str, size: int, **changes: Any) -> dict[str, Any]:
    row = {
        "org_id": org_id,
        "size": size,
        "root_hash": _hex(f"root{size}"),
        "note": "note",
        "s3_key": f"log/{org_id}/checkpoint/{size}",
        "s3_version_id": "v1",
        "timestamp_token": None,
        "created_at": NOW,
    }
    return {**row, **changes}


def _seed(conn: Connection) -> None:
    """Honest rows for two organisations; column names are those of revision 0001 too."""
    conn.execute(_table(Organisation).insert(), [{"id": o, "name": o, "created_at": NOW} for o in ("org_a", "org_b")])
    conn.execute(
        _table(Envelope).insert(),
        [
            _envelope("env_a", "org_a", "vaulted"),
            _envelope("env_a2", "org_a", "released"),
            _envelope("env_a3", "org_a", "not_vaulted"),
            _envelope("env_b", "org_b", "not_vaulted"),
        ],
    )
    released = {"released_at": NOW, "released_by": "key_a", "release_reason": "payoff", "release_details": {}}
    conn.execute(
        _table(VaultRecord).insert(),
        [_record("ac_a", "env_a", "org_a"), _record("ac_a2", "env_a2", "org_a", **released)],
    )
    conn.execute(_table(VaultedDocument).insert(), [_document("doc_a", "ac_a"), _document("doc_a2", "ac_a2")])
    conn.execute(_table(CopyRecord).insert(), [_copy("cp_a", "org_a", "env_a", "doc_a")])
    conn.execute(
        _table(Event).insert(),
        [
            _event("org_a", 0, "env_a", 0),
            _event("org_a", 1, "env_a2", 0),
            _event("org_a", 2, None, None),
            _event("org_b", 0, "env_b", 0),
        ],
    )
    conn.execute(_table(LogState).insert(), [{"org_id": "org_a", "size": 3}, {"org_id": "org_b", "size": 1}])
    conn.execute(
        _table(LogTile).insert(),
        [
            {"org_id": "org_a", "level": 0, "idx": 0, "hashes": H1 + H2},
            {"org_id": "org_b", "level": 0, "idx": 0, "hashes": H1},
        ],
    )
    conn.execute(_table(Checkpoint).insert(), [_checkpoint("org_a", 2)])


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    with database.engine.begin() as conn:
        _seed(conn)
    yield database
    database.dispose()


def _sql(statement: str, **params: Any) -> Callable[[Connection], Any]:
    return lambda conn: conn.execute(text(statement), params)


def _insert(model: Any, row: dict[str, Any]) -> Callable[[Connection], Any]:
    return lambda conn: conn.execute(_table(model).insert(), [row])


FK = "_envelope_org"  # PostgreSQL names the composite key that refused; SQLite names no foreign key


@dataclass(frozen=True)
class Bad:
    name: str
    write: Callable[[Connection], Any]
    refused_by: str  # a fragment of the database's message: the constraint or trigger that refused


BAD_WRITES = [
    # the twelve the issue found accepted, and more of their kind
    Bad("update event", _sql("UPDATE event SET event_type = 'forged' WHERE leaf_index = 0"), "append-only"),
    Bad("delete event", _sql("DELETE FROM event WHERE org_id = 'org_b'"), "append-only"),
    Bad("update checkpoint", _sql("UPDATE checkpoint SET note = 'forged'"), "append-only"),
    Bad("delete checkpoint", _sql("DELETE FROM checkpoint"), "append-only"),
    Bad("vault record of another org's envelope", _insert(VaultRecord, _record("ac_x", "env_b", "org_a")), FK),
    # An event of another organisation's envelope is the chain after a hand-off of control (docs/transfers.md):
    # which log may hold it is the ledger's to say and the verifier's to check; its envelope must exist.
    Bad("event of no envelope", _insert(Event, _event("org_a", 3, "env_nowhere", 1)), "foreign key"),
    Bad("copy of another org's envelope", _insert(CopyRecord, _copy("cp_x", "org_b", "env_a", "doc_a")), FK),
    Bad("envelope moved to another org", _sql("UPDATE envelope SET org_id = 'org_b' WHERE id = 'env_a'"), FK),
    Bad("unknown vault state", _sql("UPDATE envelope SET vault_state = 'lost'"), "ck_envelope_vault_state"),
    Bad("unknown status", _sql("UPDATE envelope SET status = 'misplaced'"), "ck_envelope_status"),
    Bad("unknown kind", _sql("UPDATE envelope SET kind = 'fax'"), "ck_envelope_kind"),
    Bad("revision zero", _sql("UPDATE envelope SET revision = 0"), "ck_envelope_revision"),
    Bad("negative size", _insert(VaultedDocument, _document("doc_x", "ac_a", position=1, size=-1)), "_size"),
    Bad("no pages", _insert(VaultedDocument, _document("doc_x", "ac_a", position=1, page_count=0)), "_page_count"),
    Bad("negative position", _insert(VaultedDocument, _document("doc_x", "ac_a", position=-1)), "_position"),
    Bad(
        "upper-case hex digest",
        _insert(VaultedDocument, _document("doc_x", "ac_a", position=1, sha256=_hex("x").upper())),
        "ck_vaulted_document_sha256",
    ),
    Bad(
        "short hex digest",
        _insert(CopyRecord, _copy("cp_x", "org_a", "env_a", "doc_a", sha256="ab" * 31)),
        "ck_copy_record_sha256",
    ),
    Bad(
        "non-hex entry hash",
        _insert(Event, _event("org_a", 3, "env_a", 1, entry_hash="g" * 64)),
        "ck_event_entry_hash",
    ),
    Bad("negative leaf index", _insert(Event, _event("org_a", -1, "env_a", 1)), "ck_event_leaf_index"),
    Bad("chain seq without envelope", _insert(Event, _event("org_a", 3, None, 0)), "ck_event_chain_seq"),
    Bad("empty checkpoint", _insert(Checkpoint, _checkpoint("org_b", 0)), "ck_checkpoint_size"),
    Bad(
        "bad checkpoint root",
        _insert(Checkpoint, _checkpoint("org_b", 1, root_hash="0" * 63)),
        "ck_checkpoint_root_hash",
    ),
    Bad(
        "vault record re-released",
        _sql("UPDATE vault_record SET release_reason = 'other' WHERE id = 'ac_a2'"),
        "released, once",
    ),
    Bad(
        "retain_until changed",
        _sql("UPDATE vault_record SET retain_until = :t WHERE id = 'ac_a'", t=NOW),
        "released, once",
    ),
    Bad(
        "release with retain_until changed",
        _sql(
            "UPDATE vault_record SET retain_until = :t, released_at = :t, released_by = 'k', release_reason = 'other'"
            " WHERE id = 'ac_a'",
            t=NOW,
        ),
        "released, once",
    ),
    Bad(
        "release without a reason",
        _sql("UPDATE vault_record SET released_at = :t, released_by = 'k' WHERE id = 'ac_a'", t=NOW),
        "ck_vault_record_release",
    ),
    Bad(
        "unknown release reason",
        _sql(
            "UPDATE vault_record SET released_at = :t, released_by = 'k', release_reason = 'lost' WHERE id = 'ac_a'",
            t=NOW,
        ),
        "ck_vault_record_release_reason",
    ),
    Bad("unknown record source", _insert(VaultRecord, _record("ac_x", "env_a3", "org_a", source="fax")), "_source"),
    Bad("delete vault record", _sql("DELETE FROM vault_record WHERE id = 'ac_a2'"), "kept for good"),
    Bad("update document", _sql("UPDATE vaulted_document SET s3_version_id = 'v2'"), "append-only"),
    Bad("delete document", _sql("DELETE FROM vaulted_document WHERE id = 'doc_a2'"), "append-only"),
    Bad("update copy", _sql("UPDATE copy_record SET sha256 = :h", h=_hex("y")), "append-only"),
    Bad("delete copy", _sql("DELETE FROM copy_record"), "append-only"),
    Bad(
        "copy of another envelope's document",
        _insert(CopyRecord, _copy("cp_x", "org_a", "env_a", "doc_a2")),
        "not of its envelope",
    ),
    Bad("tile shrink", _sql("UPDATE log_tile SET hashes = :h WHERE org_id = 'org_a'", h=H1), "only grows"),
    Bad(
        "tile rewrite of a full prefix",
        _sql("UPDATE log_tile SET hashes = :h WHERE org_id = 'org_a'", h=H3 + H2 + H1),
        "only grows",
    ),
    Bad(
        "tile same length, other bytes",
        _sql("UPDATE log_tile SET hashes = :h WHERE org_id = 'org_b'", h=H2),
        "only grows",
    ),
    Bad("tile moved", _sql("UPDATE log_tile SET idx = 1 WHERE org_id = 'org_b'"), "only grows"),
    Bad("tile deleted", _sql("DELETE FROM log_tile"), "kept for good"),
    Bad(
        "tile of partial hashes",
        _insert(LogTile, {"org_id": "org_b", "level": 1, "idx": 0, "hashes": H1[:31]}),
        "ck_log_tile_hashes",
    ),
    Bad("log size decrease", _sql("UPDATE log_state SET size = 2 WHERE org_id = 'org_a'"), "a log only grows"),
    Bad("log deleted", _sql("DELETE FROM log_state"), "kept for good"),
]


@pytest.mark.parametrize("bad", BAD_WRITES, ids=[b.name for b in BAD_WRITES])
def test_database_refuses_invariant_breaking_write(db: Database, bad: Bad) -> None:
    with pytest.raises(IntegrityError) as caught, db.engine.begin() as conn:
        bad.write(conn)
    message = str(caught.value.orig).lower()
    sqlite_fk = db.engine.dialect.name == "sqlite" and bad.refused_by == FK
    assert ("foreign key constraint failed" if sqlite_fk else bad.refused_by.lower()) in message, message


def test_postgresql_refuses_truncating_the_ledger(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    for table in ("event", "checkpoint", "vault_record", "log_tile", "log_state"):
        with pytest.raises(IntegrityError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {table} CASCADE"))


def test_honest_writes_still_go_through(db: Database) -> None:
    """The controls for the cases above: the writes the application makes, with the right values."""
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE envelope SET vault_state = 'released', status = 'completed', revision = revision + 1"
                " WHERE id = 'env_a'"
            )
        )
        conn.execute(
            _table(VaultRecord)
            .update()
            .where(_table(VaultRecord).c.id == "ac_a")
            .values(released_at=NOW, released_by="key_a", release_reason="transfer", release_details={"to": "x"})
        )
        conn.execute(_table(VaultRecord).insert(), [_record("ac_a3", "env_a3", "org_a")])
        conn.execute(_table(VaultedDocument).insert(), [_document("doc_a3", "ac_a3", size=0)])
        conn.execute(_table(CopyRecord).insert(), [_copy("cp_a3", "org_a", "env_a3", "doc_a3")])
        # org_b's log continues env_a's chain, as after a hand-off of control.
        conn.execute(_table(Event).insert(), [_event("org_a", 3, "env_a3", 0), _event("org_b", 1, "env_a", 1)])
        conn.execute(text("UPDATE log_state SET size = 4 WHERE org_id = 'org_a'"))
        conn.execute(text("UPDATE log_state SET size = 1 WHERE org_id = 'org_b'"))  # unchanged is fine
        conn.execute(_table(Checkpoint).insert(), [_checkpoint("org_a", 4)])
    with db.session() as session:  # the tile upsert the log uses: grow, rewrite unchanged, add a new tile
        grown = H1 + H2 + H3
        SqlTileStore(session, "org_a").write_tiles({(0, 0): Tile(grown, interior_of(grown)), (1, 0): Tile(H1, b"")})
        SqlTileStore(session, "org_b").write_tiles({(0, 0): Tile(H1, b"")})
    with db.read_session() as session:
        tiles = {(t.org_id, t.level, t.idx): t.hashes for t in session.exec(select(LogTile))}
        record = session.get(VaultRecord, "ac_a")
    assert tiles == {("org_a", 0, 0): H1 + H2 + H3, ("org_a", 1, 0): H1, ("org_b", 0, 0): H1}
    assert record is not None and record.release_reason == "transfer"


def test_models_and_migrations_agree(db: Database) -> None:
    """``alembic check`` in a test: autogenerate finds nothing to do (column types, keys, unique constraints)."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert compare_metadata(context, SQLModel.metadata) == []
        narrowed = MetaData()
        for table in SQLModel.metadata.tables.values():
            table.to_metadata(narrowed)
        narrowed.tables["event"].c.leaf_index.type = Integer()
        assert "modify_type" in repr(compare_metadata(context, narrowed))  # the comparison does look at types


def _alembic(db: Database, action: Callable[..., None], revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config, revision)


def _counts(db: Database) -> dict[str, int]:
    tables = ["envelope", "vault_record", "vaulted_document", "copy_record", "event", "log_tile", "checkpoint"]
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def test_migration_keeps_existing_data_and_goes_both_ways(database_url: str) -> None:
    database = Database(database_url)
    try:
        _alembic(database, command.upgrade, "0001")
        with database.engine.begin() as conn:
            _seed(conn)
        before = _counts(database)
        database.migrate()
        assert _counts(database) == before
        with database.engine.connect() as conn:  # 0021 gave each tile stored before it the interior its row implies
            tiles = {bytes(h): bytes(i) for h, i in conn.execute(text("SELECT hashes, interior FROM log_tile"))}
        assert tiles == {H1 + H2: hashlib.sha256(b"\x01" + H1 + H2).digest(), H1: b""}
        with pytest.raises(IntegrityError), database.engine.begin() as conn:
            conn.execute(text("DELETE FROM event"))
        with pytest.raises(IntegrityError), database.engine.begin() as conn:  # foreign keys are on again
            conn.execute(_table(Event).insert(), [_event("org_a", 3, "env_nowhere", 0)])
        _alembic(database, command.downgrade, "0001")
        assert _counts(database) == before
        with database.engine.begin() as conn:  # the guards are gone with the revision
            conn.execute(text("UPDATE envelope SET revision = 0 WHERE id = 'env_a'"))
            conn.execute(text("UPDATE envelope SET revision = 1 WHERE id = 'env_a'"))
        database.migrate()
        assert _counts(database) == before
    finally:
        database.dispose()


def test_processes_starting_at_once_migrate_one_at_a_time(database_url: str) -> None:
    """Replicas started together (a first deployment, or a new version's pods) each migrate at start. Without the
    migration's turn, on PostgreSQL one's CREATE TABLE met another's and that replica failed (DuplicateTable)."""
    migrate = "import sys; from storage.db import Database; Database(sys.argv[1]).migrate()"
    starts = [
        subprocess.Popen([sys.executable, "-c", migrate, database_url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failures = [err for proc in starts for err in [proc.communicate(timeout=120)[1]] if proc.returncode != 0]
    assert failures == []
    database = Database(database_url)
    try:
        with database.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        database.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert version == ScriptDirectory.from_config(config).get_current_head()


def test_replicas_starting_together_on_an_empty_database_make_one_first_organisation(database_url: str) -> None:
    """Each replica's start bootstraps a first organisation and key if there is none; without a turn for it,
    replicas started together on PostgreSQL each saw none and each made one."""
    databases = [Database(database_url) for _ in range(3)]
    databases[0].migrate()

    def start(database: Database) -> bool:
        with database.session() as session:
            return bootstrap(session) is not None

    try:
        made = together(*(lambda d=d: start(d) for d in databases))
        assert sorted(made) == [False, False, True]
        with databases[0].read_session() as session:
            assert len(session.exec(select(Organisation)).all()) == 1
            assert len(session.exec(select(ApiKey)).all()) == 1
    finally:
        for database in databases:
            database.dispose()


def _busy_envelope(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    response = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert response.status_code == 200, response.text
    return envelope_id


@pytest.mark.s3
def test_attacker_who_drops_the_triggers_is_still_caught_by_the_worm_audit(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    org_id, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code in (200, 201)
    assert audit_log(runtime.sources(), org_id) == []
    with pytest.raises(IntegrityError, match="append-only"), runtime.db.session() as session:
        session.execute(text("UPDATE event SET entry = :e WHERE envelope_id = :id"), {"e": b"{}", "id": envelope_id})
    with runtime.db.session() as session:
        disarm_triggers(session, "event")
        target = session.exec(select(Event).where(Event.envelope_id == envelope_id, Event.chain_seq == 1)).one()
        target.entry = target.entry.replace(b'"upload"', b'"signed"')
        session.add(target)
    findings = audit_log(runtime.sources(), org_id)
    assert {"Log.EntryEdited", "Chain.Broken", "Log.RootMismatch"} <= {f.code for f in findings}
