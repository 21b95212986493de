"""Notes planted at checkpoint keys the log has not reached yet: reported by the verifier at once, and never
able to block checkpointing or proof bundles when the log gets there (issue 21)."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.events import log_size
from compliance.ledger.merkle import EMPTY_ROOT
from compliance.ledger.note import NoteSigner
from compliance.verifier import audit_log, verify_vault
from storage.keys import checkpoint_key, checkpoint_key_beside
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime

AHEAD = 6


def _plant(runtime: Runtime, s3_client: Any, org_id: str, size: int) -> None:
    """What someone holding the bucket's admin credentials can write: a note under the vault's key name,
    signed by another key (without the vault's key, nothing better can be made)."""
    forger = NoteSigner(runtime.settings.vault.key_name, Ed25519PrivateKey.generate())
    note = sign_checkpoint(Checkpoint(runtime.checkpoints.origin(org_id), size, EMPTY_ROOT), forger)
    s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=checkpoint_key(org_id, size), Body=note.encode())


def _size(runtime: Runtime, org_id: str) -> int:
    with runtime.db.read_session() as session:
        return log_size(session, org_id)


def test_notes_ahead_of_the_log_are_reported_and_never_block(
    client: Any, runtime: Runtime, tenant: Any, s3_client: Any
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    now = _size(runtime, org_id)
    planted = list(range(now + 1, now + 1 + AHEAD))
    for size in planted:
        _plant(runtime, s3_client, org_id, size)

    ahead = [(f.code, f.details["size"]) for f in audit_log(runtime.sources(), org_id)]
    assert ahead == [("Checkpoint.AheadOfLog", size) for size in planted]

    # The log grows through every planted size; each checkpoint and proof bundle on the way is signed anyway.
    signed = []
    while _size(runtime, org_id) <= planted[-1]:
        create_envelope(client, headers)
        answer = client.post(f"{API}/log/checkpoint", headers=headers)
        assert answer.status_code == 200, answer.text
        signed.append(answer.json())
        assert client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).status_code == 200
    bypassed = [c for c in signed if c["size"] in planted]
    assert bypassed, "the test must sign at a planted size"
    for checkpoint in bypassed:
        digest = hashlib.sha256(checkpoint["note"].encode()).hexdigest()
        assert checkpoint["worm_key"] == checkpoint_key_beside(org_id, checkpoint["size"], digest)

    # Every planted note is still reported, now as what it is at a size the log has reached.
    findings = audit_log(runtime.sources(), org_id)
    forged = {f.details["size"] for f in findings if f.code == "Checkpoint.Forged"}
    assert forged == set(planted)
    assert {f.code for f in findings} <= {"Checkpoint.Forged", "Checkpoint.Missing", "Checkpoint.Unlocked"}
    missing = {f.details["size"] for f in findings if f.code == "Checkpoint.Missing"}
    assert missing == set(planted) - {c["size"] for c in bypassed}  # planted where no checkpoint was signed
    # The whole run agrees, and finds the notes written beside the planted ones where the vault writes.
    everything = verify_vault(runtime.sources())["findings"]
    assert {f["code"] for f in everything} <= {"Checkpoint.Forged", "Checkpoint.Missing", "Checkpoint.Unlocked"}
