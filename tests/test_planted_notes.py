"""Notes planted at checkpoint keys the log has not reached yet: reported by the verifier at once, and never
able to block checkpointing or proof bundles when the log gets there (issue 21)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.checkpoints.timestamping import verify_timestamp
from compliance.headmap.sql_store import commit_head_map
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.events import log_size
from compliance.ledger.merkle import EMPTY_ROOT
from compliance.ledger.note import NoteSigner
from compliance.verifier import audit_log, verify_vault
from storage.keys import checkpoint_key, checkpoint_key_beside, timestamp_key
from storage.settings import Settings
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from tests.ports import aux_port
from tests.test_timestamping import Pki, _Tsa, other_pki, pki  # noqa: F401  (fixtures)
from vault.runtime import Runtime, open_runtime
from vault.tenancy import create_organisation

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


@pytest.fixture
def stamped(vault_env: dict[str, str], tmp_path: Path, pki: Pki, other_pki: Pki) -> Iterator[Runtime]:  # noqa: F811
    """A vault whose checkpoints an RFC 3161 TSA of this test's own timestamps."""
    handler = type("Handler", (_Tsa,), {"pki": pki, "other": other_pki, "replay": {}})
    server = ThreadingHTTPServer(("127.0.0.1", aux_port("planted_notes")), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    (tmp_path / "tsa-roots.pem").write_bytes(pki.root_pem)
    env = {
        **vault_env,
        "EVAULT_TSA_URL": f"http://127.0.0.1:{server.server_address[1]}/tsa",
        "EVAULT_TSA_ROOTS": str(tmp_path / "tsa-roots.pem"),
    }
    opened = open_runtime(Settings.from_env(env))
    try:
        yield opened
    finally:
        opened.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_token_planted_at_the_next_timestamp_key_never_blocks(
    stamped: Runtime,
    s3_client: Any,
    pki: Pki,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = stamped
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Stamped").id
        commit_head_map(session, org_id)  # what the checkpointer does first: the log is at its next size
    size = _size(runtime, org_id)
    taken = timestamp_key(org_id, size)
    s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=taken, Body=b"not a token")
    with caplog.at_level(logging.ERROR, logger="evault.checkpoints"):
        signed = runtime.checkpoints.checkpoint_now(org_id)
    assert signed.size == size and signed.timestamp_token is not None
    assert any("Checkpoint.Forged" in r.getMessage() and taken in r.getMessage() for r in caplog.records)
    beside = f"{taken}.{hashlib.sha256(signed.timestamp_token).hexdigest()[:32]}"
    stored = runtime.authoritative.read(beside, runtime.authoritative.head(beside, None).version_id)
    assert stored == signed.timestamp_token
    verify_timestamp(stored, signed.note.encode(), pki.root_pem)
