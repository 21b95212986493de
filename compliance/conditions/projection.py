"""The ledger is the truth, the tables are its projection: fold an envelope's chain into the state it implies,
and name every row that says something else.

A row the chain does not support (a release written only in SQL, an edited secured party, a copy row with no
``vault.copy_issued`` event) is a :class:`Mismatch` with a finding code from ``compliance/finding_codes.py``
and the envelope's id. The live conditions (condition 6) and the verifier's row pass both call :func:`compare`,
so an SQL edit fails the check, the certificate and ``evault verify`` alike. Key rows: ``key_projection``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from compliance.ledger.event_catalogue import (
    AMENDED,
    ASSIGNEE_CHANGED,
    COPY_ISSUED,
    ENVELOPE_COMPLETED,
    ENVELOPE_CREATED,
    ENVELOPE_EXPIRED,
    ENVELOPE_IMPORTED,
    ENVELOPE_SENT,
    ENVELOPE_VOIDED,
    LEGAL_HOLD_CLEARED,
    LEGAL_HOLD_SET,
    PAPER_IN_ATTESTED,
    RECIPIENT_DECLINED,
    RELEASED,
    RETENTION_EXTENDED,
    TRANSFER_ACCEPTED,
    TRANSFER_CANCELLED,
    TRANSFER_COMPLETED,
    TRANSFER_EXPIRED,
    TRANSFER_INITIATED,
    TRANSFER_REJECTED,
    VAULTED_IN,
)
from storage.ids import iso
from storage.models import CopyRecord, Envelope, VaultedDocument, VaultRecord

# transfer.* entry -> the state it leaves its transfer in
TRANSFER_STEPS = {
    TRANSFER_INITIATED.name: "pending",
    TRANSFER_ACCEPTED.name: "accepted",
    TRANSFER_COMPLETED.name: "completed",
    TRANSFER_REJECTED.name: "rejected",
    TRANSFER_CANCELLED.name: "cancelled",
    TRANSFER_EXPIRED.name: "expired",
}
# Statuses only an event reaches; an envelope without that event must not be in one.
TERMINAL_STATUS = {
    VAULTED_IN.name: "completed",
    ENVELOPE_IMPORTED.name: "completed",
    ENVELOPE_VOIDED.name: "voided",
    ENVELOPE_EXPIRED.name: "expired",
    ENVELOPE_SENT.name: "sent",
    ENVELOPE_COMPLETED.name: "completed",
    RECIPIENT_DECLINED.name: "declined",
}
ASSIGNEE_EVENTS = (ENVELOPE_CREATED.name, VAULTED_IN.name, ENVELOPE_IMPORTED.name, ASSIGNEE_CHANGED.name)
# An import opens its chain as a creation and a vault-in at once (its entry holds both parts' fields).
VAULT_IN_EVENTS = (VAULTED_IN.name, ENVELOPE_IMPORTED.name)
CREATED_FIELDS = ("kind", "title", "external_id", "parties")
RELEASE_DETAILS = ("transferee", "note")
# A document row's field -> its name in the vault.vaulted_in entry.
DOCUMENT_FIELDS = {
    "filename": "filename",
    "sha256": "sha256",
    "size": "size",
    "s3_bucket": "bucket",
    "s3_key": "key",
    "s3_version_id": "version_id",
    "signatures": "signatures",
}


@dataclass
class Projection:
    """What one envelope's chain says the rows must hold."""

    envelope_id: str
    created: dict[str, Any] | None = None  # envelope.created data
    secured_party: Any = None  # the assignee as the last event that sets it names it
    status: str | None = None  # a terminal status reached by an event
    vaulted: dict[str, Any] | None = None  # vault.vaulted_in entry (time, actor, data)
    released: dict[str, Any] | None = None  # vault.released entry
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)  # copy id -> vault.copy_issued entry
    retain_until: str | None = None  # the vault-in's date, or the last vault.retention_extended one
    legal_hold: dict[str, Any] | None = None  # the vault.legal_hold_set entry in force (cleared: None)
    amendments: list[dict[str, Any]] = field(default_factory=list)  # vault.amended entries, in order
    paper_in: list[dict[str, Any]] = field(default_factory=list)  # vault.paper_in_attested entries, in order
    controller: str | None = None  # as the last transfer.completed left it (None: none yet)
    custodian: str | None = None
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)  # transfer id -> what its entries say
    imported: dict[str, Any] | None = None  # envelope.imported entry (with its log): where the record came from

    def apply(self, value: dict[str, Any]) -> None:
        """Fold one parsed chain entry in."""
        kind, data = value.get("type"), value.get("data")
        data = data if isinstance(data, dict) else {}
        entry = {"time": value.get("time"), "key_id": (value.get("actor") or {}).get("key_id"), "data": data}
        if kind == ENVELOPE_CREATED.name:
            self.created = data
        elif kind == ENVELOPE_IMPORTED.name:
            self.created = {name: data.get(name) for name in CREATED_FIELDS}
            self.imported = entry | {"log": value.get("log")}  # the receiving organisation: its claim row's org_id
        if kind in ASSIGNEE_EVENTS:
            self.secured_party = data.get("secured_party")
        if isinstance(kind, str) and kind in TERMINAL_STATUS:
            self.status = TERMINAL_STATUS[kind]
        if kind in VAULT_IN_EVENTS:
            self.vaulted = entry
            self.retain_until = data.get("retain_until")
        elif kind == RETENTION_EXTENDED.name:
            self.retain_until = data.get("retain_until")
        elif kind == LEGAL_HOLD_SET.name:
            self.legal_hold = entry
        elif kind == LEGAL_HOLD_CLEARED.name:
            self.legal_hold = None
        elif kind == RELEASED.name:
            self.released = entry
        elif kind == COPY_ISSUED.name:
            self.copies[str(data.get("copy_id"))] = entry
        elif kind == AMENDED.name:
            self.amendments.append(entry)
        elif kind == PAPER_IN_ATTESTED.name:
            self.paper_in.append(entry)
        elif isinstance(kind, str) and kind in TRANSFER_STEPS:
            self._transfer(kind, value, data)

    def _transfer(self, kind: str, value: dict[str, Any], data: dict[str, Any]) -> None:
        """One step of a transfer: its state as the chain tells it, and control after a completion."""
        step, time = TRANSFER_STEPS[kind], value.get("time")
        transfer = self.transfers.setdefault(
            str(data.get("transfer_id")),
            {
                "id": data.get("transfer_id"),
                "type": data.get("type"),
                "from_org": data.get("from_org"),
                "to_org": data.get("to_org"),
                "confirm_required": data.get("confirm_required"),
                "initiated_at": time,
            },
        )
        transfer["status"] = step
        if step != "pending":
            transfer[{"accepted": "accepted_at", "completed": "completed_at"}.get(step, "closed_at")] = time
        if step == "completed":
            self.controller, self.custodian = data.get("controller"), data.get("custodian")

    @property
    def vault_state(self) -> str:
        return "released" if self.released else ("vaulted" if self.vaulted else "not_vaulted")


def release_claim(chain: Projection) -> dict[str, Any] | None:
    """The vault-out as its ``vault.released`` entry states it (what a certificate may claim)."""
    if chain.released is None:
        return None
    data = chain.released["data"]
    details = {k: data[k] for k in RELEASE_DETAILS if k in data}
    return {"at": chain.released["time"], "reason": data.get("reason"), "details": details}


def import_claim(chain: Projection) -> dict[str, Any] | None:
    """Where an imported record came from, as its ``envelope.imported`` entry states it: the origin vault's key,
    log, envelope, release receipt and checkpoint (what a certificate may claim of its provenance)."""
    if chain.imported is None:
        return None
    return {"imported_at": chain.imported["time"], **dict(chain.imported["data"].get("origin") or {})}


def control_claim(chain: Projection, home_org: str) -> dict[str, Any]:
    """Who controls and who keeps the record, by organisation id, as the completed transfers leave it."""
    return {
        "organisation": home_org,
        "controller": chain.controller or home_org,
        "custodian": chain.custodian or home_org,
    }


def transfers_claim(chain: Projection) -> list[dict[str, Any]]:
    """Every transfer with its parties, type, state and times, as its entries state them, in order."""
    return [dict(t) for t in chain.transfers.values()]


def hold_claim(chain: Projection) -> dict[str, Any] | None:
    """The legal hold in force as its ``vault.legal_hold_set`` entry states it (what a certificate may claim)."""
    if chain.legal_hold is None:
        return None
    return {"reason": chain.legal_hold["data"].get("reason"), "since": chain.legal_hold["time"]}


AMENDMENT_DOCUMENT = ("id", "filename", "sha256", "size", "bucket", "key", "version_id")


def amendment_claims(chain: Projection) -> list[dict[str, Any]]:
    """The amendments as their ``vault.amended`` entries state them (what a certificate may claim)."""
    claims = []
    for entry in chain.amendments:
        data = entry["data"]
        documents = data.get("documents") if isinstance(data.get("documents"), list) else []
        claims.append(
            {
                "id": data.get("amendment_id"),
                "type": data.get("type"),
                "recorded_at": entry["time"],
                "data": data.get("data"),
                "documents": [{k: d.get(k) for k in AMENDMENT_DOCUMENT} for d in documents if isinstance(d, dict)],
            }
        )
    return claims


def paper_in_claims(chain: Projection) -> list[dict[str, Any]]:
    """The paper-in attestations as their entries state them: who attested only as the log's commitment."""
    return [
        {
            "id": entry["data"].get("attestation_id"),
            "original": entry["data"].get("original"),
            "at": entry["data"].get("at"),
            "location": entry["data"].get("location"),
            "attested_by": entry["data"].get("attested_by"),
            "recorded_at": entry["time"],
        }
        for entry in chain.paper_in
    ]


def fold(envelope_id: str, values: Iterable[dict[str, Any]]) -> Projection:
    projection = Projection(envelope_id)
    for value in values:
        projection.apply(value)
    return projection


@dataclass(frozen=True)
class Rows:
    """The rows of one envelope that the ledger also records."""

    envelope: Envelope
    record: VaultRecord | None
    documents: Sequence[VaultedDocument]
    copies: Sequence[CopyRecord]


@dataclass(frozen=True)
class Mismatch:
    """A row the chain does not support: a finding code, what differs, and the envelope (and row) it names."""

    code: str
    message: str
    details: dict[str, Any]

    def reason(self) -> str:
        return f"{self.code}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def changed_pairs(pairs: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Of ``name -> (row value, ledger value)``, the ones that differ, as the finding's ``changed`` detail."""
    return {name: {"row": row, "ledger": ledger} for name, (row, ledger) in pairs.items() if row != ledger}


def _envelope(chain: Projection, env: Envelope, where: dict[str, Any]) -> list[Mismatch]:
    if chain.created is None:
        return [Mismatch("Envelope.Edited", "an envelope row whose chain has no envelope.created entry", where)]
    pairs = {name: (getattr(env, name), chain.created.get(name)) for name in CREATED_FIELDS}
    pairs["secured_party"] = (env.secured_party, chain.secured_party)
    pairs["vault_state"] = (env.vault_state, chain.vault_state)
    if chain.status is not None or env.status in TERMINAL_STATUS.values():
        pairs["status"] = (env.status, chain.status)
    changed = changed_pairs(pairs)
    if not changed:
        return []
    return [
        Mismatch(
            "Envelope.Edited",
            f"the envelope row differs from its chain in {sorted(changed)}",
            where | {"changed": changed},
        )
    ]


def _record(chain: Projection, rows: Rows, where: dict[str, Any]) -> list[Mismatch]:
    record, vaulted = rows.record, chain.vaulted
    if record is None:
        if vaulted is None:
            return []
        return [Mismatch("Record.Deleted", "the chain records a vault-in but no vault record exists", where)]
    where = where | {"authoritative_copy_id": record.id}
    if vaulted is None:
        return [Mismatch("Record.Unlogged", "a vault record exists but the chain records no vault-in", where)]
    data = vaulted["data"]
    pairs = {
        "id": (record.id, data.get("authoritative_copy_id")),
        "source": (record.source, data.get("source")),
        "retain_until": (iso(record.retain_until), chain.retain_until),
        "legal_hold": (
            None
            if record.legal_hold_reason is None or record.legal_hold_since is None
            else {"reason": record.legal_hold_reason, "since": iso(record.legal_hold_since)},
            hold_claim(chain),
        ),
        "vaulted_at": (iso(record.vaulted_at), vaulted["time"]),
        "vaulted_by": (record.vaulted_by, vaulted["key_id"] or ""),
    }
    found = _release(chain, record, where, pairs)
    # One finding per record (a finding's identity is its code and subject): the vault-in's and the release's
    # differences together.
    changed = changed_pairs(pairs)
    if changed:
        message = "the vault record differs from its vault-in, release, retention or legal-hold entries"
        found.append(Mismatch("Record.Edited", message, where | {"changed": changed}))
    return found + _documents(data, rows.documents, where)


def _release(
    chain: Projection, record: VaultRecord, where: dict[str, Any], pairs: dict[str, tuple[Any, Any]]
) -> list[Mismatch]:
    """A release missing on either side; otherwise add its fields to the record's ``pairs``."""
    released = chain.released
    if released is None:
        if record.released_at is None and record.release_reason is None and not record.release_details:
            return []
        return [Mismatch("Record.Unlogged", "the record says released but the chain records no vault-out", where)]
    if record.released_at is None:
        return [Mismatch("Record.Deleted", "the chain records a vault-out the record does not show", where)]
    data = released["data"]
    details = {k: data[k] for k in RELEASE_DETAILS if k in data}
    pairs.update(
        {
            "released_at": (iso(record.released_at), released["time"]),
            "released_by": (record.released_by, released["key_id"]),
            "release_reason": (record.release_reason, data.get("reason")),
            "release_details": (record.release_details or {}, details),
            "released_copy_id": (record.id, data.get("authoritative_copy_id")),
        }
    )
    return []


def _documents(data: dict[str, Any], documents: Sequence[VaultedDocument], where: dict[str, Any]) -> list[Mismatch]:
    listed = data.get("documents")
    ledger = {d.get("id"): d for d in listed if isinstance(d, dict)} if isinstance(listed, list) else {}
    found = []
    for doc in documents:
        # Named like the object pass's Record.Edited (same subject), so one edit is one finding.
        at = where | {"document_id": doc.id, "key": doc.s3_key, "version_id": doc.s3_version_id}
        entry = ledger.pop(doc.id, None)
        if entry is None:
            found.append(Mismatch("Record.Unlogged", "a document row the vault-in entry does not name", at))
            continue
        changed = changed_pairs({name: (getattr(doc, name), entry.get(key)) for name, key in DOCUMENT_FIELDS.items()})
        if changed:
            found.append(
                Mismatch(
                    "Record.Edited",
                    "the record differs from its vault.vaulted_in ledger entry",
                    at | {"changed": changed},
                )
            )
    found += [
        Mismatch("Record.Deleted", "the vault-in entry names a document with no row", where | {"document_id": doc_id})
        for doc_id in sorted(map(str, ledger))
    ]
    return found


def _copies(chain: Projection, copies: Sequence[CopyRecord], where: dict[str, Any]) -> list[Mismatch]:
    logged, found = dict(chain.copies), []
    for copy in copies:
        at = where | {"copy_id": copy.id}
        entry = logged.pop(copy.id, None)
        if entry is None:
            found.append(Mismatch("Copy.Unlogged", "a copy row the chain records no vault.copy_issued for", at))
            continue
        data = entry["data"]
        changed = changed_pairs(
            {
                "document_id": (copy.document_id, data.get("document_id")),
                "sha256": (copy.sha256, data.get("sha256")),
                "source_sha256": (copy.source_sha256, data.get("source_sha256")),
                "issued_at": (iso(copy.issued_at), entry["time"]),
                "issued_by": (copy.issued_by, entry["key_id"] or ""),
            }
        )
        if changed:
            found.append(
                Mismatch(
                    "Copy.Unlogged", "the copy row differs from its vault.copy_issued entry", at | {"changed": changed}
                )
            )
    found += [
        Mismatch("Copy.Deleted", "the chain records a copy with no register row", where | {"copy_id": copy_id})
        for copy_id in sorted(logged)
    ]
    return found


def _control(chain: Projection, env: Envelope, where: dict[str, Any]) -> list[Mismatch]:
    """The controller and custodian the row names must be the ones the chain's completed transfers left."""
    claim = control_claim(chain, env.org_id)
    changed = changed_pairs(
        {"controller": (env.controller, claim["controller"]), "custodian": (env.custodian, claim["custodian"])}
    )
    if not changed:
        return []
    message = f"the envelope row names a {' and '.join(sorted(changed))} its chain's transfers do not support"
    return [Mismatch("Control.Unsupported", message, where | {"changed": changed})]


def compare(chain: Projection, rows: Rows) -> list[Mismatch]:
    """Every way the rows differ from what the chain implies; empty when the chain supports them all."""
    where = {"org_id": rows.envelope.org_id, "envelope_id": rows.envelope.id}
    return (
        _envelope(chain, rows.envelope, where)
        + _control(chain, rows.envelope, where)
        + _record(chain, rows, where)
        + _copies(chain, rows.copies, where)
    )


def snapshot(session: Session) -> None:
    """Make the session's reads one snapshot (PostgreSQL), so rows and the events committed with them agree.

    SQLite's deferred read transaction is a snapshot already (WAL). Call before the session's first read.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
