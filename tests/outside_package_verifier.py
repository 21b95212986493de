"""An auditor's own check of an evidence package, written from docs/evidence-package.md (and, for the parts,
docs/evidence-formats.md) alone: it imports nothing of this project but the other outside verifier.

Only the standard library, ``cryptography`` (Ed25519) and ``rfc8785``. It checks the zip's canonical layout,
the signed manifest, every file's hash, and that the parts agree (steps 1 to 8 of the document). The PDF
signature (step 9) needs a PAdES validator; an auditor would use their own, so it is left to them here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization

from tests.outside_verifier import (
    Rejected,
    _b64,
    _ed25519_ok,
    _load_pem,
    check_checkpoint,
    check_inclusion,
    check_vkey,
    leaf_hash,
    parse_entry,
    verify_bundle,
    verify_certificate,
)

LOCAL, CENTRAL, END = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
DATE_1980_01_01 = 33


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise Rejected("a JSON object names a key twice")
    return dict(pairs)


def _json(data: bytes) -> Any:
    return json.loads(data, object_pairs_hook=_no_duplicates)


def read_canonical_zip(data: bytes) -> dict[str, bytes]:
    """Step 1: the files, in order, from a zip laid out exactly as the document says; else Rejected."""
    files: dict[str, bytes] = {}
    entries: list[tuple[str, int, int, int]] = []  # name, crc, size, offset
    at = 0
    while data[at : at + 4] == LOCAL:
        version, flags, method, time, date, crc, csize, size, nlen, xlen = struct.unpack_from(
            "<HHHHHIIIHH", data, at + 4
        )
        if (version, flags, method, time, date, xlen) != (20, 0, 0, 0, DATE_1980_01_01, 0) or csize != size:
            raise Rejected("a local header is not canonical")
        name = data[at + 30 : at + 30 + nlen].decode("ascii")
        body = data[at + 30 + nlen : at + 30 + nlen + size]
        if len(body) != size or zlib.crc32(body) != crc or name in files:
            raise Rejected("an entry's data or name is wrong")
        files[name] = body
        entries.append((name, crc, size, at))
        at += 30 + nlen + size
    directory = at
    for name, crc, size, offset in entries:
        fields = struct.unpack_from("<4sHHHHHHIIIHHHHHII", data, at)
        expected = (CENTRAL, 0x0314, 20, 0, 0, 0, DATE_1980_01_01, crc, size, size, len(name), 0, 0, 0, 0, 0x01A40000)
        if fields[:16] != expected or fields[16] != offset or data[at + 46 : at + 46 + len(name)] != name.encode():
            raise Rejected("a central directory record is not canonical")
        at += 46 + len(name)
    end = struct.unpack_from("<4sHHHHIIH", data, at)
    if end != (END, 0, 0, len(entries), len(entries), at - directory, directory, 0) or len(data) != at + 22:
        raise Rejected("the end record is not canonical, or bytes follow it")
    return files


def _check_manifest(files: dict[str, bytes], pinned_pem: bytes) -> dict[str, Any]:
    """Steps 2 and 3, for a package signed by the pinned key itself (no rotation)."""
    document = _json(files["manifest.json"])
    body, signature = document["manifest"], document["signature"]
    key = _load_pem(pinned_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if signature["alg"] != "Ed25519" or signature["key_id"] != "sha256:" + hashlib.sha256(der).hexdigest():
        raise Rejected("the manifest is not signed by the pinned key")
    if not _ed25519_ok(key, _b64(signature["value"]), rfc8785.dumps(body)):
        raise Rejected("the manifest's signature does not verify")
    if body["format"] != "evault-evidence-package/v1":
        raise Rejected("not an evault-evidence-package/v1")
    if list(files) != ["manifest.json", *(f["path"] for f in body["files"])]:
        raise Rejected("the zip's files are not the manifest's, in its order")
    for item in body["files"]:
        data = files[item["path"]]
        if hashlib.sha256(data).hexdigest() != item["sha256"] or len(data) != item["size"]:
            raise Rejected(f"{item['path']} is not the file the manifest names")
    return dict(body)


def verify_receipt(document: dict[str, Any], pinned_pem: bytes) -> dict[str, Any]:
    """evidence-formats.md §11, for a receipt signed by the pinned key, of the one kind documented there."""
    body, signature = document["receipt"], document["signature"]
    if set(document) != {"receipt", "signature"} or body["format"] != "evault-receipt/v1":
        raise Rejected("not an evault-receipt/v1")
    key = _load_pem(pinned_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if signature["key_id"] != "sha256:" + hashlib.sha256(der).hexdigest():
        raise Rejected("the receipt is not signed by the pinned key")
    if not _ed25519_ok(key, _b64(signature["value"]), rfc8785.dumps(body)):
        raise Rejected("the receipt's signature does not verify")
    checkpoints = {}
    for item in body["checkpoints"]:
        name = check_vkey(item["key"]["vkey"], key)
        origin, size, root = check_checkpoint(item["note"], name, key)
        if origin != item["origin"] or origin in checkpoints:
            raise Rejected("a receipt checkpoint's origin")
        checkpoints[origin] = (size, root)
    events = {}
    for item in body["events"]:
        size, root = checkpoints[item["log"]]
        entry = _b64(item["entry"])
        check_inclusion(leaf_hash(entry), item["leaf_index"], size, [_b64(h) for h in item["inclusion_proof"]], root)
        value = parse_entry(entry)
        if (value["index"], value["log"]) != (item["leaf_index"], item["log"].rsplit("/", 1)[-1]):
            raise Rejected("a receipt entry names another position or log")
        if value["envelope"] != body["envelope_id"] or item["role"] in events:
            raise Rejected("a receipt entry's envelope or role")
        events[item["role"]] = value
    bound = set()
    for binding in body["bindings"]:
        value: Any = events[binding["event"]]
        for token in binding["pointer"].split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            value = value.get(token) if isinstance(value, dict) else None
        if body["fields"][binding["field"]] != value or binding["field"] in bound:
            raise Rejected(f"the receipt's {binding['field']} is not what the log records")
        bound.add(binding["field"])
    release_fields = {"organisation", "released_at", "released_by", "reason", "transferee", "note"}
    release_fields |= {"authoritative_copy_id", "vaulted_at", "documents"}
    if body["kind"] != "release" or set(events) != {"vault_in", "release"} or not release_fields <= bound:
        raise Rejected("not a complete release receipt")
    return dict(body)


def verify_package(data: bytes, pinned_pem: bytes) -> dict[str, Any]:
    """The manifest, once the whole package checks out (steps 1 to 8)."""
    files = read_canonical_zip(data)
    manifest = _check_manifest(files, pinned_pem)
    envelope_id = manifest["envelope_id"]
    certificate = verify_certificate(_json(files["certificate/certificate.json"]), pinned_pem)
    bundle = _json(files["proof/bundle.json"])
    events = verify_bundle(bundle, pinned_pem)
    if bundle != certificate["ledger"]["bundle"] or bundle["envelope_id"] != envelope_id:
        raise Rejected("the bundle is not the certificate's, or another envelope's")
    if files["proof/checkpoint.txt"] != bundle["checkpoint"].encode():
        raise Rejected("proof/checkpoint.txt is not the bundle's checkpoint")
    documents = (certificate["authoritative_copy"] or {"documents": []})["documents"]
    if {p for p in files if p.startswith("documents/")} != {f"documents/{d['id']}.pdf" for d in documents}:
        raise Rejected("the documents are not the certificate's")
    for doc in documents:
        pdf = files[f"documents/{doc['id']}.pdf"]
        if (hashlib.sha256(pdf).hexdigest(), len(pdf)) != (doc["sha256"], doc["size"]):
            raise Rejected("a document is not the vaulted one")
    fields = ("id", "document_id", "sha256", "source_sha256", "issued_at")
    register = sorted(tuple(c[f] for f in fields) for c in _json(files["copies/register.json"])["copies"])
    logged = [e for e in events if e["type"] == "vault.copy_issued"]
    copies = sorted(
        (e["data"]["copy_id"], e["data"]["document_id"], e["data"]["sha256"], e["data"]["source_sha256"], e["time"])
        for e in logged
    )
    if register != copies:
        raise Rejected("the copy register is not the logged copies")
    trail = _json(files["audit/trail.json"])
    shown = [e["entry"] for e in trail["events"]]
    if (
        trail["envelope_id"] != envelope_id
        or not shown
        or shown != [e["entry"] for e in bundle["events"]][: len(shown)]
    ):
        raise Rejected("the audit trail is not the proven chain")
    for event in trail["events"]:
        try:
            raw = base64.b64decode(event["entry"], validate=True)
        except binascii.Error:
            raise Rejected("an audit entry is not base64") from None
        if event["entry_hash"] != hashlib.sha256(raw).hexdigest():
            raise Rejected("an audit row's hash is not its entry's")
    for path in (p for p in files if p.startswith("receipts/")):
        if verify_receipt(_json(files[path]), pinned_pem)["envelope_id"] != envelope_id:
            raise Rejected(f"{path} is another envelope's")
    if certificate["envelope"]["vault_state"] == "released" and "receipts/release.json" not in files:
        raise Rejected("a released record without its release receipt")
    return manifest
