"""The one interface every vault signature goes through, so the key may live in a file or in an HSM.

A ``Signer`` makes raw Ed25519 signatures and names its public key; nothing else in the vault touches key
material. ``FileSigner`` holds a PEM key from disk; ``compliance.ledger.pkcs11_signer.Pkcs11Signer`` asks a
PKCS#11 token (an HSM, or SoftHSM2 in the tests). A cloud KMS fits the same two members later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class Signer(Protocol):
    """Raw Ed25519 over ``data``; the private half never leaves the implementation."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


class FileSigner:
    """An Ed25519 private key read from a PEM file (the embedded default, and operators without an HSM)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def load(cls, path: Path) -> FileSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()


def create_key_file(path: Path) -> None:
    """A new Ed25519 private key in PEM, created 0600 and never over an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
