"""``evault backup`` and ``evault restore``: what the bucket cannot give back, kept beside it and laid over a rebuild.

A backup is a directory: ``database.json`` (every table's rows, read in one snapshot; bytes in base64, times in
RFC 3339) and ``manifest.json`` (every object version in the authoritative and copies buckets when it was taken).
A restore never trusts the backup for what the log records. It rebuilds from the WORM bucket
(``vault/rebuild/service.py``), adding the backup's entries logged after the bucket's latest checkpoint (which
must continue the signed log exactly), and then lays over the rebuilt rows only what the log does not hold: API
key hashes, envelope metadata, webhook configuration, signing-key generations, and each data subject's key and
values, unless the log erased that subject (an erasure logged after the backup is applied again), what a
ceremony's rows keep off the log (link nonces, adopted signatures, decline reasons), of the import claims
when each was claimed and those claimed but not recorded (so that importing such a package again takes its
claim over), and the vault-in and copy claims of requests in flight (so that the reconciler finishes them).
So an older backup loses nothing the bucket holds, and a newer bucket always wins.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlmodel import Session, SQLModel
from sqlmodel import select as sqlmodel_select

from compliance.conditions.projection import snapshot
from compliance.ledger.event_catalogue import SUBJECT_ERASED
from compliance.ledger.note import NoteVerifier
from storage.db import Database
from storage.ids import iso, utcnow
from storage.models import (
    ApiKey,
    Ceremony,
    CopyClaim,
    CopyRecord,
    DataSubject,
    Envelope,
    EnvelopeImport,
    Event,
    Organisation,
    Recipient,
    SigningKey,
    VaultClaim,
    WebhookConfig,
)
from storage.object_store import ObjectStore
from vault.rebuild.bucket_log import RebuildRefused
from vault.rebuild.service import Rebuilt, rebuild

DATABASE_FILE = "database.json"
MANIFEST_FILE = "manifest.json"
FORMAT = "evault-backup/v1"


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"$time": iso(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and value.keys() == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    if isinstance(value, dict) and value.keys() == {"$time"}:
        return datetime.fromisoformat(value["$time"].replace("Z", "+00:00"))
    return value


def write_backup(db: Database, worm: ObjectStore, copies: ObjectStore, directory: Path) -> dict[str, int]:
    """Every table's rows from one snapshot, and the buckets' object versions; returns rows per table."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tables: dict[str, list[dict[str, Any]]] = {}
    with db.read_session() as session:
        snapshot(session)
        for table in SQLModel.metadata.sorted_tables:
            rows = session.connection().execute(select(table)).mappings()
            tables[table.name] = [{k: _encode(v) for k, v in row.items()} for row in rows]
    taken = iso(utcnow())
    _write_private(directory / DATABASE_FILE, json.dumps({"format": FORMAT, "taken_at": taken, "tables": tables}))
    manifest = {
        "format": FORMAT,
        "taken_at": taken,
        "buckets": {
            store.bucket: [{"key": key, "version_id": version} for key, version in store.list_all_versions("")]
            for store in (worm, copies)
        },
    }
    _write_private(directory / MANIFEST_FILE, json.dumps(manifest, indent=1))
    return {name: len(rows) for name, rows in tables.items()}


def _write_private(path: Path, text: str) -> None:
    """Owner-only from the first byte: the rows hold personal data, subject keys and webhook secrets."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)


def read_backup(directory: Path) -> dict[str, list[dict[str, Any]]]:
    data = json.loads((directory / DATABASE_FILE).read_text())
    if data.get("format") != FORMAT:
        raise RebuildRefused("Restore.NotABackup", f"{directory / DATABASE_FILE} is not an {FORMAT} backup")
    return {name: [{k: _decode(v) for k, v in row.items()} for row in rows] for name, rows in data["tables"].items()}


def _name(model: type[SQLModel]) -> str:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table.name


def restore(
    db: Database,
    worm: ObjectStore,
    copies: ObjectStore,
    verifiers: Sequence[NoteVerifier],
    origin_prefix: str,
    directory: Path,
    *,
    staging: ObjectStore | None = None,
) -> list[Rebuilt]:
    """Rebuild the empty ``db`` from the bucket plus the backup's later entries, then lay the backup's
    off-log rows over it."""
    tables = read_backup(directory)
    known = {v.vkey for v in verifiers}
    generations = tables.get(_name(SigningKey), [])
    more = [NoteVerifier.from_vkey(row["vkey"]) for row in generations if row["vkey"] not in known]
    tail: dict[str, list[tuple[int, bytes]]] = {}
    for row in tables.get("event", []):
        tail.setdefault(row["org_id"], []).append((row["leaf_index"], row["entry"]))
    done = rebuild(db, worm, copies, [*verifiers, *more], origin_prefix, backup_entries=tail, staging=staging)
    with db.session() as session:
        for row in generations:
            if session.get(SigningKey, row["generation"]) is None:
                session.add(SigningKey(**row))
        for row in tables.get(_name(ApiKey), []):
            key = session.get(ApiKey, row["id"])
            if key is not None:
                key.key_hash = row["key_hash"]
                session.add(key)
        for row in tables.get(_name(Envelope), []):
            envelope = session.get(Envelope, row["id"])
            if envelope is not None:
                envelope.meta = row["meta"]
                session.add(envelope)
        for row in tables.get(_name(WebhookConfig), []):
            if session.get(WebhookConfig, row["org_id"]) is not None or not _has_org(session, row["org_id"]):
                continue
            session.add(WebhookConfig(**row))
        _ceremonies(session, tables.get(_name(Ceremony), []), tables.get(_name(Recipient), []))
        _subjects(session, tables.get(_name(DataSubject), []))
        _import_claims(session, tables.get(_name(EnvelopeImport), []))
        _claims_in_flight(session, tables.get(_name(VaultClaim), []), tables.get(_name(CopyClaim), []))
    return done


def _ceremonies(session: Session, ceremonies: list[dict[str, Any]], recipients: list[dict[str, Any]]) -> None:
    """What the log does not hold of a ceremony: for an entry logged before they were, the document's size and
    page sizes; each recipient's link nonce, place and fields; and their adopted signature and decline reason
    only where the backup saw the step the log records (a signature logged after the backup stays
    ``restore_pending``). Object versions are not taken: the rebuild looked in the staging bucket itself, and
    what it did not find there is gone."""
    for row in ceremonies:
        ceremony = session.get(Ceremony, row["envelope_id"])
        if ceremony is None:
            continue
        ceremony.size = ceremony.size if ceremony.size is not None else row["size"]
        ceremony.pages = ceremony.pages if ceremony.pages is not None else row["pages"]
        session.add(ceremony)
    for row in recipients:
        recipient = session.get(Recipient, row["id"])
        if recipient is None or not recipient.restore_pending:
            continue
        recipient.link_nonce, recipient.position = row["link_nonce"], row["position"]
        recipient.fields = recipient.fields or row["fields"]
        if row["status"] == recipient.status:
            recipient.signature, recipient.decline_reason = row["signature"], row["decline_reason"]
            recipient.restore_pending = False
        session.add(recipient)


def _claims_in_flight(session: Session, vault_claims: list[dict[str, Any]], copy_claims: list[dict[str, Any]]) -> None:
    """The claims of requests in flight when the backup was taken, which the log does not hold: a vault-in whose
    envelope the rebuilt log has not vaulted, and a copy the rebuilt register does not name. Laid back, the
    reconciler finishes or releases the vault-in from its plan (its objects recorded, or named by a release event)
    and removes the copy's object, as it would have on the live vault. Without them such objects were named by
    nothing after a restore (``Object.Unrecorded``, ``Copy.Unregistered``), for good."""
    for row in vault_claims:
        envelope = session.get(Envelope, row["envelope_id"])
        if (
            envelope is not None
            and envelope.vault_state == "not_vaulted"
            and session.get(VaultClaim, envelope.id) is None
        ):
            session.add(VaultClaim(**row))
    for row in copy_claims:
        known = session.get(CopyRecord, row["copy_id"]) or session.get(CopyClaim, row["copy_id"])
        if known is None and _has_org(session, row["org_id"]):
            session.add(CopyClaim(**row))


def _import_claims(session: Session, rows: list[dict[str, Any]]) -> None:
    """What the log does not hold of an import claim: when it was claimed (the rebuild puts the time it was
    recorded), and a claim not recorded at all, an import in flight or one that died after writing its objects.
    Laid back, the next ``evault import`` of that package takes the claim over under the same envelope id, so the
    objects it wrote are recorded rather than left behind named by no record (``Object.Unrecorded``). A claim
    whose release the rebuilt log already imported (the import finished after the backup) is not laid back."""
    for row in rows:
        claim = session.get(EnvelopeImport, row["envelope_id"])
        if claim is not None:
            claim.claimed_at = row["claimed_at"]
            session.add(claim)
            continue
        release = session.exec(
            sqlmodel_select(EnvelopeImport).where(
                EnvelopeImport.origin_log == row["origin_log"],
                EnvelopeImport.release_leaf_index == row["release_leaf_index"],
            )
        ).first()
        if row["recorded_at"] is None and release is None and _has_org(session, row["org_id"]):
            session.add(EnvelopeImport(**row))


def _has_org(session: Session, org_id: str) -> bool:
    return session.get(Organisation, org_id) is not None


def _subjects(session: Session, rows: list[dict[str, Any]]) -> None:
    """Each subject's key and values from the backup, unless the log (or the backup) says it was erased."""
    erased = {
        json.loads(bytes(entry))["data"]["subject"]
        for entry in session.exec(sqlmodel_select(Event.entry).where(Event.event_type == SUBJECT_ERASED.name))
    }
    for row in rows:
        subject = session.get(DataSubject, row["id"])
        if subject is None or row["id"] in erased or row["key"] is None:
            continue
        subject.key, subject.clear, subject.erased_at = row["key"], row["clear"], None
        session.add(subject)
