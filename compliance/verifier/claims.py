"""Claims in flight: a vault-in or an import claimed before its objects were put, and not yet recorded.

Both write their objects between a short claiming transaction and the one that records them
(docs/design/claim-then-record.md), so for a while an object is in the bucket that no record names. Those
objects are not ``Object.Unrecorded``: their record is on its way. A claim older than the grace period
(``EVAULT_CLAIM_GRACE_SECONDS``, before the run started) is a finding of its own, once per claim instead of
once per object:

- ``Vault.ClaimUnfinished``: a vault-in claim that the reconciler neither completed nor released;
- ``Import.ClaimUnfinished``: an ``evault import`` that died after its claim (and perhaps after its puts),
  naming no envelope yet. Importing the same package into the same organisation again takes the claim over and
  records the objects (vault/imports.py); until then that release cannot be imported anywhere else.

An unrecorded import claim that names an existing envelope is not in flight (the import would create that
envelope): it is the rows pass's ``Import.Unlogged``, and the envelope's objects are checked as ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from compliance.verifier.context import Context
from compliance.verifier.findings import Finding
from storage.ids import as_utc, iso
from storage.keys import envelope_of_key
from storage.models import Envelope, EnvelopeImport, VaultClaim


@dataclass(frozen=True)
class InFlight:
    """What the organisation's claims will write: vault-ins' planned keys, and the envelopes imports create (an
    import claim holds no keys: its documents' hashes are in the package)."""

    keys: frozenset[str]
    envelopes: frozenset[str]

    def holds(self, key: str) -> bool:
        return key in self.keys or envelope_of_key(key) in self.envelopes


def in_flight(ctx: Context, org_id: str) -> InFlight:
    """The organisation's claims in flight; each older than the grace period is reported."""
    with ctx.sources.db.read_session() as session:
        claims = list(session.exec(select(VaultClaim).where(VaultClaim.org_id == org_id)))
        envelope = select(Envelope.id).where(Envelope.id == EnvelopeImport.envelope_id)
        imports = list(
            session.exec(
                select(EnvelopeImport).where(
                    EnvelopeImport.org_id == org_id, col(EnvelopeImport.recorded_at).is_(None), ~envelope.exists()
                )
            )
        )
    now = ctx.scope.started_at or datetime.now().astimezone()
    stale = now - ctx.tuning.claim_grace
    keys: set[str] = set()
    for claim in claims:
        if as_utc(claim.claimed_at) < stale:
            ctx.report(
                Finding(
                    "Vault.ClaimUnfinished",
                    "a vault-in claim was neither recorded nor released",
                    {"org_id": org_id, "envelope_id": claim.envelope_id, "claim_id": claim.claim_id},
                )
            )
        keys.update(doc["key"] for doc in claim.plan.get("documents", []))
    for claimed in imports:
        if as_utc(claimed.claimed_at) < stale:
            ctx.report(
                Finding(
                    "Import.ClaimUnfinished",
                    "an import claim was never recorded: import the same package into this organisation again",
                    {
                        "org_id": org_id,
                        "envelope_id": claimed.envelope_id,
                        "origin_log": claimed.origin_log,
                        "origin_envelope_id": claimed.origin_envelope_id,
                        "release_leaf_index": claimed.release_leaf_index,
                        "claimed_at": iso(as_utc(claimed.claimed_at)),
                    },
                )
            )
    return InFlight(frozenset(keys), frozenset(claimed.envelope_id for claimed in imports))
