"""Importing another vault's export package: the record arrives here as a new authoritative copy.

Only after :func:`compliance.evidence_package.import_check.verify_export` passed (every seal, proof, checkpoint
signature and receipt, against the sending vault's trusted key) is anything written, in the order vault-in uses
so that nothing is half-imported (docs/design/claim-then-record.md): a short transaction claims the origin's
release event (``envelope_import``, unique per origin log and leaf index: a second import of the same release
is 409 ``Import.AlreadyImported`` and writes nothing); each PDF is written once under a COMPLIANCE lock into this
vault's own bucket; then one transaction records the envelope, its record and documents and the
``envelope.imported`` event that opens its chain here and names its provenance. A claim whose import died
before its record is taken over by the next import of the same release into the same organisation, under the
same envelope id, so its write-once puts are retries of the same bytes and leave nothing unrecorded behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from compliance.errors import NotFound, Unavailable
from compliance.evidence_package.import_check import VerifiedExport, already_imported
from compliance.ledger.event_catalogue import ENVELOPE_IMPORTED
from compliance.ledger.events import Actor, append_event
from storage.errors import StorageError
from storage.ids import as_utc, iso, new_id, utcnow
from storage.keys import authoritative_key
from storage.models import Envelope, EnvelopeImport, Organisation, VaultedDocument, VaultRecord
from vault.custody import Custody
from vault.retention import organisation_retention_days, vault_in_retention
from vault.vault_in import document_data
from vault.vault_in_plan import safe_filename


def _claim(custody: Custody, org_id: str, export: VerifiedExport) -> EnvelopeImport:
    where = {"origin_log": export.origin_log, "release_leaf_index": export.release_leaf_index}
    try:
        with custody.db.session() as session:
            if session.get(Organisation, org_id) is None:
                raise NotFound("Organisation.NotFound", "no such organisation", org_id=org_id)
            found = session.exec(
                select(EnvelopeImport).where(
                    EnvelopeImport.origin_log == export.origin_log,
                    EnvelopeImport.release_leaf_index == export.release_leaf_index,
                )
            ).first()
            if found is not None and (found.recorded_at is not None or found.org_id != org_id):
                raise already_imported(envelope_id=found.envelope_id, **where)
            if found is not None:
                return found  # an import that died before its record: this one finishes it
            days = organisation_retention_days(session, org_id, custody.policy.retention_days)
            claim = EnvelopeImport(
                envelope_id=new_id("env"),
                org_id=org_id,
                origin_log=export.origin_log,
                origin_envelope_id=str(export.origin["envelope_id"]),
                release_leaf_index=export.release_leaf_index,
                origin_key_id=str(export.origin["key_id"]),
                release_receipt_sha256=str(export.origin["release_receipt_sha256"]),
                claimed_at=utcnow(),
                retain_until=vault_in_retention(days, None, utcnow()),  # a retry puts under the same lock date
            )
            session.add(claim)
    except IntegrityError:  # two imports of one release at once: the unique index lets one claim it
        raise already_imported(**where) from None
    return claim


def import_package(custody: Custody, org_id: str, export: VerifiedExport) -> Envelope:
    """Record a verified export package as a new envelope of ``org_id`` (see the module docstring)."""
    claim = _claim(custody, org_id, export)
    retain_until = as_utc(claim.retain_until)
    versions = []
    for doc in export.documents:
        key = authoritative_key(org_id, claim.envelope_id, doc.position, doc.sha256)
        try:
            versions.append(custody.authoritative.put_write_once(key, doc.data, retain_until=retain_until))
        except StorageError as exc:
            raise Unavailable("Storage.Unavailable", "object storage did not accept the document; retry") from exc
    try:
        return _record(custody, claim, export, retain_until, [(v.key, v.version_id) for v in versions])
    except IntegrityError:  # a concurrent retry of the same claim recorded it first
        raise already_imported(envelope_id=claim.envelope_id) from None


def _record(
    custody: Custody, claim: EnvelopeImport, export: VerifiedExport, retain_until: Any, stored: list[tuple[str, str]]
) -> Envelope:
    now = utcnow()
    actor = Actor(claim.org_id, source="import")
    with custody.db.session() as session:
        # The claim is locked first: of two retries of one claim, the second waits here and then sees it recorded.
        row = session.exec(
            select(EnvelopeImport).where(EnvelopeImport.envelope_id == claim.envelope_id).with_for_update()
        ).one()
        if row.recorded_at is not None:
            raise already_imported(envelope_id=claim.envelope_id)
        envelope = Envelope(
            id=claim.envelope_id,
            org_id=claim.org_id,
            kind=export.kind,
            status="completed",
            vault_state="vaulted",
            title=export.title,
            external_id=None,
            parties=[],
            secured_party=export.secured_party,
            meta={},
            created_at=now,
            updated_at=now,
        )
        session.add(envelope)
        session.flush()
        record = VaultRecord(
            id=new_id("ac"),
            envelope_id=envelope.id,
            org_id=envelope.org_id,
            source=export.source,
            retain_until=retain_until,
            vaulted_at=now,
            vaulted_by="",
        )
        session.add(record)
        session.flush()
        documents = [
            VaultedDocument(
                id=new_id("doc"),
                record_id=record.id,
                position=doc.position,
                filename=safe_filename(doc.filename, doc.position),
                sha256=doc.sha256,
                size=len(doc.data),
                page_count=doc.pages,
                s3_bucket=custody.authoritative.bucket,
                s3_key=key,
                s3_version_id=version,
                signatures=doc.signatures,
            )
            for doc, (key, version) in zip(export.documents, stored, strict=True)
        ]
        session.add_all(documents)
        row.recorded_at = now
        session.add(row)
        data: dict[str, Any] = {
            "kind": envelope.kind,
            "title": envelope.title,
            "external_id": None,
            "parties": [],
            "secured_party": export.secured_party,
            "authoritative_copy_id": record.id,
            "source": record.source,
            "retain_until": iso(record.retain_until),
            "documents": [document_data(doc) for doc in documents],
            "origin": export.origin,
        }
        append_event(
            session, actor=actor, envelope_id=envelope.id, event_type=ENVELOPE_IMPORTED, occurred_at=now, data=data
        )
    return envelope
