"""C2SP tlog-cosignature v1 (Ed25519): a witness's timestamped signature over a checkpoint.

A cosignature is a note signature line whose key id uses signature type 0x04, so it can never be mistaken
for (or replayed as) the log's own 0x01 signature. It signs ``cosignature/v1\\ntime <T>\\n`` + the checkpoint
body, and its base64 is ``keyid(4) || timestamp(8, big-endian) || Ed25519 signature(64)``.
"""

from __future__ import annotations

import base64
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.log_error import BAD_SIGNATURE, MALFORMED, WRONG_KEY, LogError
from compliance.ledger.note import NoteSignature, b64decode_strict, key_id, parse_note, raw_public_key
from compliance.ledger.note import _check_name as check_key_name
from compliance.ledger.signer import Signer

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = (1 << 63) - 1
_SIG_LEN = 8 + 64


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || key)[:4], as tlog-cosignature requires."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes a v1 cosignature signs; the body must be a well-formed checkpoint."""
    Checkpoint.parse(checkpoint_body)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise LogError(MALFORMED, "cosignature timestamp must be an integer in 0..2**63-1")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


class CosignatureVerifier:
    """A trusted witness: its name and Ed25519 public key, pinned as a type-0x04 vkey."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        self.name = check_key_name(name)
        self.public_key = public_key
        self.key_id = cosignature_key_id(name, raw_public_key(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``name+hex8+base64(0x04 || key)`` and check that the hash belongs to the key."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8 or parts[1] != parts[1].lower():
            raise LogError(MALFORMED, "witness key is not name+hash+key")
        name, hex_id, key64 = parts
        raw = b64decode_strict(key64, "witness key")
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise LogError(MALFORMED, "witness key is not an Ed25519 cosignature/v1 key")
        try:
            verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        except ValueError as exc:
            raise LogError(MALFORMED, "witness key is not an Ed25519 key") from exc
        if verifier.key_id.hex() != hex_id:
            raise LogError(WRONG_KEY, f"key id {hex_id} does not belong to witness key {name!r}")
        return verifier

    @property
    def vkey(self) -> str:
        raw = bytes([ALG_COSIGNATURE_V1]) + raw_public_key(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def matches(self, sig: NoteSignature) -> bool:
        return sig.name == self.name and sig.key_id == self.key_id


class CosignatureSigner:
    """A witness's signing key. Use one key per cosigner: the v1 message does not commit to the name."""

    def __init__(self, name: str, private_key: Signer) -> None:
        self._key = private_key
        self._verifier = CosignatureVerifier(name, private_key.public_key())
        self.name = self._verifier.name
        self.key_id = self._verifier.key_id

    def verifier(self) -> CosignatureVerifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def cosign(checkpoint_body: str, signer: CosignatureSigner, timestamp: int) -> str:
    """The signature line (``— name base64…\\n``) to append to the checkpoint's note."""
    signature = signer.sign(cosigned_message(checkpoint_body, timestamp))
    return NoteSignature(signer.name, signer.key_id, struct.pack(">Q", timestamp) + signature).to_line()


def verify_cosignature(note: str, verifier: CosignatureVerifier) -> int:
    """The timestamp of ``verifier``'s cosignature on the checkpoint ``note``; every line of it must verify.

    Lines by other keys are ignored, as signed-note requires; when the witness signed more than once, the
    latest timestamp is returned.
    """
    parsed = parse_note(note)
    stamps: list[int] = []
    for sig in parsed.signatures:
        if not verifier.matches(sig):
            continue
        if len(sig.signature) != _SIG_LEN:
            raise LogError(MALFORMED, f"cosignature by {verifier.name} is not timestamp + 64 bytes")
        (timestamp,) = struct.unpack(">Q", sig.signature[:8])
        message = cosigned_message(parsed.text, timestamp)
        try:
            verifier.public_key.verify(sig.signature[8:], message)
        except InvalidSignature as exc:
            raise LogError(BAD_SIGNATURE, f"invalid cosignature by {verifier.name}") from exc
        stamps.append(timestamp)
    if not stamps:
        if any(sig.name == verifier.name or sig.key_id == verifier.key_id for sig in parsed.signatures):
            raise LogError(WRONG_KEY, f"cosignature line does not match witness key {verifier.vkey}")
        raise LogError(BAD_SIGNATURE, f"note has no cosignature by {verifier.name}")
    return max(stamps)
