"""Still released: that nothing followed a release, shown from a later checkpoint and the head map it commits.

A release receipt proves the ``vault.released`` entry is in the log; it cannot show that nothing came after it (a
transfer, a new vault-in, anything that would change control). The envelope's proof bundle at a later checkpoint
can: it carries the chain with inclusion proofs and the head-map proof committed by that checkpoint's last entry,
so when it verifies from the trusted key and its last event is byte for byte the receipt's release entry, at the
same position of the same log, the release is still the envelope's head there. Given the consistency proof from
the receipt's checkpoint to the later one (``GET /log/proof/consistency``), the later checkpoint is also shown to
extend the one the receipt rests on (docs/vault-transfer.md, docs/evidence-formats.md §11).
"""

from __future__ import annotations

from dataclasses import dataclass

from compliance import strict_json
from compliance.bundles.proof_bundle import VerifiedBundle, verify_bundle
from compliance.checkpoints.auditor_memory import check_consistency
from compliance.checkpoints.policy import CheckpointTrust
from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.key_history import KeySet
from compliance.ledger.log_error import NOT_PROVEN, LogError
from compliance.receipts.offline_check import INCONSISTENT, ReceiptInvalid, VerifiedReceipt

SUPERSEDED = "Receipt.ReleaseSuperseded"


@dataclass(frozen=True)
class StillReleased:
    bundle: VerifiedBundle
    checkpoint: Checkpoint  # the later checkpoint at which the release is still the head
    extends: Checkpoint | None  # the receipt's checkpoint it was proven to extend, when a proof was given


def check_still_released(
    verified: VerifiedReceipt,
    bundle_text: str | bytes,
    trusted_pem: bytes,
    *,
    consistency_proof: str | None = None,
    keys: KeySet | None = None,
    trust: CheckpointTrust | None = None,
) -> StillReleased:
    """Raise ``Receipt.ReleaseSuperseded`` when an event followed the release at the bundle's checkpoint."""
    if verified.kind != "release":
        raise ReceiptInvalid(INCONSISTENT, "only a release receipt can be checked against a later checkpoint")
    release = verified.events["release"]
    origin = next(o for o in verified.checkpoints if o.rsplit("/", 1)[-1] == release["log"])
    bundle = verify_bundle(bundle_text, trusted_pem, origin, keys, trust)
    if bundle.envelope_id != verified.receipt["envelope_id"]:
        raise ReceiptInvalid(INCONSISTENT, "the bundle is another envelope's history than the receipt's")
    done = bundle.completeness
    if done is None:
        raise LogError(NOT_PROVEN, "a v1 bundle has no head map: it cannot show what the head is now")
    head = bundle.events[-1] if bundle.events else None
    if head != release:
        followed = [e.get("type") for e in bundle.events if int(e.get("index", -1)) > int(release["index"])]
        raise ReceiptInvalid(
            SUPERSEDED,
            "the release is not the envelope's head at the later checkpoint: events followed it",
            checkpoint_size=bundle.checkpoint.size,
            head_seq=done.head_seq,
            followed=followed,
        )
    extends = None
    if consistency_proof is not None:
        note = next(str(c["note"]) for c in verified.receipt["checkpoints"] if c["origin"] == origin)
        later = str(strict_json.loads(bundle_text)["checkpoint"])
        extends, _ = check_consistency(note, later, consistency_proof, trusted_pem, None, keys, trust)
    return StillReleased(bundle, bundle.checkpoint, extends)
