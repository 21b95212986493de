"""C2SP tlog-checkpoint: ``origin\\nsize\\nbase64(root)\\n`` plus extension lines, signed as a note.

``Checkpoint`` validates itself when built, so a malformed checkpoint cannot exist in memory; ``parse`` is
strict so that parse → serialise gives back the same bytes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from compliance.ledger.log_error import MALFORMED, WRONG_ORIGIN, LogError
from compliance.ledger.merkle import HASH_SIZE, verify_consistency
from compliance.ledger.note import NoteSigner, NoteVerifier, b64decode_strict, open_note, sign_note

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
MAX_SIZE = (1 << 64) - 1


def _check_line(value: str, what: str) -> None:
    if not value or not value.isprintable():
        raise LogError(MALFORMED, f"checkpoint {what} must be a non-empty printable line")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size <= MAX_SIZE:
            raise LogError(MALFORMED, "checkpoint size must be an integer in 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise LogError(MALFORMED, "checkpoint root hash must be 32 bytes")
        for ext in self.extensions:
            _check_line(ext, "extension line")

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise LogError(MALFORMED, "checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise LogError(MALFORMED, "checkpoint needs origin, size and root hash lines")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise LogError(MALFORMED, "checkpoint size is not a canonical decimal number")
        return cls(origin, int(size), b64decode_strict(root, "checkpoint root hash"), tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    return sign_note(checkpoint.to_text(), signer)


def verify_checkpoint(note: str, verifier: NoteVerifier, origin: str) -> Checkpoint:
    """The checkpoint in ``note``, once its signature by ``verifier`` and its origin are checked."""
    text, _ = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(text)
    if checkpoint.origin != origin:
        raise LogError(WRONG_ORIGIN, f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


def verify_extends(trusted: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Accept ``new`` only as an append-only extension of ``trusted`` of the same log."""
    if new.origin != trusted.origin:
        raise LogError(WRONG_ORIGIN, f"checkpoint is for log {new.origin!r}, not {trusted.origin!r}")
    verify_consistency(trusted.size, new.size, proof, trusted.root_hash, new.root_hash)
