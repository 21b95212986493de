"""The export package: a released record leaving for another vault, as one evidence package it can import.

After a vault-out of reason ``transfer`` (``transferee.vault_id`` names the receiving vault), the organisation
that released the record may fetch it: the evidence package (:mod:`compliance.evidence_package.build`: the
authoritative PDFs, the certificate, the envelope's whole history as a proof bundle with its checkpoint, the
release receipt, the public keys and the signed manifest) with the transfer receipt of every transfer of control
the record went through here. The receiving vault imports it with ``evault import`` only after checking every
part (:mod:`compliance.evidence_package.import_check`); docs/vault-transfer.md.
"""

from __future__ import annotations

from compliance.errors import Conflict, NotFound
from compliance.evidence_package.build import PackageIssuer, build_package
from compliance.ledger.chain import parse_entry
from compliance.ledger.event_catalogue import RELEASED
from compliance.ledger.events import Actor, envelope_events
from compliance.sources import Sources
from storage.models import Envelope

NOT_RELEASED, NOT_TRANSFER, NOT_RELEASER = "Export.NotReleased", "Export.NotTransfer", "Export.NotReleaser"


def _check_released_for_transfer(sources: Sources, actor: Actor, envelope_id: str) -> None:
    """The record's last release is a transfer to another vault, by the actor's organisation (409 otherwise)."""
    with sources.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        if envelope is None or not envelope.held_by(actor.org_id):
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
        releases = [
            parse_entry(e.entry) for e in envelope_events(session, envelope_id) if e.event_type == RELEASED.name
        ]
    if not releases:
        raise Conflict(NOT_RELEASED, "an export package follows a vault-out of reason transfer; there was none")
    release = releases[-1]
    if release["data"].get("reason") != "transfer":
        raise Conflict(
            NOT_TRANSFER, "the record was released, but not for a transfer to another vault", reason=release["data"]
        )
    if (release.get("actor") or {}).get("org_id") != actor.org_id:
        raise Conflict(NOT_RELEASER, "only the organisation that released the record may export it")


def build_export(sources: Sources, issuer: PackageIssuer, actor: Actor, envelope_id: str) -> bytes:
    """The export package of a record the actor released for a transfer (409 ``Export.*`` before or otherwise)."""
    _check_released_for_transfer(sources, actor, envelope_id)
    return build_package(sources, issuer, actor, envelope_id)
