"""The ledger end to end: chains, checkpoints in WORM, proof bundles checked offline, and forgeries caught."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlmodel import select

from compliance.bundles.proof_bundle import verify_bundle
from compliance.checkpoints.publisher import CHECKPOINT_FORGED, tree_for
from compliance.headmap.sql_store import commit_head_map
from compliance.ledger.chain import verify_chain
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.events import log_size
from compliance.ledger.log_error import LogError
from compliance.ledger.note import NoteSigner
from compliance.verifier import audit_log
from storage.keys import checkpoint_key, checkpoint_key_beside
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event
from tests.helpers import API, create_envelope, disarm_triggers, upload
from tests.pdf_factory import make_pdf
from vault.cli.main import main
from vault.runtime import Runtime


def _busy_envelope(client: Any, headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert (
        client.post(
            f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "paper_out"}, headers=headers
        ).status_code
        == 200
    )
    return envelope_id


def _codes(runtime: Runtime, org_id: str) -> set[str]:
    return {finding.code for finding in audit_log(runtime.sources(), org_id)}


def test_chain_links_every_event_and_checkpoint_lands_in_worm(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    with runtime.db.session() as session:
        events = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(Event.chain_seq)).all()
    parsed = verify_chain(envelope_id, [e.entry for e in events])
    assert [p["type"] for p in parsed] == [
        "envelope.created",
        "vault.vaulted_in",
        "vault.retrieval_issued",
        "vault.copy_issued",
        "vault.released",
    ]
    checkpoint = client.get(f"{API}/log/checkpoint", headers=headers).json()
    assert checkpoint["size"] == events[-1].leaf_index + 2  # the last entry signed is the map.root commit
    stored = runtime.s3_client.get_object(
        Bucket=runtime.authoritative.bucket, Key=checkpoint["worm_key"], VersionId=checkpoint["worm_version_id"]
    )
    assert stored["Body"].read().decode() == checkpoint["note"]
    assert stored["ObjectLockMode"] == "COMPLIANCE"
    assert _codes(runtime, org_id) == set()


def test_bundle_verifies_offline_with_only_the_public_key(
    client: Any, runtime: Runtime, tenant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert bundle.status_code == 200, bundle.text
    keys = client.get("/.well-known/evault/keys").json()["keys"][0]
    (tmp_path / "bundle.json").write_text(bundle.text)
    (tmp_path / "vault.pem").write_text(keys["pem"])
    assert main(["log", "verify", str(tmp_path / "bundle.json"), "--public-key", str(tmp_path / "vault.pem")]) == 0
    assert "complete: event 4 is the envelope's head at checkpoint size" in capsys.readouterr().out

    tampered = bundle.json()
    tampered["events"][1]["entry"] = tampered["events"][2]["entry"]
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(tampered), keys["pem"].encode())
    assert caught.value.code == "Log.InvalidProof"
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    assert main(["log", "verify", str(tmp_path / "bad.json"), "--public-key", str(tmp_path / "vault.pem")]) == 1
    dropped = bundle.json()
    del dropped["events"][2]
    with pytest.raises(LogError) as broken:
        verify_bundle(json.dumps(dropped), keys["pem"].encode())
    assert broken.value.code == "Chain.Broken"


def test_bundle_without_its_vault_out_is_refused_as_incomplete(
    client: Any, tenant: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()
    pem = client.get("/.well-known/evault/keys").json()["keys"][0]["pem"]
    (tmp_path / "vault.pem").write_text(pem)
    truncated = {**bundle, "events": bundle["events"][:-1]}  # vault.released cut off: the chain alone still links
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(truncated), pem.encode())
    assert caught.value.code == "Log.Incomplete"
    (tmp_path / "cut.json").write_text(json.dumps(truncated))
    assert main(["log", "verify", str(tmp_path / "cut.json"), "--public-key", str(tmp_path / "vault.pem")]) == 1
    assert "Log.Incomplete" in capsys.readouterr().err
    # Relabelled as v1 (no map), the same cut history proves a prefix only: refused unless the caller accepts that.
    v1 = {key: value for key, value in truncated.items() if key != "map"} | {"format": "evault-proof-bundle/v1"}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    command = ["log", "verify", str(tmp_path / "v1.json"), "--public-key", str(tmp_path / "vault.pem")]
    assert main(command) == 1
    refused = capsys.readouterr()
    assert "Log.CompletenessNotProven" in refused.err and "complete:" not in refused.out
    assert main([*command, "--allow-incomplete"]) == 0
    out = capsys.readouterr().out
    assert "events 0..3" in out and "completeness NOT proven (v1 bundle" in out and "complete:" not in out


@pytest.mark.parametrize("forgery", ["head_seq", "map_root_in_entry", "no_map"])
def test_bundle_with_a_forged_map_is_refused(client: Any, tenant: Any, forgery: str) -> None:
    _, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()
    pem = client.get("/.well-known/evault/keys").json()["keys"][0]["pem"].encode()
    bundle["events"] = bundle["events"][:-1]
    if forgery == "head_seq":  # make the map "agree" with the cut history
        bundle["map"]["proof"]["leaf"]["seq"] = 3
        bundle["map"]["proof"]["leaf"]["entry_hash"] = hashlib.sha256(
            base64.b64decode(bundle["events"][-1]["entry"])
        ).hexdigest()
    elif forgery == "map_root_in_entry":  # rewrite the committed root itself
        entry = json.loads(base64.b64decode(bundle["map"]["entry"]["entry"]))
        entry["data"]["map_root"] = "00" * 32
        bundle["map"]["entry"]["entry"] = base64.b64encode(rfc8785.dumps(entry)).decode()
    else:
        del bundle["map"]
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(bundle), pem)
    assert caught.value.code == {"head_seq": "Log.InvalidProof", "map_root_in_entry": "Log.InvalidProof"}.get(
        forgery, "Log.Malformed"
    )


def test_bundle_endpoint_commits_a_fresh_map_for_a_newer_head(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    before = client.post(f"{API}/log/checkpoint", headers=headers).json()
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers).status_code == 200
    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    pem = client.get("/.well-known/evault/keys").json()["keys"][0]["pem"].encode()
    result = verify_bundle(bundle.text, pem)
    assert result.completeness is not None and result.completeness.head_seq == 2
    assert result.checkpoint.size > before["size"]
    assert _codes(runtime, org_id) == set()


def test_consistency_between_two_checkpoints_via_cli(client: Any, tenant: Any, tmp_path: Path) -> None:
    _, headers = tenant
    _busy_envelope(client, headers)
    old = client.post(f"{API}/log/checkpoint", headers=headers).json()
    _busy_envelope(client, headers)
    new = client.post(f"{API}/log/checkpoint", headers=headers).json()
    proof = client.get(
        f"{API}/log/proof/consistency", params={"first": old["size"], "second": new["size"]}, headers=headers
    )
    pem = client.get("/.well-known/evault/keys").json()["keys"][0]["pem"]
    for name, content in {"old": old["note"], "new": new["note"], "proof": proof.text, "pem": pem}.items():
        (tmp_path / name).write_text(content)
    args = [
        str(tmp_path / "old"),
        str(tmp_path / "new"),
        "--proof",
        str(tmp_path / "proof"),
        "--public-key",
        str(tmp_path / "pem"),
        "--state",
        str(tmp_path / "state"),
    ]
    assert main(["log", "consistency", *args]) == 0
    # Swapped: the newer checkpoint cannot be "extended" by the older one; evidence is kept.
    swapped = [args[1], args[0], *args[2:]]
    assert main(["log", "consistency", *swapped]) == 1
    assert list((tmp_path / "state" / "evidence").iterdir())


@pytest.mark.parametrize("fault", ["edit_entry", "delete_entry", "edit_checkpoint_row", "drop_checkpoint_row"])
def test_database_tampering_is_detected_against_worm(client: Any, runtime: Runtime, tenant: Any, fault: str) -> None:
    org_id, headers = tenant
    envelope_id = _busy_envelope(client, headers)
    client.post(f"{API}/log/checkpoint", headers=headers)
    assert _codes(runtime, org_id) == set()
    with runtime.db.session() as session:
        disarm_triggers(session, "event")  # the database refuses these edits: this attacker owns it
        disarm_triggers(session, "checkpoint")
        target = session.exec(select(Event).where(Event.envelope_id == envelope_id, Event.chain_seq == 2)).one()
        if fault == "edit_entry":
            target.entry = target.entry.replace(b"retrieval_issued", b"retrieval_isXued")
            session.add(target)
        elif fault == "delete_entry":
            session.execute(text("DELETE FROM event WHERE id = :id"), {"id": target.id})
        else:
            row = session.exec(select(CheckpointRow).where(CheckpointRow.org_id == org_id)).first()
            assert row is not None
            if fault == "edit_checkpoint_row":
                row.note = row.note.replace("\n\n", "\nforged\n\n", 1)
                session.add(row)
            else:
                session.delete(row)
    expected = {
        "edit_entry": {"Log.EntryEdited", "Chain.Broken", "Log.RootMismatch"},
        "delete_entry": {"Log.EntriesMissing", "Chain.Broken", "Log.RootMismatch"},
        "edit_checkpoint_row": {"Checkpoint.Mismatch"},
        "drop_checkpoint_row": {"Checkpoint.Missing"},
    }[fault]
    assert expected <= _codes(runtime, org_id)


def _forged_note(runtime: Runtime, org_id: str, size: int, forgery: str) -> bytes:
    """A note for ``size`` of ``org_id``'s log that is not the vault's checkpoint of that tree."""
    with runtime.db.read_session() as session:
        root, earlier_root = tree_for(session, org_id, size).root(), tree_for(session, org_id, size - 1).root()
    origin, name = runtime.checkpoints.origin(org_id), runtime.settings.vault.key_name
    if forgery == "unsigned":  # the right checkpoint text, without any signature
        return (Checkpoint(origin, size, root).to_text() + "\n").encode()
    if forgery == "other_key":  # the right tree, signed by a key of the same name that is not the vault's
        return sign_checkpoint(Checkpoint(origin, size, root), NoteSigner(name, Ed25519PrivateKey.generate())).encode()
    signer = runtime.key.note_signer  # the two below would need the vault's key: they stand for a replay
    if forgery == "other_origin":  # another log's checkpoint of the same size and root
        return sign_checkpoint(Checkpoint(origin + "x", size, root), signer).encode()
    return sign_checkpoint(Checkpoint(origin, size, earlier_root), signer).encode()  # wrong_root


@pytest.mark.parametrize("forgery", ["unsigned", "other_key", "other_origin", "wrong_root"])
def test_a_note_planted_at_the_next_checkpoint_key_is_never_adopted_and_never_blocks(
    client: Any, runtime: Runtime, tenant: Any, s3_client: Any, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    org_id, headers = tenant
    _busy_envelope(client, headers)
    honest = client.post(f"{API}/log/checkpoint", headers=headers).json()
    create_envelope(client, headers)
    with runtime.db.session() as session:
        commit_head_map(session, org_id)  # what the checkpointer does first: the log is now at its next size
    with runtime.db.read_session() as session:
        size = log_size(session, org_id)
    assert size > honest["size"]
    # Someone holding the bucket's admin credentials writes first, before the checkpointer signs this size.
    s3_client.put_object(
        Bucket=runtime.authoritative.bucket,
        Key=checkpoint_key(org_id, size),
        Body=_forged_note(runtime, org_id, size, forgery),
    )
    with caplog.at_level(logging.ERROR, logger="evault.checkpoints"):
        signed = runtime.checkpoints.checkpoint_now(org_id)  # alerted and bypassed, never blocked
    assert any(r.levelno == logging.ERROR and CHECKPOINT_FORGED in r.getMessage() for r in caplog.records)
    assert signed.size == size
    assert signed.s3_key == checkpoint_key_beside(org_id, size, hashlib.sha256(signed.note.encode()).hexdigest())
    stored = runtime.authoritative.read(signed.s3_key, signed.s3_version_id).decode()
    assert stored == signed.note and stored.encode() != _forged_note(runtime, org_id, size, forgery)
    served = client.get(f"{API}/log/checkpoint", headers=headers).json()
    assert (served["size"], served["note"], served["worm_key"]) == (size, signed.note, signed.s3_key)
    findings = audit_log(runtime.sources(), org_id)
    assert [(f.code, f.details["key"]) for f in findings] == [(CHECKPOINT_FORGED, checkpoint_key(org_id, size))]
