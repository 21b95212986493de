"""The vault's signing keys over the years: a rotation recorded in every log, old and new evidence verifying
offline from the first key alone, a compromised key's later signatures flagged, and the key set served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient
from sqlmodel import col, select

from compliance.bundles.proof_bundle import verify_bundle
from compliance.certificates.offline_check import verify_certificate
from compliance.checkpoints.policy import CheckpointTrust
from compliance.errors import EvaultError
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.key_history import KeyHistory, KeySet, revocation_statement, rotation_statement
from compliance.ledger.key_ring import generations, rotate
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.note import NoteSigner, NoteVerifier, open_note, parse_note
from compliance.ledger.signer import FileSigner
from compliance.ledger.vault_key import load_public_key
from compliance.verifier import Options, verify
from compliance.verifier.report import ReportSigner, verify_report
from compliance.witness.cosignature import CosignatureSigner, cosign
from storage.ids import iso, utcnow
from storage.models import Event
from storage.settings import Settings
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime


def _bundle(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/proof/", headers=headers)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _certificate(client: Any, headers: dict[str, str], envelope_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _copy(client: Any, headers: dict[str, str], envelope_id: str) -> None:
    """A new event on the envelope, so that its next bundle needs a newer checkpoint."""
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200


def _signed_by(note: str) -> str:
    signature = parse_note(note).signatures[0]
    return signature.key_id.hex()


@pytest.fixture
def restarted(vault_env: dict[str, str]) -> Iterator[Any]:
    """Open the service again on the same database and store (what an operator does after rotating)."""
    opened: list[tuple[Runtime, TestClient[Any]]] = []

    def start() -> tuple[Runtime, TestClient[Any]]:
        runtime = open_runtime(Settings.from_env(vault_env))
        client = TestClient(create_app(runtime))
        client.__enter__()
        opened.append((runtime, client))
        return runtime, client

    yield start
    for runtime, client in reversed(opened):
        client.__exit__(None, None, None)
        runtime.close()


def _rotate(evault: Any) -> dict[str, Any]:
    code, out, err = evault("signing-key", "rotate", "--json")
    assert code == 0, err
    rotated: dict[str, Any] = json.loads(out)
    return rotated


def test_rotation_is_logged_everywhere_and_old_and_new_evidence_verify_offline(
    client: Any, tenant: Any, make_key: Any, runtime: Runtime, evault: Any, restarted: Any, tmp_path: Path
) -> None:
    org_id, headers = tenant
    other_org, _ = make_key()
    first = client.get("/.well-known/evault/keys").json()["keys"][0]
    first_pem = first["pem"].encode()
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
    old_bundle = _bundle(client, headers, envelope_id)
    old_certificate = _certificate(client, headers, envelope_id)

    rotated = _rotate(evault)
    assert rotated["generation"] == 1 and rotated["vkey"] != first["vkey"]

    # Recorded in every organisation's log, signed by the outgoing key and naming the new one.
    outgoing = NoteVerifier.from_vkey(first["vkey"])
    with runtime.db.read_session() as session:
        entries = [
            json.loads(e.entry)
            for e in session.exec(select(Event).where(Event.event_type == "vault.signing_key_rotated"))
        ]
    assert sorted(e["log"] for e in entries) == sorted([org_id, other_org])
    for entry in entries:
        assert entry["data"]["vkey"] == rotated["vkey"] and entry["envelope"] is None
        text, _ = open_note(entry["data"]["statement"], [outgoing])
        assert f"new {rotated['vkey']}\n" in text

    # After a restart the service signs with the new key; the key set lists both, with their validity.
    runtime2, client2 = restarted()
    assert runtime2.key.note_verifier.vkey == rotated["vkey"]
    # The new key certifies over the checkpoint the old key signed: its bundle carries the chain to both keys.
    bridging = _certificate(client2, headers, envelope_id)
    assert bridging["certificate"]["ledger"]["checkpoint"]["note"] == old_bundle["checkpoint"]
    assert len(bridging["certificate"]["ledger"]["bundle"]["key_chain"]) == 1
    verify_certificate(json.dumps(bridging), first_pem)
    _copy(client2, headers, envelope_id)
    new_bundle = _bundle(client2, headers, envelope_id)
    new_certificate = _certificate(client2, headers, envelope_id)
    assert _signed_by(new_bundle["checkpoint"]) == rotated["vkey"].split("+")[1]
    assert _signed_by(old_bundle["checkpoint"]) == first["vkey"].split("+")[1]
    assert new_bundle["key"]["vkey"] == rotated["vkey"] and len(new_bundle["key_chain"]) == 1
    well_known = client2.get("/.well-known/evault/keys").json()
    checkpoint_keys = [k for k in well_known["keys"] if k["use"] == "checkpoint"]
    assert [(k["generation"], k["current"]) for k in checkpoint_keys] == [(1, True), (0, False)]
    assert checkpoint_keys[1]["valid_until"] == checkpoint_keys[0]["valid_from"]
    assert checkpoint_keys[0]["valid_until"] is None and checkpoint_keys[0]["compromised_since"] is None

    # Offline, from the first key alone: the old and the new bundle and certificate.
    assert verify_bundle(json.dumps(old_bundle), first_pem).key.generation == 0
    assert verify_bundle(json.dumps(new_bundle), first_pem).key.generation == 1
    verify_certificate(json.dumps(old_certificate), first_pem)
    verify_certificate(json.dumps(new_certificate), first_pem)
    code, out, err = evault(
        "log",
        "verify",
        str(_write(tmp_path / "new.json", new_bundle)),
        "--public-key",
        str(_write(tmp_path / "first.pem", first["pem"])),
    )
    assert code == 0 and "OK:" in out, err

    # The online verifier checks old and new checkpoints, each against its own generation.
    clean = verify(runtime2.sources(), options=Options(concurrency=2))
    assert clean.clean, clean.findings

    # The report key the restarted service endorsed with the new key: accepted with the key set.
    report = ReportSigner(runtime2.settings.vault.report_key_path).sign({"run_id": "r1", "findings": []})
    keys = KeySet.parse(json.dumps(well_known).encode())
    assert verify_report(json.dumps(report).encode(), first_pem, keys)["run_id"] == "r1"
    with pytest.raises(EvaultError) as refused:
        verify_report(json.dumps(report).encode(), first_pem)
    assert refused.value.code == "Report.NotEndorsed"

    # Forgeries: a chain dropped, or a rotation that names another key, no longer follows from the first key.
    stripped = {k: v for k, v in new_bundle.items() if k != "key_chain"}
    with pytest.raises(LogError) as no_chain:
        verify_bundle(json.dumps(stripped), first_pem)
    assert no_chain.value.code == "Log.WrongKey"
    forged = dict(new_bundle, key_chain=[new_bundle["key_chain"][0].replace("generation 1", "generation 2")])
    with pytest.raises(LogError) as broken:
        verify_bundle(json.dumps(forged), first_pem)
    assert broken.value.code in ("Log.KeyChainBroken", "Log.BadSignature")


def _write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_a_compromised_keys_later_signatures_are_flagged(
    client: Any, tenant: Any, runtime: Runtime, evault: Any, restarted: Any, tmp_path: Path
) -> None:
    _, headers = tenant
    first = client.get("/.well-known/evault/keys").json()["keys"][0]
    first_pem = first["pem"].encode()
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201
    old_bundle = _bundle(client, headers, envelope_id)
    old_certificate = _certificate(client, headers, envelope_id)

    # Revoking the current key rotates first, so that a sound key signs the revocation.
    since = utcnow() - timedelta(hours=1)
    code, out, err = evault("signing-key", "revoke", "--compromised-since", iso(since), "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"generation": 0, "compromised_since": iso(since)}
    with runtime.db.read_session() as session:
        revoked = list(session.exec(select(Event).where(col(Event.event_type) == "vault.signing_key_revoked")))
    assert len(revoked) == 1

    runtime2, client2 = restarted()
    well_known = client2.get("/.well-known/evault/keys").json()
    keys = KeySet.parse(json.dumps(well_known).encode())
    generation0 = next(k for k in well_known["keys"] if k.get("generation") == 0)
    assert generation0["compromised_since"] == iso(since)

    # Without the key set nothing is known of the compromise; with it, the old key's evidence is flagged ...
    verify_bundle(json.dumps(old_bundle), first_pem)
    with pytest.raises(LogError) as flagged:
        verify_bundle(json.dumps(old_bundle), first_pem, keys=keys)
    assert flagged.value.code == "Log.KeyCompromised"
    with pytest.raises(EvaultError) as cert_flagged:
        verify_certificate(json.dumps(old_certificate), first_pem, keys=keys)
    assert cert_flagged.value.code == "Certificate.KeyCompromised"
    code, _, err = evault(
        "log",
        "verify",
        str(_write(tmp_path / "old.json", old_bundle)),
        "--public-key",
        str(_write(tmp_path / "first.pem", first["pem"])),
        "--keys",
        str(_write(tmp_path / "keys.json", well_known)),
    )
    assert code == 1 and "Log.KeyCompromised" in err

    # The online verifier flags the old key's checkpoints: nothing (no witness, no TSA here) dates them earlier.
    findings = verify(runtime2.sources(), options=Options(concurrency=2)).findings
    flagged_online = [f for f in findings if f.code == "Checkpoint.KeyCompromised"]
    assert flagged_online and all(f.details["generation"] == 0 for f in flagged_online), findings
    assert {f.code for f in findings} == {"Checkpoint.KeyCompromised"}

    # ... while the new key's evidence still verifies with the same key set.
    _copy(client2, headers, envelope_id)
    assert verify_bundle(json.dumps(_bundle(client2, headers, envelope_id)), first_pem, keys=keys).key.generation == 1
    verify_certificate(json.dumps(_certificate(client2, headers, envelope_id)), first_pem, keys=keys)


def test_a_revocation_not_signed_by_the_chain_is_refused(runtime: Runtime, evault: Any) -> None:
    """A revocation the attacker signs with a key outside the chain cannot be slipped into a key set."""
    _rotate(evault)
    code, out, err = evault("signing-key", "list")
    assert code == 0, err
    chain = json.loads(out)
    history = KeySet.parse(json.dumps(chain).encode()).history(load_public_key(chain["first_key_pem"].encode()))
    assert isinstance(history, KeyHistory) and [p.generation for p in history.periods] == [0, 1]

    stranger = NoteSigner("evault.local", Ed25519PrivateKey.generate())
    target = NoteVerifier.from_vkey(chain["generations"][1]["vkey"])
    forged = revocation_statement(target, utcnow(), stranger)
    chain["generations"][1]["revocation"] = forged
    with pytest.raises(LogError) as refused:
        KeySet.parse(json.dumps(chain).encode()).history(load_public_key(chain["first_key_pem"].encode()))
    assert refused.value.code == "Log.KeyChainBroken"
    # A compromise time in the future is refused, and changes nothing.
    code, _, err = evault(
        "signing-key", "revoke", "--compromised-since", iso(utcnow() + timedelta(days=1)), "--generation", "0"
    )
    assert code == 1 and "SigningKey.CompromiseInFuture" in err


@pytest.mark.once
def test_a_witness_cosignature_before_the_compromise_clears_a_checkpoint() -> None:
    """A compromised key's checkpoint stands when a trusted witness dates it before the compromise, not after."""

    old = NoteSigner("evault.local", Ed25519PrivateKey.generate())
    new = NoteSigner("evault.local", Ed25519PrivateKey.generate())
    since = utcnow() - timedelta(days=1)
    history = KeyHistory.follow(
        old.verifier().public_key,
        [rotation_statement(1, old, new, utcnow())],
        [revocation_statement(old.verifier(), since, new)],
    )
    witness = CosignatureSigner("witness.example", Ed25519PrivateKey.generate())
    trust = CheckpointTrust(witness_vkeys=(witness.verifier().vkey,))
    checkpoint = Checkpoint("evault.local/log/org_1", 1, leaf_hash(b"entry"))
    note = sign_checkpoint(checkpoint, old)
    period = history.periods[0]

    def cosigned(at: int) -> str:
        return note + cosign(checkpoint.to_text(), witness, at)

    before, after = int(since.timestamp()) - 60, int(since.timestamp()) + 60
    trust.check_key(history, period, cosigned(before), None)  # dated before the compromise: stands
    for suspect, why in ((cosigned(after), "witnessed after"), (note, "undated")):
        with pytest.raises(LogError) as flagged:
            trust.check_key(history, period, suspect, None)
        assert flagged.value.code == "Log.KeyCompromised", why
    with pytest.raises(LogError):  # a witness the auditor does not trust dates nothing
        CheckpointTrust().check_key(history, period, cosigned(before), None)
    CheckpointTrust().check_key(history, history.periods[1], sign_checkpoint(checkpoint, new), None)


def test_two_rotations_at_once_record_one_generation(runtime: Runtime, tenant: Any) -> None:
    """Both start from the same current key; exactly one records generation 1, the other changes nothing."""
    first = runtime.key
    incoming = [FileSigner(Ed25519PrivateKey.generate()) for _ in range(2)]
    results = together(*(lambda s=s, i=i: rotate(runtime.db, first, s, f"mem:{i}") for i, s in enumerate(incoming)))
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], EvaultError) and lost[0].code == "SigningKey.NotCurrent"
    with runtime.db.read_session() as session:
        assert [r.generation for r in generations(session)] == [0, 1]
        logged = session.exec(select(Event).where(col(Event.event_type) == "vault.signing_key_rotated")).all()
    assert len(logged) == 1 and json.loads(logged[0].entry)["data"]["vkey"] == won[0].vkey
