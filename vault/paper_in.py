"""Paper-in attestation: the custodian's word about a paper envelope's wet-ink original, beside its vaulted scan.

It records whether the original is held or was destroyed, when, where (optionally) and by whom. "By whom" is a
person: the log holds a commitment to the name (a ``data_subject``, as for parties, erasable), the database the
name. An attestation is custody evidence that the certificate shows; it does not make the scan a transferable
record (UETA §16(a)(2) needs the issuer's express agreement to that), and nothing here says it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance.errors import Conflict, InvalidInput
from compliance.ledger.event_catalogue import PAPER_IN_ATTESTED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.personal_data import commit_parties
from storage.ids import as_utc, iso, new_id, utcnow
from storage.models import PaperInAttestation
from vault.custody import Custody, OnCommit
from vault.envelopes import lock_envelope, vault_record
from vault.field_limits import MAX_PARTY_FIELD, check_line
from vault.lifecycle import check_if_match, touch

ORIGINAL = ("held", "destroyed")
MAX_LOCATION = 500


@dataclass
class Attestation:
    """What the custodian attests: ``original`` held or destroyed, ``at`` (RFC 3339 with offset, not in the
    future), ``attested_by`` (the person's name), ``location`` (where it is held), optional."""

    original: str
    at: datetime
    attested_by: str
    location: str | None = None


def _check(attestation: Attestation, now: datetime) -> None:
    if attestation.original not in ORIGINAL:
        raise InvalidInput("PaperIn.InvalidOriginal", f"original must be one of {ORIGINAL}", field="original")
    if attestation.at.tzinfo is None or as_utc(attestation.at) > now:
        raise InvalidInput(
            "PaperIn.InvalidTime", "at is an RFC 3339 time with its offset, not in the future", field="at"
        )
    check_line(attestation.attested_by, "attested_by", MAX_PARTY_FIELD, required=True)
    if not attestation.attested_by.strip():
        raise InvalidInput("PaperIn.AttesterRequired", "attested_by names who attests", field="attested_by")
    check_line(attestation.location, "location", MAX_LOCATION)


def attest_paper_in(
    custody: Custody,
    actor: Actor,
    envelope_id: str,
    attestation: Attestation,
    *,
    if_match: str | None = None,
    on_commit: OnCommit | None = None,
) -> PaperInAttestation:
    """Record the attestation and its event under the envelope's lock; only a vaulted, unreleased paper envelope."""
    now = utcnow()
    _check(attestation, now)
    with custody.db.session() as session:
        envelope = lock_envelope(session, actor.org_id, envelope_id)
        check_if_match(envelope, if_match)
        if envelope.kind != "paper":
            raise Conflict(
                "PaperIn.NotPaper", "a paper-in attestation is for paper envelopes", envelope_kind=envelope.kind
            )
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "vault the scan first: the attestation stands beside it")
        if record.released_at is not None:
            raise Conflict(
                "Vault.AlreadyReleased", "the authoritative copy was released", released_at=iso(record.released_at)
            )
        (committed,) = commit_parties(session, envelope.org_id, envelope.id, [{"name": attestation.attested_by}], now)
        row = PaperInAttestation(
            id=new_id("att"),
            org_id=envelope.org_id,
            envelope_id=envelope.id,
            original=attestation.original,
            at=as_utc(attestation.at),
            location=attestation.location,
            attested_by=committed,
            recorded_at=now,
            recorded_by=actor.key_id or "",
        )
        session.add(row)
        touch(envelope, now)
        session.add(envelope)
        session.flush()
        data: dict[str, Any] = {
            "attestation_id": row.id,
            "original": row.original,
            "at": iso(row.at),
            "attested_by": [committed],
        }
        if row.location is not None:
            data["location"] = row.location
        append_event(
            session, actor=actor, envelope_id=envelope.id, event_type=PAPER_IN_ATTESTED, occurred_at=now, data=data
        )
        if on_commit is not None:
            on_commit(session, envelope)
    return row
