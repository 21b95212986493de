"""C2SP signed notes (golang.org/x/mod/sumdb/note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one ``— name base64(keyid || signature)`` line
per signature. Lines from keys the reader does not know are ignored, as the spec requires; a note counts as
signed only when a known key's signature verifies. Every failure is a ``LogError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from compliance.ledger.log_error import BAD_SIGNATURE, MALFORMED, WRONG_KEY, LogError
from compliance.ledger.signer import Signer

ALG_ED25519 = 0x01
SIG_PREFIX = "— "
MAX_SIGNATURES = 100


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard padded base64 in its one canonical spelling, so that parse → serialise is byte-identical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise LogError(MALFORMED, f"{what} is not base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise LogError(MALFORMED, f"{what} is not canonical base64")
    return raw


def _check_name(name: str) -> str:
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise LogError(MALFORMED, f"invalid key name {name!r}")
    return name


def _check_text(text: str, what: str) -> str:
    if any(c < " " and c != "\n" for c in text) or "\x7f" in text:
        raise LogError(MALFORMED, f"{what} has control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise LogError(MALFORMED, f"{what} is not UTF-8") from exc
    return text


def key_id(name: str, public_key: bytes, signature_type: int = ALG_ED25519) -> bytes:
    """The 4-byte key hash that a signature line names: SHA-256(name || 0x0A || type || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class NoteSigner:
    """Signs notes with one named Ed25519 key."""

    def __init__(self, name: str, private_key: Signer) -> None:
        self.name = _check_name(name)
        self._key = private_key
        self.key_id = key_id(name, raw_public_key(private_key.public_key()))

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_id, self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class NoteVerifier:
    """One trusted key: its name, 4-byte id and Ed25519 public key (the vkey an auditor pins)."""

    def __init__(self, name: str, key_id_: bytes, public_key: Ed25519PublicKey) -> None:
        self.name = _check_name(name)
        self.public_key = public_key
        if key_id_ != key_id(name, raw_public_key(public_key)):
            raise LogError(WRONG_KEY, f"key id {key_id_.hex()} does not belong to key {name!r}")
        self.key_id = key_id_

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hex8+base64(0x01 || key)``."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8 or parts[1] != parts[1].lower():
            raise LogError(MALFORMED, "verifier key is not name+hash+key")
        name, hex_id, key64 = parts
        try:
            kid = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise LogError(MALFORMED, "verifier key hash is not hex") from exc
        raw = b64decode_strict(key64, "verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise LogError(MALFORMED, "verifier key is not an Ed25519 key")
        try:
            public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
        except ValueError as exc:
            raise LogError(MALFORMED, "verifier key is not an Ed25519 key") from exc
        return cls(name, kid, public_key)

    @property
    def vkey(self) -> str:
        raw = bytes([ALG_ED25519]) + raw_public_key(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def to_line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A note as written, signatures unverified: what ``parse_note`` reads and ``to_text`` writes back."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.to_line() for s in self.signatures)


def parse_note(message: str) -> Note:
    """Split a signed note into its text and signature lines, checking syntax only."""
    _check_text(message, "note")
    split = message.rfind("\n\n")
    if split < 0:
        raise LogError(MALFORMED, "note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block.endswith("\n"):
        raise LogError(MALFORMED, "note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise LogError(MALFORMED, "note has too many signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise LogError(MALFORMED, "note has a line that is not a signature")
        name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not sep:
            raise LogError(MALFORMED, "signature line has no signature")
        raw = b64decode_strict(b64, "signature")
        if len(raw) < 5:
            raise LogError(MALFORMED, "signature is too short")
        sigs.append(NoteSignature(_check_name(name), raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def sign_note(text: str, signer: NoteSigner) -> str:
    """A signed note of ``text``, which must end in a newline."""
    _check_text(text, "note text")
    if not text.endswith("\n"):
        raise LogError(MALFORMED, "note text must end with a newline")
    sig = NoteSignature(signer.name, signer.key_id, signer.sign(text.encode()))
    return Note(text, (sig,)).to_text()


def open_note(message: str, verifiers: Iterable[NoteVerifier]) -> tuple[str, list[str]]:
    """The note's text and the names of the known keys whose signatures verified; at least one must."""
    known = {(v.name, v.key_id): v for v in verifiers}
    note = parse_note(message)
    text = note.text.encode()
    verified: list[str] = []
    ignored: list[NoteSignature] = []
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            ignored.append(sig)  # an unknown key's signature: ignored, as the spec says
            continue
        if not v.verify(text, sig.signature):
            raise LogError(BAD_SIGNATURE, f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if sig.name not in verified:
            verified.append(sig.name)
    if not verified:
        for sig in ignored:  # say why, when a line is close to a trusted key
            if any(
                sig.name == v.name or sig.key_id == v.key_id or v.verify(text, sig.signature) for v in known.values()
            ):
                raise LogError(WRONG_KEY, f"{sig.name}+{sig.key_id.hex()} is not a trusted key name and id")
        raise LogError(BAD_SIGNATURE, "note has no signature from a trusted key")
    return note.text, verified
