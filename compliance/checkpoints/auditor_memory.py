"""An auditor's memory of the log: accept a newer checkpoint only when it provably extends the old one.

Once a checkpoint of an origin is remembered, OLD must be exactly that checkpoint (same size and root): a proof
from any other OLD (newer, older, or on another branch) says nothing about the history already accepted, and
would let a forked log move the memory onto the fork. OLD of the remembered size with another root is a fork
(``Log.Forked``); any other OLD is ``Log.ProveFromTrusted``: ask for a proof from the remembered size.

On any failure the two checkpoints and the proof are written to ``state/evidence/`` before the error is
raised, because a fork or a rewrite is exactly what must not be lost. The last accepted checkpoint per origin
is kept in ``state/trusted.json`` so a later rollback (a smaller or different log) is refused too.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from compliance import strict_json
from compliance.checkpoints.policy import CheckpointTrust
from compliance.ledger.checkpoint_format import Checkpoint, verify_checkpoint, verify_extends
from compliance.ledger.key_history import KeySet
from compliance.ledger.log_error import BAD_SIGNATURE, FORKED, MALFORMED, PROVE_FROM_TRUSTED, LogError
from compliance.ledger.note import NoteVerifier, b64decode_strict, key_id, parse_note, raw_public_key


def load_trusted_key(pem: bytes) -> Ed25519PublicKey:
    """The auditor's own copy of the vault's key: the only thing every offline check trusts."""
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise LogError(MALFORMED, "not a PEM public key", error=str(exc)) from None
    if not isinstance(public, Ed25519PublicKey):
        raise LogError(MALFORMED, "the public key is not an Ed25519 key")
    return public


def verifier_from_pem(note: str, pem: bytes) -> NoteVerifier:
    """Pair the trusted key with the key name its signature line uses; the key id must then agree."""
    public = load_trusted_key(pem)
    raw = raw_public_key(public)
    for signature in parse_note(note).signatures:
        if signature.key_id == key_id(signature.name, raw):
            return NoteVerifier(signature.name, signature.key_id, public)
    raise LogError(BAD_SIGNATURE, "the checkpoint carries no signature by the trusted key")


def _proof_hashes(proof_json: str) -> list[bytes]:
    try:
        hashes = strict_json.loads(proof_json)["hashes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LogError(MALFORMED, "proof must be JSON with a 'hashes' list", error=str(exc)) from None
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise LogError(MALFORMED, "proof hashes must be base64 strings")
    return [b64decode_strict(h, "proof hash") for h in hashes]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _check_old_is_remembered(old: Checkpoint, new: Checkpoint, remembered: dict[str, Any] | None) -> None:
    """OLD must be the checkpoint already trusted for this origin, if there is one."""
    if remembered is None:
        return  # first use: the auditor trusts OLD as given
    size, root = remembered["size"], base64.b64decode(remembered["root_hash"])
    details = {"trusted_size": size, "trusted_root_hash": remembered["root_hash"], "old_size": old.size}
    for which, checkpoint in (("OLD", old), ("NEW", new)):
        if checkpoint.size == size and checkpoint.root_hash != root:
            raise LogError(
                FORKED, f"{which} has the trusted checkpoint's size but another root: the log forked", **details
            )
    if old.size == size:
        return
    raise LogError(
        PROVE_FROM_TRUSTED,
        f"OLD is not the checkpoint already trusted; prove consistency from size {size} "
        f"(GET /log/proof/consistency?first={size}&second=<NEW size>) with the remembered note as OLD",
        **details,
    )


def _chain_verifier(note: str, pem: bytes, keys: KeySet | None, trust: CheckpointTrust | None) -> NoteVerifier:
    """The trusted key, or one that follows from it by the key set's rotations; a revoked key's note must be dated
    (by a trusted witness or TSA) before the compromise."""
    if keys is None:
        return verifier_from_pem(note, pem)
    history = keys.history(load_trusted_key(pem))
    verifier, period = history.verifier_for_note(note)
    (trust or CheckpointTrust()).check_key(history, period, note, None)
    return verifier


def check_consistency(
    old_note: str,
    new_note: str,
    proof_json: str,
    pem: bytes,
    state_dir: Path | None = None,
    keys: KeySet | None = None,
    trust: CheckpointTrust | None = None,
) -> tuple[Checkpoint, Checkpoint]:
    old_origin = Checkpoint.parse(parse_note(old_note).text).origin
    trusted_file = state_dir / "trusted.json" if state_dir else None
    trusted = json.loads(trusted_file.read_text()) if trusted_file and trusted_file.exists() else {}
    remembered = trusted.get(old_origin)
    try:
        old = verify_checkpoint(old_note, _chain_verifier(old_note, pem, keys, trust), old_origin)
        new = verify_checkpoint(new_note, _chain_verifier(new_note, pem, keys, trust), old_origin)
        _check_old_is_remembered(old, new, remembered)
        verify_extends(old, new, _proof_hashes(proof_json))
    except LogError as exc:
        if state_dir is not None:
            evidence = {
                "error": exc.code,
                "message": exc.message,
                "trusted": remembered.get("note") if remembered else None,
                "old": old_note,
                "new": new_note,
                "proof": proof_json,
            }
            _write_atomic(state_dir / "evidence" / f"{time.time_ns()}.json", json.dumps(evidence, indent=2))
        raise
    if trusted_file is not None:
        trusted[old_origin] = {
            "size": new.size,
            "root_hash": base64.b64encode(new.root_hash).decode(),
            "note": new_note,
        }
        _write_atomic(trusted_file, json.dumps(trusted, indent=2))
    return old, new
