"""``evault verify``: re-read every authoritative object and every organisation's log, report every fault.

This is the nightly check's first form: object bytes against the recorded SHA-256, the version and its
compliance lock, no other version under the key, and the ledger audit against WORM. The full verifier
(resumable, sharded, streaming, with run records) is a later issue; it builds on these same checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from sqlmodel import select

from compliance.log_audit import Finding, audit_log
from compliance.sources import Sources
from storage.errors import StorageError
from storage.ids import as_utc, utcnow
from storage.keys import AUTHORITATIVE_PREFIX, envelope_of_key
from storage.models import Organisation, VaultClaim, VaultedDocument, VaultRecord


def check_document(sources: Sources, doc: VaultedDocument, record: VaultRecord) -> list[Finding]:
    where = {"envelope_id": record.envelope_id, "document_id": doc.id}
    findings = []
    try:
        info = sources.authoritative.head(doc.s3_key, doc.s3_version_id)
        digest = hashlib.sha256()
        for chunk in sources.authoritative.iter_read(doc.s3_key, doc.s3_version_id):
            digest.update(chunk)
        versions = sources.authoritative.list_versions(doc.s3_key)
    except StorageError as exc:
        return [Finding("Object.Unreadable", str(exc), where)]
    if digest.hexdigest() != doc.sha256:
        findings.append(Finding("Object.BytesChanged", "stored bytes differ from the vaulted SHA-256", where))
    if info.lock_mode != "COMPLIANCE" or info.retain_until is None or info.retain_until < as_utc(record.retain_until):
        findings.append(
            Finding(
                "Object.LockWeakened",
                "compliance lock missing or shortened",
                {**where, "mode": info.lock_mode, "until": str(info.retain_until)},
            )
        )
    if versions != [doc.s3_version_id]:
        findings.append(
            Finding(
                "Object.ExtraVersion",
                "other versions exist under the authoritative key",
                {**where, "versions": versions},
            )
        )
    return findings


def unrecorded_objects(sources: Sources, older_than: timedelta) -> list[Finding]:
    """Every version under the authoritative prefix that no record names.

    Such an object is locked and cannot be deleted, but it must be visible. Objects a vault-in claim plans
    are in flight and not findings while the claim is younger than ``older_than``; an older claim is a
    finding of its own (``Vault.ClaimUnfinished``) until the reconciler completes or releases it.
    """
    with sources.db.read_session() as session:
        recorded = {(d.s3_key, d.s3_version_id) for d in session.exec(select(VaultedDocument))}
        claims = list(session.exec(select(VaultClaim)))
    cutoff = utcnow() - older_than
    in_flight: dict[str, str] = {}
    findings = []
    for claim in claims:
        if as_utc(claim.claimed_at) < cutoff:
            findings.append(
                Finding(
                    "Vault.ClaimUnfinished",
                    "a vault-in claim was neither recorded nor released",
                    {"envelope_id": claim.envelope_id, "claim_id": claim.claim_id},
                )
            )
        in_flight.update({doc["key"]: claim.envelope_id for doc in claim.plan["documents"]})
    for key, version_id in sources.authoritative.list_all_versions(AUTHORITATIVE_PREFIX):
        if (key, version_id) in recorded or key in in_flight:
            continue
        findings.append(
            Finding(
                "Object.Unrecorded",
                "an object under the authoritative prefix is named by no record",
                {"key": key, "version_id": version_id, "envelope_id": envelope_of_key(key)},
            )
        )
    return findings


def verify_vault(sources: Sources, claim_grace: timedelta = timedelta(minutes=15)) -> dict[str, Any]:
    findings: list[Finding] = []
    with sources.db.read_session() as session:
        orgs = [org.id for org in session.exec(select(Organisation))]
        documents = list(session.exec(select(VaultedDocument, VaultRecord).join(VaultRecord)))
    for doc, record in documents:
        findings.extend(check_document(sources, doc, record))
    findings.extend(unrecorded_objects(sources, claim_grace))
    for org_id in orgs:
        findings.extend(audit_log(sources, org_id))
    return {
        "clean": not findings,
        "organisations": len(orgs),
        "documents": len(documents),
        "findings": [asdict(f) for f in findings],
    }
