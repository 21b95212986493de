"""What an offline verifier may demand of a checkpoint beyond the vault's own signature.

Shared by ``evault log verify`` and ``evault cert verify``: an N-of-M policy over witness cosignatures (the
auditor brings the witnesses' keys) and an RFC 3161 timestamp over the note (the auditor brings the TSA roots).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from compliance.checkpoints.timestamping import TIMESTAMP_INVALID, TimestampInvalid, verify_timestamp
from compliance.ledger.key_history import KeyHistory, KeyPeriod
from compliance.ledger.log_error import LogError
from compliance.ledger.note import raw_public_key
from compliance.witness.cosignature import CosignatureVerifier, verify_cosignature

WITNESS_QUORUM = "Witness.QuorumNotMet"


def distinct_witnesses(vkeys: tuple[str, ...]) -> list[list[CosignatureVerifier]]:
    """The vkeys grouped by Ed25519 key: a key listed twice (under one name or two) is one witness, not two."""
    by_key: dict[bytes, list[CosignatureVerifier]] = {}
    for vkey in vkeys:
        verifier = CosignatureVerifier.from_vkey(vkey)
        by_key.setdefault(raw_public_key(verifier.public_key), []).append(verifier)
    return list(by_key.values())


def _cosigned_by(note: str, names: list[CosignatureVerifier]) -> tuple[str, int] | None:
    """The first of one key's names that cosigned ``note``, with its timestamp; None when none did."""
    for verifier in names:
        try:
            return verifier.name, verify_cosignature(note, verifier)
        except LogError:
            continue
    return None


@dataclass(frozen=True)
class CheckpointTrust:
    witness_vkeys: tuple[str, ...] = ()
    witnesses_required: int | None = None  # None: all of the keys given
    tsa_roots_pem: bytes | None = None

    def check(self, note: str, timestamp_token: bytes | None) -> list[str]:
        """Lines saying what was proven; raise when the checkpoint falls short of the policy."""
        proven = []
        if self.witness_vkeys or self.witnesses_required:
            witnesses = distinct_witnesses(self.witness_vkeys)
            cosigned = [found for names in witnesses if (found := _cosigned_by(note, names)) is not None]
            required = len(witnesses) if self.witnesses_required is None else self.witnesses_required
            if len(cosigned) < required:
                raise LogError(
                    WITNESS_QUORUM,
                    f"{len(cosigned)} of {len(witnesses)} distinct witness keys cosigned; {required} required",
                    cosigned=[name for name, _ in cosigned],
                )
            proven += [f"witness {name} cosigned at {stamp}" for name, stamp in cosigned]
        if self.tsa_roots_pem is not None:
            if timestamp_token is None:
                raise TimestampInvalid(TIMESTAMP_INVALID, "the checkpoint carries no timestamp token")
            when: datetime = verify_timestamp(timestamp_token, note.encode(), self.tsa_roots_pem)
            proven.append(f"timestamped by a trusted TSA at {when.isoformat()}")
        return proven

    def dated(self, note: str, timestamp_token: bytes | None) -> datetime | None:
        """The earliest time a trusted witness or TSA proves the note existed at; None when nothing dates it."""
        times: list[datetime] = []
        for vkey in self.witness_vkeys:
            try:
                times.append(datetime.fromtimestamp(verify_cosignature(note, CosignatureVerifier.from_vkey(vkey)), UTC))
            except LogError:
                continue
        if self.tsa_roots_pem is not None and timestamp_token is not None:
            try:
                times.append(verify_timestamp(timestamp_token, note.encode(), self.tsa_roots_pem))
            except TimestampInvalid:
                pass
        return min(times) if times else None

    def check_key(self, keys: KeyHistory, period: KeyPeriod, note: str, timestamp_token: bytes | None) -> None:
        """``Log.KeyCompromised`` when a revoked key signed the note and no trusted witness or TSA dates it earlier."""
        if period.compromised_since is not None:
            keys.check_not_compromised(period, self.dated(note, timestamp_token), "the checkpoint")
