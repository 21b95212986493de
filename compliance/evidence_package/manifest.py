"""The package's manifest (every file's path, SHA-256 and size, signed like a certificate) and its zip layout.

``manifest.json`` is ``{"manifest": {...}, "signature": {"alg": "Ed25519", "key_id", "value"}}``, the signature
Ed25519 over the RFC 8785 encoding of ``manifest`` by the vault's checkpoint key. The manifest names every other
file of the zip, so a byte changed in a file changes a hash the signature covers. The zip itself has one
canonical layout (:func:`canonical_zip`), so a byte changed in its headers is found too: the checker lays the
files out again and compares.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from typing import Any

import rfc8785

from compliance.certificates.issuance import key_id_of
from compliance.ledger.vault_key import VaultKey

FORMAT = "evault-evidence-package/v1"
MANIFEST = "manifest.json"
# Paths are plain relative names: no "..", no leading "/", no backslash, nothing a zip tool could misplace.
PATH = re.compile(r"(?:[a-z0-9][a-z0-9._-]{0,99}/){0,3}[a-z0-9][a-z0-9._-]{0,99}", re.I)


def file_entry(path: str, data: bytes) -> dict[str, Any]:
    if not PATH.fullmatch(path) or ".." in path:
        raise ValueError(f"not a package path: {path!r}")
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def signed_manifest(body: dict[str, Any], key: VaultKey) -> dict[str, Any]:
    value = key.sign(rfc8785.dumps(body))
    signature = {"alg": "Ed25519", "key_id": key_id_of(key.public_key), "value": base64.b64encode(value).decode()}
    return {"manifest": body, "signature": signature}


def canonical_zip(files: dict[str, bytes]) -> bytes:
    """The files, in the given order, stored uncompressed with fixed metadata: the same files give the same bytes.

    Each entry: no compression, time 1980-01-01 00:00, made on Unix with mode 0644, no extra field, no comment.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()
