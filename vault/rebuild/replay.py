"""Replaying a log's entries into the rows they imply: one small step per declared event type.

``STEPS`` maps each catalogue declaration to the function that folds one of its entries into :class:`Rows`;
a new event type adds one line here. An entry whose type has no step stops the rebuild with
``Rebuild.UnknownEvent`` naming it: skipping it would rebuild a vault that silently forgot what it records.
The rows carry only what the log carries: personal data is a commitment (its subject's key and values are
restored from a backup, or stay erased), an API key's hash is not logged (its row gets an unusable random one),
an envelope's caller metadata is not logged (``meta`` is empty).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from compliance.conditions.projection import RELEASE_DETAILS
from compliance.ledger.event_catalogue import (
    AMENDED,
    ASSIGNEE_CHANGED,
    CATALOGUE,
    CHECK_FAILED,
    CLAIM_RELEASED,
    COPY_ISSUED,
    DISPOSED,
    DOCUMENT_STAGED,
    ENVELOPE_COMPLETED,
    ENVELOPE_CREATED,
    ENVELOPE_EXPIRED,
    ENVELOPE_IMPORTED,
    ENVELOPE_REMINDED,
    ENVELOPE_SENT,
    ENVELOPE_VOIDED,
    INTEGRITY_FAILED,
    KEY_CREATED,
    KEY_REVOKED,
    KEY_ROTATED,
    LEGAL_HOLD_CLEARED,
    LEGAL_HOLD_SET,
    MAP_ROOT,
    ORG_CREATED,
    ORG_MERS_ORG_ID_SET,
    ORG_RETENTION_DEFAULT_SET,
    ORG_SIGNING_KEY_ADDED,
    PAPER_IN_ATTESTED,
    RECIPIENT_CONSENTED,
    RECIPIENT_DECLINED,
    RECIPIENT_SIGNED,
    RECIPIENT_VIEWED,
    RELEASED,
    RETENTION_EXTENDED,
    RETRIEVAL_ISSUED,
    SIGNING_KEY_REVOKED,
    SIGNING_KEY_ROTATED,
    SUBJECT_ERASED,
    TRANSFER_ACCEPTED,
    TRANSFER_ARRIVED,
    TRANSFER_CANCELLED,
    TRANSFER_COMPLETED,
    TRANSFER_COUNTERSIGNED,
    TRANSFER_EXPIRED,
    TRANSFER_INITIATED,
    TRANSFER_RECORDED,
    TRANSFER_REJECTED,
    VAULTED_IN,
    EventType,
)
from storage.models import (
    Amendment,
    ApiKey,
    CopyRecord,
    Envelope,
    EnvelopeImport,
    MersMin,
    Organisation,
    OrgSigningKey,
    PaperInAttestation,
    ReceiptCountersignature,
    Transfer,
    VaultedDocument,
    VaultRecord,
)
from vault.lifecycle import initial_status
from vault.rebuild import ceremony_replay
from vault.rebuild.bucket_log import RebuildRefused
from vault.rebuild.rows import Entry, Rows, envelope_of, parse_time, refuse, subject


def _record(rows: Rows, entry: Entry) -> VaultRecord:
    record = rows.records.get(entry.envelope_id or "")
    if record is None or record.id != entry.data.get("authoritative_copy_id", record.id):
        raise refuse(entry, "names an authoritative copy the log never vaulted")
    return record


def _org_created(rows: Rows, entry: Entry) -> None:
    rows.organisations[entry.org_id] = Organisation(id=entry.org_id, name=entry.data["name"], created_at=entry.time)


def _key(rows: Rows, entry: Entry) -> None:
    data = entry.data
    rotated = data.get("rotated_from")
    if isinstance(rotated, dict) and rotated.get("key_id") in rows.keys:
        old = rows.keys[rotated["key_id"]]
        old.expires_at = parse_time(rotated["expires_at"]) if rotated.get("expires_at") else None
    rows.keys[data["key_id"]] = ApiKey(
        id=data["key_id"],
        org_id=entry.org_id,
        prefix=data["prefix"],
        # The log keeps no key hash: a random one no key hashes to, until the key is restored or re-issued.
        key_hash=secrets.token_hex(32),
        name=data["name"],
        scopes=sorted(data["scopes"]),
        created_at=entry.time,
        expires_at=parse_time(data["expires_at"]) if data.get("expires_at") else None,
        rotated_from=rotated.get("key_id") if isinstance(rotated, dict) else None,
    )


def _key_revoked(rows: Rows, entry: Entry) -> None:
    key = rows.keys.get(entry.data["key_id"])
    if key is None:
        raise refuse(entry, "revokes a key the log never issued")
    key.revoked_at = entry.time


def _envelope_created(rows: Rows, entry: Entry) -> None:
    data, envelope_id = entry.data, entry.envelope_id or ""
    rows.envelopes[envelope_id] = Envelope(
        id=envelope_id,
        org_id=entry.org_id,
        kind=data["kind"],
        status=initial_status(data["kind"]),
        vault_state="not_vaulted",
        title=data["title"],
        external_id=data["external_id"],
        parties=data["parties"],
        secured_party=data["secured_party"],
        meta={},  # the caller's metadata is not logged
        created_at=entry.time,
        updated_at=entry.time,
        expires_at=parse_time(data["expires_at"]) if data.get("expires_at") else None,
    )
    if data.get("min"):
        rows.mins[data["min"]] = MersMin(
            min=data["min"], org_id=entry.org_id, envelope_id=envelope_id, registered_at=entry.time
        )
    for party in data["parties"]:
        subject(rows, entry, party["subject"])


def _status(status: str) -> Callable[[Rows, Entry], None]:
    def step(rows: Rows, entry: Entry) -> None:
        envelope_of(rows, entry).status = status

    return step


def _envelope_imported(rows: Rows, entry: Entry) -> None:
    """An import opens its chain: the envelope and its vault-in at once, and the claim on the origin's release."""
    _envelope_created(rows, entry)
    _vaulted_in(rows, entry)
    origin = entry.data["origin"]
    rows.imports.append(
        EnvelopeImport(
            envelope_id=entry.envelope_id or "",
            org_id=entry.org_id,
            origin_log=origin["log_origin"],
            origin_envelope_id=origin["envelope_id"],
            release_leaf_index=origin["release"]["leaf_index"],
            origin_key_id=origin["key_id"],
            release_receipt_sha256=origin["release_receipt_sha256"],
            claimed_at=entry.time,
            retain_until=parse_time(entry.data["retain_until"]),
            recorded_at=entry.time,
        )
    )


def _signing_key_added(rows: Rows, entry: Entry) -> None:
    data = entry.data
    rows.signing_keys.append(
        OrgSigningKey(key_id=data["key_id"], org_id=entry.org_id, public_pem=data["public_key"], created_at=entry.time)
    )


def _countersigned(rows: Rows, entry: Entry) -> None:
    data = entry.data
    rows.countersignatures.append(
        ReceiptCountersignature(
            transfer_id=data["transfer_id"],
            org_id=entry.org_id,
            key_id=data["key_id"],
            value=data["signature"],
            created_at=entry.time,
        )
    )


def _vaulted_in(rows: Rows, entry: Entry) -> None:
    data = entry.data
    envelope = envelope_of(rows, entry)
    envelope.status, envelope.vault_state = "completed", "vaulted"
    envelope.secured_party = data["secured_party"]
    record = VaultRecord(
        id=data["authoritative_copy_id"],
        envelope_id=envelope.id,
        org_id=entry.org_id,
        source=data["source"],
        retain_until=parse_time(data["retain_until"]),
        vaulted_at=entry.time,
        vaulted_by=entry.key_id or "",
    )
    rows.records[envelope.id] = record
    for doc in data["documents"]:
        rows.documents[doc["id"]] = VaultedDocument(
            id=doc["id"],
            record_id=record.id,
            position=int(doc["key"].rsplit("/", 1)[-1].split("-", 1)[0]),  # the key names it: NNN-<sha256>.pdf
            filename=doc["filename"],
            sha256=doc["sha256"],
            size=doc["size"],
            page_count=0,  # counted from the locked object after the replay
            s3_bucket=doc["bucket"],
            s3_key=doc["key"],
            s3_version_id=doc["version_id"],
            signatures=doc["signatures"],
        )


def _copy_issued(rows: Rows, entry: Entry) -> None:
    data = entry.data
    envelope_of(rows, entry)
    document = rows.documents.get(data["document_id"])
    if document is None:
        raise refuse(entry, "copies a document the log never vaulted")
    rows.copies[data["copy_id"]] = CopyRecord(
        id=data["copy_id"],
        org_id=entry.org_id,
        envelope_id=entry.envelope_id or "",
        document_id=data["document_id"],
        source_sha256=data["source_sha256"],
        sha256=data["sha256"],
        size=0,  # from the copies bucket
        s3_bucket="",
        s3_key="",
        s3_version_id="",
        issued_at=entry.time,
        issued_by=entry.key_id or "",
        mark_verified_at=parse_time(data["mark_verified_at"]) if data.get("mark_verified_at") else None,
    )
    rows.unresolved_copies.append(data["copy_id"])


def _released(rows: Rows, entry: Entry) -> None:
    envelope = envelope_of(rows, entry)
    record = _record(rows, entry)
    envelope.vault_state = "released"
    record.released_at = entry.time
    record.released_by = entry.key_id
    record.release_reason = entry.data["reason"]
    record.release_details = {k: entry.data[k] for k in RELEASE_DETAILS if k in entry.data}


def _assignee_changed(rows: Rows, entry: Entry) -> None:
    envelope_of(rows, entry).secured_party = entry.data["secured_party"]


def _subject_erased(rows: Rows, entry: Entry) -> None:
    """A subject the log has not named yet is a draft's recipient (named at send): it comes back erased now."""
    if entry.data["subject"] not in rows.subjects and entry.envelope_id in rows.envelopes:
        subject(rows, entry, entry.data["subject"])
    found = rows.subjects.get(entry.data["subject"])
    if found is None:
        raise refuse(entry, "erases a subject the log never named")
    found.erased_at = entry.time


def _retention_extended(rows: Rows, entry: Entry) -> None:
    _record(rows, entry).retain_until = parse_time(entry.data["retain_until"])
    envelope_of(rows, entry)


def _legal_hold_set(rows: Rows, entry: Entry) -> None:
    record = _record(rows, entry)
    record.legal_hold_reason, record.legal_hold_since = entry.data["reason"], entry.time
    envelope_of(rows, entry)


def _legal_hold_cleared(rows: Rows, entry: Entry) -> None:
    record = _record(rows, entry)
    record.legal_hold_reason, record.legal_hold_since = None, None
    envelope_of(rows, entry)


def _disposed(rows: Rows, entry: Entry) -> None:
    _record(rows, entry).disposed_at = entry.time


def _organisation(rows: Rows, entry: Entry) -> Organisation:
    organisation = rows.organisations.get(entry.org_id)
    if organisation is None:
        raise refuse(entry, "changes an organisation the log never created")
    return organisation


def _mers_org_id_set(rows: Rows, entry: Entry) -> None:
    _organisation(rows, entry).mers_org_id = entry.data["mers_org_id"]


def _retention_default_set(rows: Rows, entry: Entry) -> None:
    _organisation(rows, entry).retention_days = entry.data["retention_days"]


def _amended(rows: Rows, entry: Entry) -> None:
    envelope = envelope_of(rows, entry)
    _record(rows, entry)
    data = entry.data
    rows.amendments.append(
        Amendment(
            id=data["amendment_id"],
            org_id=entry.org_id,
            envelope_id=envelope.id,
            position=sum(1 for a in rows.amendments if a.envelope_id == envelope.id),
            type=data["type"],
            data=data["data"],
            documents=data["documents"],
            recorded_at=entry.time,
            recorded_by=entry.key_id or "",
        )
    )


def _paper_in_attested(rows: Rows, entry: Entry) -> None:
    envelope = envelope_of(rows, entry)
    data = entry.data
    (attested_by,) = data["attested_by"]
    subject(rows, entry, attested_by["subject"])
    rows.attestations.append(
        PaperInAttestation(
            id=data["attestation_id"],
            org_id=entry.org_id,
            envelope_id=envelope.id,
            original=data["original"],
            at=parse_time(data["at"]),
            location=data.get("location"),
            attested_by=attested_by,
            recorded_at=entry.time,
            recorded_by=entry.key_id or "",
        )
    )


def _transfer_initiated(rows: Rows, entry: Entry) -> None:
    data, envelope = entry.data, envelope_of(rows, entry)
    rows.transfers[data["transfer_id"]] = Transfer(
        id=data["transfer_id"],
        envelope_id=envelope.id,
        org_id=envelope.org_id,  # the envelope's organisation, whichever log holds the chain now
        from_org_id=data["from_org"],
        to_org_id=data["to_org"],
        type=data["type"],
        status="pending",
        confirm_required=data["confirm_required"],
        note=data.get("note"),
        expires_at=parse_time(data["expires_at"]) if data.get("expires_at") else None,
        created_at=entry.time,
        created_by=entry.key_id or "",
        initiated_index=entry.index,
    )


def _transfer(rows: Rows, entry: Entry) -> Transfer:
    transfer = rows.transfers.get(entry.data["transfer_id"])
    if transfer is None or transfer.envelope_id != entry.envelope_id:
        raise refuse(entry, "names a transfer the log never initiated")
    return transfer


def _transfer_accepted(rows: Rows, entry: Entry) -> None:
    transfer = _transfer(rows, entry)
    transfer.status, transfer.accepted_at, transfer.accepted_by = "accepted", entry.time, entry.key_id
    transfer.accepted_index = entry.index


def _transfer_completed(rows: Rows, entry: Entry) -> None:
    """Control and/or custody move as the live service moves them (vault/transfers.py)."""
    transfer, envelope = _transfer(rows, entry), envelope_of(rows, entry)
    if "control" in transfer.type:
        envelope.controller_org_id = transfer.to_org_id
    if "location" in transfer.type:
        envelope.custodian_org_id = transfer.to_org_id
    transfer.status, transfer.completed_at, transfer.completed_index = "completed", entry.time, entry.index


def _transfer_closed(status: str) -> Callable[[Rows, Entry], None]:
    def step(rows: Rows, entry: Entry) -> None:
        transfer = _transfer(rows, entry)
        transfer.status, transfer.closed_at, transfer.closed_by = status, entry.time, entry.key_id
        if status == "rejected":
            transfer.reason = entry.data.get("reason")

    return step


def _transfer_arrived(rows: Rows, entry: Entry) -> None:
    """The chain goes on in this log: the completion before it moved the rows (no change of its own)."""
    transfer = _transfer(rows, entry)
    if transfer.status != "completed" or transfer.to_org_id != entry.org_id:
        raise refuse(entry, "an arrival without a completed transfer of control to this log")


def _nothing(rows: Rows, entry: Entry) -> None:
    """An event that changes no row the log projects (its entry alone is the record)."""


Step = Callable[[Rows, Entry], None]

STEPS: Mapping[EventType, Step] = {
    ORG_CREATED: _org_created,
    KEY_CREATED: _key,
    KEY_ROTATED: _key,
    KEY_REVOKED: _key_revoked,
    ENVELOPE_CREATED: _envelope_created,
    DOCUMENT_STAGED: _nothing,  # staged uploads are not locked and expire: uploaded again after a rebuild
    ENVELOPE_VOIDED: _status("voided"),
    ENVELOPE_EXPIRED: _status("expired"),
    VAULTED_IN: _vaulted_in,
    CLAIM_RELEASED: _nothing,
    RETRIEVAL_ISSUED: _nothing,
    COPY_ISSUED: _copy_issued,
    RELEASED: _released,
    ASSIGNEE_CHANGED: _assignee_changed,
    CHECK_FAILED: _nothing,
    SUBJECT_ERASED: _subject_erased,
    MAP_ROOT: _nothing,  # the head map is rebuilt beside the replay (vault/rebuild/head_map.py)
    INTEGRITY_FAILED: _nothing,  # a finding still open is found again by the next evault verify
    SIGNING_KEY_ROTATED: _nothing,  # key generations are restored with the data directory's keys
    SIGNING_KEY_REVOKED: _nothing,
    RETENTION_EXTENDED: _retention_extended,
    LEGAL_HOLD_SET: _legal_hold_set,
    LEGAL_HOLD_CLEARED: _legal_hold_cleared,
    DISPOSED: _disposed,
    ORG_MERS_ORG_ID_SET: _mers_org_id_set,
    ORG_RETENTION_DEFAULT_SET: _retention_default_set,
    AMENDED: _amended,
    PAPER_IN_ATTESTED: _paper_in_attested,
    TRANSFER_INITIATED: _transfer_initiated,
    TRANSFER_ACCEPTED: _transfer_accepted,
    TRANSFER_COMPLETED: _transfer_completed,
    TRANSFER_REJECTED: _transfer_closed("rejected"),
    TRANSFER_CANCELLED: _transfer_closed("cancelled"),
    TRANSFER_EXPIRED: _transfer_closed("expired"),
    TRANSFER_ARRIVED: _transfer_arrived,
    TRANSFER_RECORDED: _nothing,  # the hand-off in a party's own log; the transfer's row is the record's log's
    ENVELOPE_IMPORTED: _envelope_imported,
    ORG_SIGNING_KEY_ADDED: _signing_key_added,
    TRANSFER_COUNTERSIGNED: _countersigned,
    ENVELOPE_SENT: ceremony_replay.sent,
    RECIPIENT_VIEWED: ceremony_replay.viewed,
    RECIPIENT_CONSENTED: ceremony_replay.consented,
    RECIPIENT_SIGNED: ceremony_replay.signed,
    RECIPIENT_DECLINED: ceremony_replay.declined,
    ENVELOPE_REMINDED: ceremony_replay.reminded,
    ENVELOPE_COMPLETED: ceremony_replay.completed,
}


def step_for(entry: Entry) -> Step:
    """The step of the entry's declared type; ``Rebuild.UnknownEvent`` for a type without one."""
    declared = CATALOGUE.get(entry.type)
    step = STEPS.get(declared) if declared is not None else None
    if step is None:
        raise RebuildRefused(
            "Rebuild.UnknownEvent",
            f"entry {entry.index} of {entry.org_id} is a {entry.type!r} event, which this version cannot replay; "
            "rebuild with a version of evault that knows it",
            org_id=entry.org_id,
            leaf_index=entry.index,
            event_type=entry.type,
        )
    return step
