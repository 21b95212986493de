"""Finishing vault-ins whose request died between the S3 put and the record, and removing copies whose request
died between the put and the register.

A claim older than the grace period (longer than any upload may take) is completed from its plan when every
planned object is stored with its lock, and released otherwise. Objects of a released claim stay locked (they
cannot be deleted); the verifier reports them as ``Object.Unrecorded`` and the release event explains them.
Runs at start-up and periodically beside the checkpointer; safe to run in several processes at once, since
both outcomes lock the envelope and check that the claim is still the same one.

A copy claim older than the grace period is taken (deleted, if it is still there) in the transaction that
deletes its object's versions from the copies bucket, which is not locked: a request that registers the copy
afterwards finds its claim gone and fails, deleting its object itself. A storage error rolls the claim back
for the next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from compliance.ledger.event_catalogue import CLAIM_RELEASED
from compliance.ledger.events import Actor, append_event
from storage.errors import StorageError
from storage.ids import utcnow
from storage.models import CopyClaim, VaultClaim
from vault.custody import Custody
from vault.envelopes import lock_envelope
from vault.retrieval import end_copy_claim
from vault.vault_in import VaultInRaced, record_claim

log = logging.getLogger("evault.reconcile")


@dataclass(frozen=True)
class Reconciled:
    envelope_id: str
    claim_id: str
    outcome: str  # completed | released | skipped


def _stored_version(custody: Custody, doc: dict[str, Any]) -> str | None:
    """The version at the planned key holding exactly the planned bytes under a COMPLIANCE lock, if any."""
    for version in custody.authoritative.list_versions(doc["key"]):
        info = custody.authoritative.head(doc["key"], version)
        if info.sha256_hex == doc["sha256"] and info.size == doc["size"] and info.lock_mode == "COMPLIANCE":
            return version
    return None


def _release(custody: Custody, claim: VaultClaim, stored: list[str]) -> None:
    with custody.db.session() as session:
        current = session.get(VaultClaim, claim.envelope_id)
        if current is None or current.claim_id != claim.claim_id:
            return
        lock_envelope(session, claim.org_id, claim.envelope_id)
        session.delete(current)
        if stored:
            append_event(
                session,
                actor=Actor(claim.org_id),
                envelope_id=claim.envelope_id,
                event_type=CLAIM_RELEASED,
                occurred_at=utcnow(),
                data={"claim_id": claim.claim_id, "unrecorded_keys": stored},
            )


def reconcile_claims(custody: Custody, older_than: timedelta) -> list[Reconciled]:
    cutoff = utcnow() - older_than
    with custody.db.read_session() as session:
        stale = (col(VaultClaim.claimed_at) < cutoff) & (col(VaultClaim.lease_until) < utcnow())
        claims = list(session.exec(select(VaultClaim).where(stale)))
    outcomes = []
    for claim in claims:
        try:
            versions = [_stored_version(custody, doc) for doc in claim.plan["documents"]]
        except StorageError as exc:
            log.warning("claim %s of %s not reconciled now: %s", claim.claim_id, claim.envelope_id, exc)
            outcomes.append(Reconciled(claim.envelope_id, claim.claim_id, "skipped"))
            continue
        complete = [v for v in versions if v is not None]
        try:
            if len(complete) == len(versions):
                record_claim(custody, claim, complete, reconciled=True)
                outcome = "completed"
            else:
                stored = [d["key"] for d, v in zip(claim.plan["documents"], versions, strict=True) if v is not None]
                _release(custody, claim, stored)
                outcome = "released"
        except VaultInRaced:
            outcome = "skipped"  # finished by its own request or another reconciler meanwhile
        log.info("vault-in claim %s of %s: %s", claim.claim_id, claim.envelope_id, outcome)
        outcomes.append(Reconciled(claim.envelope_id, claim.claim_id, outcome))
    return outcomes


def reconcile_copy_claims(custody: Custody, older_than: timedelta) -> list[str]:
    """Delete the objects of the copy claims older than ``older_than``, and the claims; the copy ids removed."""
    cutoff = utcnow() - older_than
    with custody.db.read_session() as session:
        stale = list(session.exec(select(CopyClaim).where(col(CopyClaim.claimed_at) < cutoff)))
    removed = []
    for claim in stale:
        try:
            with custody.db.session() as session:
                if not end_copy_claim(session, claim.copy_id):
                    continue  # registered, or removed by another reconciler, meanwhile
                for version in custody.copies.list_versions(claim.s3_key):
                    custody.copies.delete_version(claim.s3_key, version)
        except StorageError as exc:
            log.warning("copy claim %s not reconciled now: %s", claim.copy_id, exc)
            continue
        log.info("copy claim %s: its unregistered object at %s removed", claim.copy_id, claim.s3_key)
        removed.append(claim.copy_id)
    return removed
