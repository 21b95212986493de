"""An auditor's own verifier, written from docs/evidence-formats.md alone: it imports nothing of this project.

Only the standard library, ``cryptography`` (Ed25519) and ``rfc8785`` (JCS). If the document is not precise
enough to write this, or the service does not do what the document says, tests/test_outside_verifier.py fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Rejected(Exception):
    """The evidence does not verify."""


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise Rejected("base64 field is not a string")
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise Rejected("non-canonical base64")
    return raw


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load_pem(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise Rejected("the pinned key is not Ed25519")
    return key


def _ed25519_ok(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except Exception:
        return False
    return True


# §2 and §3: entries and the chain -------------------------------------------------------------------------


def parse_entry(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict) or rfc8785.dumps(value) != raw:
        raise Rejected("entry is not RFC 8785 canonical JSON")
    return value


def check_chain(envelope_id: str, entries: list[bytes]) -> list[dict[str, Any]]:
    parsed, prev = [], None
    for n, raw in enumerate(entries):
        value = parse_entry(raw)
        if value.get("envelope") != envelope_id or value.get("seq") != n or value.get("prev") != prev:
            raise Rejected(f"chain broken at {n}")
        prev = hashlib.sha256(raw).hexdigest()
        parsed.append(value)
    return parsed


# §4: the Merkle tree (RFC 9162 §2.1.3.2) ------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry)


def check_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    if index >= size:
        raise Rejected("leaf index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Rejected("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise Rejected("inclusion proof does not verify")


# §5: checkpoints as signed notes --------------------------------------------------------------------------


def _key_id(name: str, raw_key: bytes) -> bytes:
    return _sha256(name.encode() + b"\n" + b"\x01" + raw_key)[:4]


def check_vkey(vkey: str, pinned: Ed25519PublicKey) -> str:
    """The vkey's name, once its key is the pinned one and its key id is right."""
    name, hex_id, key64 = vkey.split("+", 2)
    raw = _b64(key64)
    if raw[:1] != b"\x01" or raw[1:] != _raw(pinned):
        raise Rejected("the bundle's key is not the pinned key")
    if bytes.fromhex(hex_id) != _key_id(name, raw[1:]):
        raise Rejected("vkey key id does not match")
    return name


def check_checkpoint(note: str, name: str, key: Ed25519PublicKey) -> tuple[str, int, bytes]:
    """(origin, size, root) of a note signed by ``name``'s key."""
    split = note.rfind("\n\n")
    body, signatures = note[: split + 1], note[split + 2 :].splitlines()
    kid = _key_id(name, _raw(key))
    signed = False
    for line in signatures:
        if not line.startswith("\u2014 "):
            raise Rejected("not a signature line")
        who, _, b64 = line[2:].partition(" ")
        raw = _b64(b64)
        if who == name and raw[:4] == kid:
            if not _ed25519_ok(key, raw[4:], body.encode()):
                raise Rejected("checkpoint signature does not verify")
            signed = True
    if not signed:
        raise Rejected("no signature by the pinned key")
    lines = body[:-1].split("\n")
    return lines[0], int(lines[1]), _b64(lines[2])


# §6: the head map -----------------------------------------------------------------------------------------


def _m(data: bytes) -> bytes:
    return hashlib.new("sha512_256", data).digest()


def tree_id(org_id: str) -> int:
    return int.from_bytes(_sha256(b"evault head map v1\x00" + org_id.encode())[:8], "big") >> 1


def _node_id(key: int, depth: int) -> bytes:
    """The first ``depth`` bits of the 256-bit ``key``, the rest zero, as 32 bytes."""
    mask = ((1 << depth) - 1) << (256 - depth) if depth else 0
    return (key & mask).to_bytes(32, "big")


def _empty(tid: int, key: int, depth: int) -> bytes:
    return _m(b"E" + tid.to_bytes(8, "big") + _node_id(key, depth) + depth.to_bytes(4, "big"))


def _leaf(tid: int, key: int, depth: int, seq: int, entry_hash: bytes) -> bytes:
    value = key.to_bytes(32, "big") + seq.to_bytes(8, "big") + entry_hash
    return _m(b"L" + tid.to_bytes(8, "big") + _node_id(key, depth) + depth.to_bytes(4, "big") + value)


def check_map_proof(org_id: str, envelope_id: str, proof: dict[str, Any], root: bytes) -> tuple[int, bytes] | None:
    """The (seq, entry hash) the map holds for the envelope, or None if it proves it absent."""
    tid, k = tree_id(org_id), int.from_bytes(_sha256(envelope_id.encode()), "big")
    siblings = proof["siblings"]
    depth = len(siblings)
    if not 1 <= depth <= 256:
        raise Rejected("map proof depth")
    leaf = proof["leaf"]
    if leaf is None:
        node, held = _empty(tid, k, depth), None
    else:
        leaf_key = int(leaf["key"], 16)
        if _node_id(leaf_key, depth) != _node_id(k, depth):
            raise Rejected("map leaf off the key's path")
        node = _leaf(tid, leaf_key, depth, leaf["seq"], bytes.fromhex(leaf["entry_hash"]))
        held = (leaf["seq"], bytes.fromhex(leaf["entry_hash"])) if leaf_key == k else None
    for d in range(depth, 0, -1):
        bit = (k >> (256 - d)) & 1
        sibling_hex = siblings[d - 1]
        sibling = bytes.fromhex(sibling_hex) if sibling_hex is not None else _empty(tid, k ^ (1 << (256 - d)), d)
        node = _m(sibling + node) if bit else _m(node + sibling)
    if node != root:
        raise Rejected("map proof does not reach the committed root")
    return held


# §7: proof bundles ----------------------------------------------------------------------------------------


def verify_bundle(bundle: dict[str, Any], pinned_pem: bytes) -> list[dict[str, Any]]:
    """The envelope's events, proven complete (v3: up to the hand-off when the last is one); raise Rejected
    otherwise."""
    if bundle.get("format") == "evault-proof-bundle/v3":
        return verify_bundle_v3(bundle, pinned_pem)
    if bundle.get("format") != "evault-proof-bundle/v2":
        raise Rejected("not a v2 bundle: completeness cannot be proven")
    key = _load_pem(pinned_pem)
    name = check_vkey(bundle["key"]["vkey"], key)
    origin, size, root = check_checkpoint(bundle["checkpoint"], name, key)
    if origin != bundle["origin"]:
        raise Rejected("checkpoint origin differs")
    org_id = origin.rsplit("/", 1)[-1]

    def included(item: dict[str, Any]) -> bytes:
        entry = _b64(item["entry"])
        proof = [_b64(h) for h in item["inclusion_proof"]]
        check_inclusion(leaf_hash(entry), item["leaf_index"], size, proof, root)
        return entry

    entries = [included(item) for item in bundle["events"]]
    events = check_chain(bundle["envelope_id"], entries)
    for item, event in zip(bundle["events"], events, strict=True):
        if event["index"] != item["leaf_index"] or event["log"] != org_id:
            raise Rejected("entry proven at another position or log")
    map_item = bundle["map"]["entry"]
    commit = parse_entry(included(map_item))
    version = commit["data"]["version"]
    if map_item["leaf_index"] != size - 1 or commit["index"] != size - 1 or commit["log"] != org_id:
        raise Rejected("the map commit is not the checkpoint's last entry")
    if commit["type"] != "map.root" or commit["envelope"] is not None or not 0 <= version <= commit["index"]:
        raise Rejected("not a map.root commit")
    if any(item["leaf_index"] >= version for item in bundle["events"]):
        raise Rejected("events beyond the mapped version")
    held = check_map_proof(
        org_id, bundle["envelope_id"], bundle["map"]["proof"], bytes.fromhex(commit["data"]["map_root"])
    )
    if held is None:
        if events:
            raise Rejected("map says absent, bundle shows events")
    elif held != (len(events) - 1, _sha256(entries[-1]) if entries else b""):
        raise Rejected("the history is not complete: the map names another head")
    return events


# §7.1: a history across logs -------------------------------------------------------------------------------


def _hand_off(event: dict[str, Any]) -> str | None:
    data = event.get("data") or {}
    return data.get("next_log") if event.get("type") == "transfer.completed" else None


def verify_bundle_v3(bundle: dict[str, Any], pinned_pem: bytes) -> list[dict[str, Any]]:
    key = _load_pem(pinned_pem)
    logs: dict[str, tuple[int, bytes]] = {}
    for item in bundle["logs"]:  # step 2
        name = check_vkey(item["key"]["vkey"], key)
        origin, size, root = check_checkpoint(item["checkpoint"], name, key)
        if origin != item["origin"] or origin in logs:
            raise Rejected("a log's checkpoint has another origin, or a log is listed twice")
        logs[origin] = (size, root)
    if len({o.rsplit("/", 1)[0] for o in logs}) != 1:
        raise Rejected("logs of different vaults")
    final = [i for i in bundle["logs"] if i["origin"] == bundle["origin"]]
    if not final or any(bundle[k] != final[0][k] for k in ("checkpoint", "key", "timestamp_token")):
        raise Rejected("the top level is not the final log's checkpoint")

    def included(item: dict[str, Any], origin: str) -> bytes:
        if origin not in logs:
            raise Rejected("an entry of a log the bundle carries no checkpoint of")
        size, root = logs[origin]
        entry = _b64(item["entry"])
        check_inclusion(leaf_hash(entry), item["leaf_index"], size, [_b64(h) for h in item["inclusion_proof"]], root)
        return entry

    items = bundle["events"]
    entries = [included(item, item["log"]) for item in items]  # step 3
    events = check_chain(bundle["envelope_id"], entries)  # step 4
    org = [item["log"].rsplit("/", 1)[-1] for item in items]
    for item, event, org_id in zip(items, events, org, strict=True):
        if event["index"] != item["leaf_index"] or event["log"] != org_id:
            raise Rejected("entry proven at another position or log")
    for i in range(1, len(events)):  # step 5
        before, after = events[i - 1], events[i]
        if org[i] != org[i - 1]:
            data = after["data"]
            if (
                _hand_off(before) != org[i]
                or before["data"].get("controller") != org[i]
                or after["type"] != "transfer.arrived"
                or data.get("log") != org[i - 1]
                or data.get("leaf_index") != before["index"]
                or data.get("entry_hash") != _sha256(entries[i - 1]).hex()
                or data.get("transfer_id") != before["data"].get("transfer_id")
            ):
                raise Rejected("a change of log that is not a hand-off and its arrival")
        elif _hand_off(before) is not None or after["type"] == "transfer.arrived":
            raise Rejected("the chain goes on in a log it was handed out of")
    if not items or items[-1]["log"] != bundle["origin"]:  # step 6
        raise Rejected("the chain goes on in a log the bundle leaves out")
    runs: list[list[int]] = []
    for i in range(len(items)):
        if i and org[i] == org[i - 1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) != len(bundle["segments"]):  # step 7
        raise Rejected("another number of segments than the chain has")
    for number, (run, segment) in enumerate(zip(runs, bundle["segments"], strict=True)):
        origin, first, last = items[run[0]]["log"], run[0], run[-1]
        if (segment["log"], segment["first_seq"], segment["last_seq"]) != (origin, first, last):
            raise Rejected("a segment is missing or misplaced")
        present = number == len(runs) - 1 and _hand_off(events[last]) is None  # step 8
        commit = parse_entry(included(segment["map"]["entry"], origin))
        version, index = commit["data"]["version"], commit["index"]
        if commit["type"] != "map.root" or commit["envelope"] is not None or commit["log"] != org[last]:
            raise Rejected("not a map.root commit of the segment's log")
        if index != segment["map"]["entry"]["leaf_index"] or not 0 <= version <= index:
            raise Rejected("the map commit names another position or an invalid version")
        if (present and index != logs[origin][0] - 1) or (not present and version != index):
            raise Rejected("the map commit is not where the segment needs it")
        if any(items[i]["leaf_index"] >= version for i in run):
            raise Rejected("events beyond the mapped version")
        held = check_map_proof(
            org[last], bundle["envelope_id"], segment["map"]["proof"], bytes.fromhex(commit["data"]["map_root"])
        )
        if held != (last, _sha256(entries[last])):
            raise Rejected("the map's head in the segment's log is not its last event")
        if number < len(runs) - 1 and _hand_off(events[last]) is None:
            raise Rejected("a segment ends without a hand-off")
    return events


# §8: certificates -----------------------------------------------------------------------------------------


def _last(events: list[dict[str, Any]], *types: str) -> dict[str, Any] | None:
    found = [e for e in events if e["type"] in types]
    return found[-1] if found else None


def _bag(items: list[dict[str, Any]], keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """A list compared by count and content, order aside."""
    return sorted(tuple(json.dumps(item.get(k), sort_keys=True) for k in keys) for item in items)


def _check_beside(body: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Amendments and paper-in attestations: each one exactly as its event says, in the log's order."""
    amendments = [
        {
            "id": e["data"]["amendment_id"],
            "type": e["data"]["type"],
            "recorded_at": e["time"],
            "data": e["data"]["data"],
            "documents": [
                {k: d[k] for k in ("id", "filename", "sha256", "size", "bucket", "key", "version_id")}
                for d in e["data"]["documents"]
            ],
        }
        for e in events
        if e["type"] == "vault.amended"
    ]
    if body.get("amendments", []) != amendments:
        raise Rejected("amendments are not exactly the logged ones")
    attestations = [
        {
            "id": e["data"]["attestation_id"],
            "original": e["data"]["original"],
            "at": e["data"]["at"],
            "location": e["data"].get("location"),
            "attested_by": e["data"]["attested_by"],
            "recorded_at": e["time"],
        }
        for e in events
        if e["type"] == "vault.paper_in_attested"
    ]
    if body.get("paper_in_attestations", []) != attestations:
        raise Rejected("paper-in attestations are not exactly the logged ones")


def _check_claims(body: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """§8 step 3: every claim follows from the proven events."""
    created, vaulted = _last(events, "envelope.created"), _last(events, "vault.vaulted_in")
    released = _last(events, "vault.released")
    envelope = body["envelope"]
    for field in ("kind", "title", "external_id"):
        if created is None or envelope[field] != created["data"].get(field):
            raise Rejected(f"envelope {field} is not the created event's")
    if envelope.get("min") != created["data"].get("min"):
        raise Rejected("the MIN is not the one the created event registered")
    _check_beside(body, events)
    state = "released" if released else "vaulted" if vaulted else "not_vaulted"
    if envelope["vault_state"] != state:
        raise Rejected("vault state does not follow from the chain")
    copy = body["authoritative_copy"]
    if (vaulted is None) != (copy is None):
        raise Rejected("authoritative copy and vault-in disagree")
    document_keys = ("id", "filename", "sha256", "size", "bucket", "key", "version_id")
    if vaulted is not None:
        data = vaulted["data"]
        claimed = (copy["id"], copy["source"], copy["vaulted_at"])
        if claimed != (data["authoritative_copy_id"], data["source"], vaulted["time"]):
            raise Rejected("the authoritative copy is not the vault-in event's")
        extended = _last(events, "vault.vaulted_in", "vault.retention_extended")
        if extended is None or copy["retain_until"] != extended["data"]["retain_until"]:
            raise Rejected("retain_until is not the last date the log set")
        hold = _last(events, "vault.legal_hold_set", "vault.legal_hold_cleared")
        in_force = hold if hold is not None and hold["type"] == "vault.legal_hold_set" else None
        expected_hold = None if in_force is None else {"reason": in_force["data"]["reason"], "since": in_force["time"]}
        if copy["legal_hold"] != expected_hold:
            raise Rejected("the legal hold is not the one the log has in force")
        if _bag(copy["documents"], document_keys) != _bag(data["documents"], document_keys):
            raise Rejected("documents differ from the vault-in event")
        logged = [{"document_id": d["id"], "result": d.get("signatures")} for d in data["documents"]]
        if _bag(body["signatures"], ("document_id", "result")) != _bag(logged, ("document_id", "result")):
            raise Rejected("signature results differ from the vault-in event")
    elif body["signatures"]:
        raise Rejected("signature results without a vault-in")
    assignees = [e for e in events if e["type"] in ("vault.vaulted_in", "vault.assignee_changed")]
    history = [
        {"seq": e["seq"], "type": e["type"], "time": e["time"], "secured_party": e["data"].get("secured_party")}
        for e in assignees
    ]
    keys = ("seq", "type", "time", "secured_party")
    if _bag(body["assignee_history"], keys) != _bag(history, keys):
        raise Rejected("assignee history is not the logged one")
    if body["assignee_of_record"] != (history[-1]["secured_party"] if history else None):
        raise Rejected("assignee of record is not the logged one")
    issued = [
        {"id": e["data"]["copy_id"], "document_id": e["data"]["document_id"], "sha256": e["data"]["sha256"]}
        | {"issued_at": e["time"]}
        for e in events
        if e["type"] == "vault.copy_issued"
    ]
    if _bag(body["copies"], ("id", "document_id", "sha256", "issued_at")) != _bag(
        issued, ("id", "document_id", "sha256", "issued_at")
    ):
        raise Rejected("copies are not exactly the logged ones")
    out = body["vault_out"]
    if (released is None) != (out is None):
        raise Rejected("vault-out disagrees with the ledger")
    if released is not None:
        details = {k: released["data"][k] for k in ("transferee", "note") if k in released["data"]}
        if (out["at"], out["reason"], out["details"] or {}) != (released["time"], released["data"]["reason"], details):
            raise Rejected("vault-out is not the logged release")


def verify_certificate(document: dict[str, Any], pinned_pem: bytes) -> dict[str, Any]:
    """The certificate body, once its signature, its bundle and every claim check out."""
    body, signature = document["certificate"], document["signature"]
    key = _load_pem(pinned_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if signature["alg"] != "Ed25519" or signature["key_id"] != "sha256:" + hashlib.sha256(der).hexdigest():
        raise Rejected("certificate not signed by the pinned key")
    if not _ed25519_ok(key, _b64(signature["value"]), rfc8785.dumps(body)):
        raise Rejected("certificate signature does not verify")
    if body["format"] != "evault-certificate/v1":
        raise Rejected("certificate format")
    ledger = body["ledger"]
    bundle = ledger["bundle"]
    events = verify_bundle(bundle, pinned_pem)
    if body["envelope"]["id"] != bundle["envelope_id"] or ledger["checkpoint"]["note"] != bundle["checkpoint"]:
        raise Rejected("certificate and bundle disagree on envelope or checkpoint")
    if events:
        last = bundle["events"][-1]
        head = {
            "seq": len(events) - 1,
            "leaf_index": last["leaf_index"],
            "entry_hash": hashlib.sha256(_b64(last["entry"])).hexdigest(),
        }
        if ledger["chain_head"] != head:
            raise Rejected("chain head is not the last proven event")
    elif ledger["chain_head"] is not None:
        raise Rejected("chain head without events")
    _check_claims(body, events)
    results = body["conditions"]["conditions"]
    statuses = [r["status"] for r in results]
    if sorted(r["condition"] for r in results) != ["1", "2", "3", "4", "5", "6"]:
        raise Rejected("not six conditions")
    order = ("fail", "pending", "released")
    verdict = "fail" if not statuses else next((s for s in order if s in statuses), "pass")
    if body["conditions"]["verdict"] != verdict:
        raise Rejected("verdict does not follow from the conditions")
    return dict(body)
