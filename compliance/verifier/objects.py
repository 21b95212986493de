"""Authoritative objects: every recorded version re-read and re-hashed, its lock and its neighbours checked.

Per organisation: one bulk listing of every version and delete marker under ``authoritative/<org>/`` (not a
HEAD and a listing per object), merged in key order with the recorded documents. Each recorded version is then
read once: the GET's own headers carry the stored checksum, the lock mode and the retention date, so no HEAD
is needed (measured: SeaweedFS's version listing carries no lock fields). What a record says is also compared
with its ``vault.vaulted_in`` ledger entry (``Record.Edited``); the lock's date and the legal hold are compared
with what the log last said of them (``vault.retention_extended``, ``vault.legal_hold_set``/``_cleared``), and a
version the log says was disposed of (``vault.disposed``) is expected to be gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from compliance import strict_json
from compliance.ledger.event_catalogue import (
    DISPOSED,
    ENVELOPE_IMPORTED,
    LEGAL_HOLD_CLEARED,
    LEGAL_HOLD_SET,
    RETENTION_EXTENDED,
    VAULTED_IN,
)
from compliance.verifier.claims import InFlight, in_flight
from compliance.verifier.context import Context
from compliance.verifier.findings import Finding
from compliance.verifier.merge import binary_order, merge_by_key
from compliance.verifier.pipeline import prefetch, run_ordered
from compliance.verifier.reads import by_key, read_version
from storage.ids import as_utc, iso
from storage.keys import AUTHORITATIVE_PREFIX, envelope_of_key
from storage.models import Event, VaultedDocument, VaultRecord
from storage.object_store import VersionEntry

Doc = tuple[VaultedDocument, VaultRecord]
SLACK = timedelta(seconds=1)  # stores keep retention dates in whole seconds


def _documents(ctx: Context, org_id: str, after: str | None) -> Iterator[Doc]:
    scope = ctx.scope
    with ctx.sources.db.read_session() as session:
        stmt = (
            select(VaultedDocument, VaultRecord)
            .join(VaultRecord, col(VaultRecord.id) == col(VaultedDocument.record_id))
            .where(VaultRecord.org_id == org_id)
        )
        if scope.started_at is not None:
            stmt = stmt.where(col(VaultRecord.vaulted_at) <= scope.started_at)
        if scope.envelopes:
            stmt = stmt.where(col(VaultRecord.envelope_id).in_(scope.envelopes))
        if scope.since is not None:
            stmt = stmt.where(
                (col(VaultRecord.vaulted_at) >= scope.since) | (col(VaultRecord.released_at) >= scope.since)
            )
        if after is not None:
            stmt = stmt.where(col(VaultedDocument.s3_key) > after)
        stmt = stmt.order_by(binary_order(session, col(VaultedDocument.s3_key)), col(VaultedDocument.id))
        yield from session.exec(stmt.execution_options(yield_per=500))


def _prefixes(ctx: Context, org_id: str) -> list[str]:
    if not ctx.scope.envelopes:
        return [f"{AUTHORITATIVE_PREFIX}{org_id}/"]
    return [f"{AUTHORITATIVE_PREFIX}{org_id}/{e}/" for e in sorted(ctx.scope.envelopes)]


def _listing(ctx: Context, org_id: str, after: str | None) -> Iterator[tuple[str, list[VersionEntry]]]:
    for prefix in _prefixes(ctx, org_id):
        for key, versions in by_key(ctx.sources.authoritative.list_entries(prefix)):
            if after is None or key > after:
                yield key, versions


@dataclass
class Logged:
    """What an envelope's log entries say of its authoritative objects."""

    documents: dict[str, dict[str, Any]]  # by document id, as vault.vaulted_in names them
    retain_until: str | None  # the vault-in's date, or the last vault.retention_extended one
    held: bool = False
    disposed: bool = False


Ledgered = dict[str, Logged]  # by envelope id
PAGE = 256  # keys whose ledger entries are loaded in one query
_OBJECT_EVENTS = (
    VAULTED_IN.name,
    ENVELOPE_IMPORTED.name,
    RETENTION_EXTENDED.name,
    LEGAL_HOLD_SET.name,
    LEGAL_HOLD_CLEARED.name,
    DISPOSED.name,
)


def _fold(found: Ledgered, envelope_id: str, event_type: str, data: dict[str, Any]) -> None:
    if event_type in (VAULTED_IN.name, ENVELOPE_IMPORTED.name):
        if envelope_id not in found:
            found[envelope_id] = Logged({d["id"]: d for d in data["documents"]}, data.get("retain_until"))
        return
    logged = found.get(envelope_id)
    if logged is None:
        return  # nothing before a vault-in: the log audit reports such a chain
    if event_type == RETENTION_EXTENDED.name:
        logged.retain_until = data["retain_until"]
    elif event_type in (LEGAL_HOLD_SET.name, LEGAL_HOLD_CLEARED.name):
        logged.held = event_type == LEGAL_HOLD_SET.name
    elif event_type == DISPOSED.name:
        logged.disposed = True


def _ledger_page(ctx: Context, envelope_ids: set[str]) -> Ledgered:
    """What the object events of these envelopes record, in one query (not one per object)."""
    found: Ledgered = {}
    if not envelope_ids:
        return found
    with ctx.sources.db.read_session() as session:
        rows = session.exec(
            select(Event.envelope_id, Event.event_type, Event.entry)
            .where(col(Event.envelope_id).in_(sorted(envelope_ids)), col(Event.event_type).in_(_OBJECT_EVENTS))
            .order_by(col(Event.leaf_index))
        )
        for envelope_id, event_type, entry in rows:
            if envelope_id is None:
                continue
            try:
                _fold(found, envelope_id, event_type, strict_json.loads(entry)["data"])
            except (ValueError, KeyError, TypeError):
                found.setdefault(envelope_id, Logged({}, None))  # the entry itself is reported by the log audit
    return found


def _ledgered_document(ledger: Ledgered, record: VaultRecord, doc: VaultedDocument) -> dict[str, Any]:
    """What the ``vault.vaulted_in`` entry says of this document; empty when it says nothing (reported above)."""
    logged = ledger.get(record.envelope_id)
    return (logged.documents.get(doc.id) if logged else None) or {}


def _record_findings(
    doc: VaultedDocument, record: VaultRecord, ledger: Ledgered, where: dict[str, Any]
) -> list[Finding]:
    ledgered = ledger.get(record.envelope_id)
    if ledgered is None:
        return [Finding("Record.Edited", "a vault record has no vault.vaulted_in ledger entry", where)]
    retain_until = ledgered.retain_until
    entry = ledgered.documents.get(doc.id)
    if entry is None:
        return [Finding("Record.Edited", "the ledger entry does not name this document", where)]
    row = {"sha256": doc.sha256, "key": doc.s3_key, "version_id": doc.s3_version_id, "bucket": doc.s3_bucket}
    changed = {k: {"record": v, "ledger": entry.get(k)} for k, v in row.items() if entry.get(k) != v}
    if retain_until is not None and retain_until != iso(record.retain_until):
        changed["retain_until"] = {"record": iso(record.retain_until), "ledger": retain_until}
    if changed:
        return [
            Finding(
                "Record.Edited",
                "the record differs from its vault.vaulted_in ledger entry",
                {**where, "changed": changed},
            )
        ]
    return []


def check_document(
    ctx: Context, doc: VaultedDocument, record: VaultRecord, versions: list[VersionEntry], ledger: Ledgered
) -> None:
    """Every check of one recorded version; each fault is reported and the others still run."""
    where = {
        "org_id": record.org_id,
        "envelope_id": record.envelope_id,
        "document_id": doc.id,
        "key": doc.s3_key,
        "version_id": doc.s3_version_id,
    }
    for finding in _record_findings(doc, record, ledger, where):
        ctx.report(finding)
    others = [v for v in versions if v.version_id != doc.s3_version_id]
    if others:
        ctx.report(
            Finding(
                "Object.ExtraVersion",
                "other versions or delete markers exist under the authoritative key",
                {
                    **where,
                    "versions": [v.version_id for v in others if not v.delete_marker],
                    "delete_markers": [v.version_id for v in others if v.delete_marker],
                },
            )
        )
    logged = ledger.get(record.envelope_id)
    if logged is not None and logged.disposed:
        return  # deleted after its retention; the vault.disposed entry keeps its hash
    result = read_version(ctx, ctx.sources.authoritative, doc.s3_key, doc.s3_version_id)
    if result.failure == "missing":
        ctx.report(Finding("Object.Missing", "the recorded version is not in storage", where))
        return
    if result.failure == "unreadable":
        ctx.report(
            Finding("Object.Unreadable", "the recorded version cannot be read", {**where, "error": result.error})
        )
        return
    info = result.info
    stored = info.sha256_hex if info is not None else None
    # The bytes are judged against the ledger, the truth; a row edited in SQL is Record.Edited (above), and
    # intact bytes are never reported as changed because the row names another hash.
    truth = _ledgered_document(ledger, record, doc)
    expected_sha256, expected_size = truth.get("sha256", doc.sha256), truth.get("size", doc.size)
    if result.failure == "checksum" or result.sha256 != expected_sha256 or stored not in (None, expected_sha256):
        ctx.report(
            Finding(
                "Object.BytesChanged",
                "stored bytes (or the checksum S3 stored) differ from the vaulted SHA-256",
                {
                    **where,
                    "read_sha256": result.sha256,
                    "stored_sha256": stored,
                    "logged_sha256": expected_sha256,
                    "error": result.error,
                },
            )
        )
    if info is None:
        return
    if result.size != expected_size and result.failure is None:
        ctx.report(
            Finding("Object.BytesChanged", "stored size differs from the record", {**where, "size_read": result.size})
        )
    if logged is not None and info.legal_hold != logged.held:
        ctx.report(
            Finding(
                "Object.HoldMismatch",
                "the version's legal hold differs from what the log last recorded",
                {**where, "held": info.legal_hold, "logged_held": logged.held},
            )
        )
    if info.lock_mode != "COMPLIANCE":
        ctx.report(
            Finding(
                "Object.LockRemoved", "the version is not under a COMPLIANCE lock", {**where, "mode": info.lock_mode}
            )
        )
    else:
        _check_retention(ctx, info.retain_until, record, logged, where)


def _check_retention(
    ctx: Context, until: datetime | None, record: VaultRecord, logged: Logged | None, where: dict[str, Any]
) -> None:
    """The lock must last at least as long as the log's last date for it (and the record's)."""
    recorded = as_utc(record.retain_until)
    if logged is not None and logged.retain_until is not None:
        try:
            recorded = max(recorded, as_utc(datetime.fromisoformat(logged.retain_until)))
        except ValueError:
            pass  # an unreadable date is the log audit's finding
    if until is None or as_utc(until) < recorded - SLACK:
        ctx.report(
            Finding(
                "Object.LockShortened",
                "retention ends before the recorded date",
                {**where, "until": str(until), "recorded": iso(recorded)},
            )
        )


def _recorded_versions(ctx: Context, key: str) -> set[str]:
    with ctx.sources.db.read_session() as session:
        return set(session.exec(select(VaultedDocument.s3_version_id).where(VaultedDocument.s3_key == key)))


def check_unrecorded(
    ctx: Context, org_id: str, key: str, versions: list[VersionEntry], recorded: set[str], claimed: InFlight
) -> None:
    """Versions on ``key`` that no record names (looked up in the database, whatever the run's filters), unless
    a claim in flight will record them."""
    if claimed.holds(key):
        return
    candidates = [
        v for v in versions if not v.delete_marker and v.version_id not in recorded and _in_window(ctx, v.last_modified)
    ]
    if candidates:  # named by a record outside this run's filters, or listed out of order?
        recorded = _recorded_versions(ctx, key)
    for version in candidates:
        if version.version_id in recorded:
            continue
        ctx.report(
            Finding(
                "Object.Unrecorded",
                "an object under the authoritative prefix is named by no record",
                {"org_id": org_id, "key": key, "version_id": version.version_id, "envelope_id": envelope_of_key(key)},
            )
        )


def _in_window(ctx: Context, when: datetime | None) -> bool:
    """Written before the run started (later ones are the next run's), and since ``--since`` if given."""
    if when is None:
        return True
    when = as_utc(when)
    started, since = ctx.scope.started_at, ctx.scope.since
    return (started is None or when <= started) and (since is None or when >= since)


def _pages(
    ctx: Context, org_id: str, after: str | None
) -> Iterator[tuple[str, list[Doc], list[VersionEntry], Ledgered]]:
    """The merged keys in shard, a page at a time with the ledger entries of the page's envelopes."""
    merged = merge_by_key(_documents(ctx, org_id, after), lambda d: d[0].s3_key, prefetch(_listing(ctx, org_id, after)))
    page: list[tuple[str, list[Doc], list[VersionEntry]]] = []
    for item in merged:
        if ctx.scope.key_in_shard(item[0]):
            page.append(item)
        if len(page) >= PAGE:
            ledger = _ledger_page(ctx, {record.envelope_id for _, docs, _ in page for _, record in docs})
            yield from ((key, docs, versions, ledger) for key, docs, versions in page)
            page = []
    ledger = _ledger_page(ctx, {record.envelope_id for _, docs, _ in page for _, record in docs})
    yield from ((key, docs, versions, ledger) for key, docs, versions in page)


def check_objects(ctx: Context, org_id: str) -> None:
    unit = f"objects:{org_id}"
    state = ctx.runs.unit_state(unit)
    if state.done:
        return
    claimed = in_flight(ctx, org_id)

    def jobs() -> Iterator[tuple[str, Any]]:
        for key, docs, versions, ledger in _pages(ctx, org_id, state.position):
            yield key, lambda k=key, d=docs, v=versions, led=ledger: _check_key(ctx, org_id, k, d, v, claimed, led)

    run_ordered(ctx, unit, jobs())


def _check_key(
    ctx: Context,
    org_id: str,
    key: str,
    docs: list[Doc],
    versions: list[VersionEntry],
    claimed: InFlight,
    ledger: Ledgered,
) -> None:
    if docs and not versions:  # not in the listing: ask for this key alone before calling it missing
        versions = [v for v in ctx.sources.authoritative.list_entries(key) if v.key == key]
    for doc, record in docs:
        check_document(ctx, doc, record, versions, ledger)
    check_unrecorded(ctx, org_id, key, versions, {d.s3_version_id for d, _ in docs}, claimed)
    ctx.count("objects", len(docs) or 1)
