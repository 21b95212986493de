"""The vault's Ed25519 key: signs checkpoints, certificates and report-key endorsements, through a ``Signer``.

In the embedded default it is generated on first start into the data directory (0600); in production it is
configured (``EVAULT_SIGNING_KEY``) and a missing file stops the start instead of silently minting a new key.
The public half is written beside it (``<key>.pub``, PEM) so that checks which must not hold the private key
(``evault verify`` beside the live service) can find it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from compliance.ledger.note import NoteSigner, NoteVerifier, key_id, raw_public_key
from compliance.ledger.signer import FileSigner, Signer, create_key_file

log = logging.getLogger("evault.signing")


class SigningKeyError(RuntimeError):
    pass


@dataclass(frozen=True)
class VaultKey:
    name: str
    signer: Signer

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signer.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.signer.sign(data)

    @property
    def note_signer(self) -> NoteSigner:
        return NoteSigner(self.name, self.signer)

    @property
    def note_verifier(self) -> NoteVerifier:
        return self.note_signer.verifier()

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def load_or_create_key(path: Path, name: str, *, create: bool) -> VaultKey:
    if not path.exists():
        if not create:
            raise SigningKeyError(f"signing key {path} does not exist (set EVAULT_SIGNING_KEY to a PEM Ed25519 key)")
        create_key_file(path)
    try:
        signer = FileSigner.load(path)
    except ValueError as exc:
        raise SigningKeyError(f"signing key {path}: {exc}") from exc
    vault_key = VaultKey(name=name, signer=signer)
    _write_public_key(public_key_path(path), vault_key.public_pem().encode())
    return vault_key


def discard_key_file(path: Path) -> None:
    """Remove a key file this start made, and its public half, once it is known to sign nothing: a process that
    lost the race to record the first key would otherwise keep one that no generation names."""
    path.unlink(missing_ok=True)
    public_key_path(path).unlink(missing_ok=True)


def public_key_path(private_key_path: Path) -> Path:
    """Where the public half of the key at ``private_key_path`` is kept: ``x.pem`` -> ``x.pub``, else ``x.pub``
    appended, so the private key is never the target."""
    if private_key_path.suffix == ".pem":
        return private_key_path.with_suffix(".pub")
    return private_key_path.with_name(private_key_path.name + ".pub")


def _write_public_key(path: Path, pem: bytes) -> None:
    """Keep ``path`` equal to the loaded key's public half; a read-only key directory only costs a warning."""
    try:
        if path.exists() and path.read_bytes() == pem:
            return
        tmp = path.with_suffix(".pub.tmp")
        tmp.write_bytes(pem)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write the public key to %s (set EVAULT_PUBLIC_KEY for evault verify): %s", path, exc)


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def checkpoint_verifier(pem: bytes, name: str) -> NoteVerifier:
    """The verifier of the vault's checkpoints from its public key alone (no private key needed)."""
    public = load_public_key(pem)
    return NoteVerifier(name, key_id(name, raw_public_key(public)), public)
