"""The one error every transparency-log check raises.

An auditor switches on ``code``; parser and library exceptions are wrapped into a ``LogError`` so that a
malformed input never escapes as a ``ValueError`` or ``binascii.Error`` (sigstore-python's verifier style).
"""

from __future__ import annotations

from compliance.errors import InvalidInput

MALFORMED = "Log.Malformed"  # unparseable note, checkpoint, proof or tile
BAD_SIGNATURE = "Log.BadSignature"  # missing or wrong signature, unknown key
WRONG_ORIGIN = "Log.WrongOrigin"
WRONG_KEY = "Log.WrongKey"  # key name and key id do not belong together
INVALID_PROOF = "Log.InvalidProof"  # inclusion proof does not lead to the root, or index out of range
INCONSISTENT = "Log.Inconsistent"  # consistency proof fails: the log forked or was rewritten
ROLLED_BACK = "Log.RolledBack"  # the new size is smaller than the trusted one
FORKED = "Log.Forked"  # a checkpoint of the trusted size with another root: two histories signed
PROVE_FROM_TRUSTED = "Log.ProveFromTrusted"  # the proof starts elsewhere than the checkpoint already trusted
CHAIN_BROKEN = "Chain.Broken"  # an envelope's entries do not link: edited, deleted, inserted or reordered
INCOMPLETE = "Log.Incomplete"  # the head map names a later head than the history shown: events were cut off
KEY_CHAIN_BROKEN = "Log.KeyChainBroken"  # a key rotation or revocation statement does not follow from the trusted key
KEY_COMPROMISED = "Log.KeyCompromised"  # signed by a revoked key and not dated before its compromise
NOT_PROVEN = "Log.CompletenessNotProven"  # a bundle without a head map (v1): a prefix only, later events unknown
SEGMENT_MISSING = "Log.SegmentMissing"  # a chain that crossed logs, shown without one of its logs or segments
HAND_OFF_BROKEN = "Log.HandOffBroken"  # the chain changes log other than by a hand-off of control and its arrival
CORRUPT = "Log.Corrupt"  # the vault's own stored log (its tiles) is missing or damaged: our fault, not the input's

CODES = frozenset(
    {
        MALFORMED,
        BAD_SIGNATURE,
        WRONG_ORIGIN,
        WRONG_KEY,
        INVALID_PROOF,
        INCONSISTENT,
        ROLLED_BACK,
        FORKED,
        PROVE_FROM_TRUSTED,
        CHAIN_BROKEN,
        INCOMPLETE,
        KEY_CHAIN_BROKEN,
        SEGMENT_MISSING,
        HAND_OFF_BROKEN,
        KEY_COMPROMISED,
        NOT_PROVEN,
        CORRUPT,
    }
)


class LogError(InvalidInput):
    """A log artefact failed verification; ``code`` is one of ``CODES``."""


class LogCorrupt(LogError):
    """The vault's own log store lacks or garbles what it must hold: a 500 that says so, never a 4xx."""

    category = "integrity"
