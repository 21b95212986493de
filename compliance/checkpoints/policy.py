"""What an offline verifier may demand of a checkpoint beyond the vault's own signature.

Shared by ``evault log verify`` and ``evault cert verify``: an N-of-M policy over witness cosignatures (the
auditor brings the witnesses' keys) and an RFC 3161 timestamp over the note (the auditor brings the TSA roots).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from compliance.checkpoints.timestamping import TIMESTAMP_INVALID, TimestampInvalid, verify_timestamp
from compliance.ledger.log_error import LogError
from compliance.witness.cosignature import CosignatureVerifier, verify_cosignature

WITNESS_QUORUM = "Witness.QuorumNotMet"


@dataclass(frozen=True)
class CheckpointTrust:
    witness_vkeys: tuple[str, ...] = ()
    witnesses_required: int | None = None  # None: all of the keys given
    tsa_roots_pem: bytes | None = None

    def check(self, note: str, timestamp_token: bytes | None) -> list[str]:
        """Lines saying what was proven; raise when the checkpoint falls short of the policy."""
        proven = []
        if self.witness_vkeys or self.witnesses_required:
            cosigned = []
            for vkey in self.witness_vkeys:
                verifier = CosignatureVerifier.from_vkey(vkey)
                try:
                    cosigned.append((verifier.name, verify_cosignature(note, verifier)))
                except LogError:
                    continue
            required = len(self.witness_vkeys) if self.witnesses_required is None else self.witnesses_required
            if len(cosigned) < required:
                raise LogError(
                    WITNESS_QUORUM,
                    f"{len(cosigned)} of {len(self.witness_vkeys)} witnesses cosigned; {required} required",
                )
            proven += [f"witness {name} cosigned at {stamp}" for name, stamp in cosigned]
        if self.tsa_roots_pem is not None:
            if timestamp_token is None:
                raise TimestampInvalid(TIMESTAMP_INVALID, "the checkpoint carries no timestamp token")
            when: datetime = verify_timestamp(timestamp_token, note.encode(), self.tsa_roots_pem)
            proven.append(f"timestamped by a trusted TSA at {when.isoformat()}")
        return proven
