"""The nightly verifier against faults planted as an attacker with those rights would plant them: through S3
with the admin credentials, in the store's files, and in the database by hand (guard triggers disarmed).

Each fault must be named with its code and its envelope or object; a clean vault verifies clean; a resumed
run finds what an uninterrupted one finds; shards cover every object exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from compliance.checkpoints.publisher import tree_for
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.events import log_size
from compliance.sources import Sources
from compliance.verifier import CannotVerify, Options, fix_scope, verify
from compliance.verifier import objects as objects_module
from compliance.verifier.context import Interrupted
from compliance.verifier.findings import Finding
from compliance.verifier.report import ReportSigner, verify_report
from compliance.verifier.scope import parse_shard
from storage.embedded_s3 import EmbeddedS3
from storage.ids import as_utc
from storage.keys import checkpoint_key
from storage.models import CopyRecord, Event, OpenFinding, VaultedDocument, VaultRecord, VerifyRun
from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client
from tests.helpers import API, create_envelope, disarm_triggers, upload
from tests.pdf_factory import make_pdf
from vault.cli.main import main
from vault.runtime import Runtime


def _sources(runtime: Runtime) -> Sources:
    """What ``evault verify`` attaches with: a client that leaves retrying to the verifier (one attempt each)."""
    s3 = runtime.settings.s3
    client = make_s3_client(s3.endpoint, s3.access_key, s3.secret_key, s3.region, attempts=1)
    base = runtime.sources()
    return Sources(
        base.db,
        ObjectStore(client, s3.authoritative_bucket),
        ObjectStore(client, s3.copies_bucket),
        base.checkpoint_verifier,
        base.origin_prefix,
    )


def _vaulted(client: Any, headers: dict[str, str], size: int | None = None) -> str:
    envelope_id = create_envelope(client, headers)
    pdf = make_pdf(text=f"Loan {envelope_id}", size_bytes=size)
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    return envelope_id


def _doc(runtime: Runtime, envelope_id: str) -> VaultedDocument:
    with runtime.db.read_session() as session:
        return session.exec(
            select(VaultedDocument).join(VaultRecord).where(VaultRecord.envelope_id == envelope_id)
        ).one()


def _by_code(findings: list[Finding]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f.details)
    return out


def _corrupt_needle(store: EmbeddedS3, bucket: str, data: bytes) -> None:
    """Flip a byte of the object's needle in its volume file, as someone with the disk would."""
    needle = data[-3000:-2000]  # inside the random (incompressible) padding
    for path in store.data_path.glob(f"{bucket}_*.dat"):
        raw = path.read_bytes()
        at = raw.find(needle)
        if at >= 0:
            with path.open("r+b") as handle:
                handle.seek(at + 100)
                handle.write(bytes([raw[at + 100] ^ 0xFF]))
            return
    raise AssertionError("needle not found in any volume file")


def test_planted_faults_are_each_named_and_only_a_sound_log_gets_events(
    client: Any, runtime: Runtime, make_key: Any, embedded_s3: EmbeddedS3, s3_client: Any
) -> None:
    org1, raw1 = make_key()
    org2, raw2 = make_key()
    h1, h2 = {"X-API-Key": raw1}, {"X-API-Key": raw2}
    envs = [_vaulted(client, h1) for _ in range(8)]
    unreadable = _vaulted(client, h1, size=40_000)
    copy = client.get(f"{API}/envelopes/{envs[0]}/vault/copy/signed-url", headers=h1).json()["copies"][0]
    copy2 = client.get(f"{API}/envelopes/{envs[1]}/vault/copy/signed-url", headers=h1).json()["copies"][0]
    log_envs = [_vaulted(client, h2) for _ in range(2)]
    for headers in (h1, h2):
        assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    clean = verify(runtime.sources(), options=Options(concurrency=4))
    assert clean.clean, clean.findings
    assert clean.counts["objects"] == 11 and clean.counts["copies"] == 2

    auth, copies = runtime.authoritative.bucket, runtime.copies.bucket
    docs = {e: _doc(runtime, e) for e in [*envs, unreadable]}
    # --- through S3 with the admin credentials ---------------------------------------------------------
    s3_client.put_object(Bucket=auth, Key=docs[envs[0]].s3_key, Body=b"%PDF-1.7 planted")  # extra version
    s3_client.delete_object(Bucket=auth, Key=docs[envs[1]].s3_key)  # a delete marker
    stray = f"authoritative/{org1}/{envs[2]}/009-{'cd' * 32}.pdf"
    s3_client.put_object(Bucket=auth, Key=stray, Body=b"%PDF-1.7 stray")  # unrecorded
    s3_client.put_object(Bucket=copies, Key=f"copies/{org1}/{envs[2]}/cpy_planted0000000000.pdf", Body=b"%PDF x")
    with runtime.db.read_session() as session:
        rows = {c.id: c for c in session.exec(select(CopyRecord))}
    s3_client.put_object(Bucket=copies, Key=rows[copy["id"]].s3_key, Body=b"%PDF-1.7 altered copy")
    # --- in the store's files ----------------------------------------------------------------------------
    read_back = runtime.authoritative.read(docs[unreadable].s3_key, docs[unreadable].s3_version_id)
    _corrupt_needle(embedded_s3, auth, read_back)
    # --- in the database, triggers disarmed -----------------------------------------------------------------
    unlocked_key = f"authoritative/{org1}/{envs[3]}/000-{'ef' * 32}.pdf"
    original = runtime.authoritative.read(docs[envs[3]].s3_key, docs[envs[3]].s3_version_id)
    unlocked = runtime.authoritative.put_plain(unlocked_key, original, "application/pdf")  # no lock
    with runtime.db.read_session() as session:
        other_retention = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envs[7])).one().retain_until
    other_bytes = runtime.authoritative.put_write_once(  # locked, but not the bytes the ledger logged
        f"authoritative/{org1}/{envs[7]}/000-{'ab' * 32}.pdf",
        b"%PDF-1.7 other bytes",
        retain_until=as_utc(other_retention) + dt.timedelta(days=1),
    )
    with runtime.db.session() as session:
        for table in ("vaulted_document", "vault_record", "copy_record", "event", "checkpoint"):
            disarm_triggers(session, table)
        lock_doc = session.get(VaultedDocument, docs[envs[3]].id)
        assert lock_doc is not None
        lock_doc.s3_key, lock_doc.s3_version_id = unlocked_key, unlocked.version_id  # points at an unlocked version
        record = session.exec(select(VaultRecord).where(VaultRecord.envelope_id == envs[4])).one()
        record.retain_until = record.retain_until + dt.timedelta(days=30)  # beyond the object's retention
        hash_doc = session.get(VaultedDocument, docs[envs[5]].id)
        assert hash_doc is not None
        hash_doc.sha256 = "00" * 32  # the row lies; the bytes are intact
        swapped_doc = session.get(VaultedDocument, docs[envs[7]].id)
        assert swapped_doc is not None
        swapped_doc.s3_key, swapped_doc.s3_version_id = other_bytes.key, other_bytes.version_id
        missing_doc = session.get(VaultedDocument, docs[envs[6]].id)
        assert missing_doc is not None
        missing_doc.s3_version_id = "0" * 32
        unmarked = session.get(CopyRecord, copy2["id"])
        assert unmarked is not None
        stored = runtime.copies.put_plain(unmarked.s3_key.replace(".pdf", "-x.pdf"), original, "application/pdf")
        unmarked.s3_key, unmarked.s3_version_id = stored.key, stored.version_id
        unmarked.sha256 = unmarked.source_sha256 = stored.sha256_hex
        session.add_all([lock_doc, record, hash_doc, swapped_doc, missing_doc, unmarked])
        # org2's log: an entry edited, another moved, a checkpoint row dropped
        events = list(session.exec(select(Event).where(Event.org_id == org2).order_by(col(Event.leaf_index))))
        events[1].entry = events[1].entry.replace(b'"paper"', b'"esign"')
        events[3].entry = events[2].entry
        events[3].entry_hash = events[2].entry_hash
        session.add_all([events[1], events[3]])
    with runtime.db.read_session() as session:
        size2 = log_size(session, org2)
        root = tree_for(session, org2, size2 - 1).root()
    honest = sign_checkpoint(Checkpoint(runtime.checkpoints.origin(org2), size2 - 1, root), runtime.key.note_signer)
    s3_client.put_object(Bucket=auth, Key=checkpoint_key(org2, size2 - 1), Body=honest.encode())  # no lock
    s3_client.put_object(Bucket=auth, Key=checkpoint_key(org2, size2 - 2), Body=b"not a note\n")  # forged

    outcome = verify(_sources(runtime), options=Options(concurrency=4, read_attempts=1, retry_pause=0))
    found = _by_code(outcome.findings)
    named = {code: {d.get("envelope_id") for d in details} for code, details in found.items()}
    assert envs[0] in named["Object.ExtraVersion"] and envs[1] in named["Object.ExtraVersion"]
    assert {d["key"] for d in found["Object.Unrecorded"]} >= {docs[envs[0]].s3_key, stray}
    assert named["Object.Unreadable"] == {unreadable}
    assert named["Object.LockRemoved"] == {envs[3]}, (found["Object.LockRemoved"], envs)
    assert named["Object.LockShortened"] == {envs[4]}
    assert named["Object.BytesChanged"] == {envs[7]}, "intact bytes under an edited row are not 'changed'"
    assert named["Object.Missing"] == {envs[6]}
    # (org2's records differ from its tampered ledger too: those are named as well)
    assert named["Record.Edited"] & set(envs) == {envs[3], envs[4], envs[5], envs[6], envs[7]}
    planted_copy = f"copies/{org1}/{envs[2]}/cpy_planted0000000000.pdf"
    # (the object copy2's row pointed at before the edit is now named by no row either)
    assert {d["key"] for d in found["Copy.Unregistered"]} == {planted_copy, rows[copy2["id"]].s3_key}
    assert {d["copy_id"] for d in found["Copy.Altered"]} == {copy["id"]}
    assert {d["copy_id"] for d in found["Copy.Unmarked"]} == {copy2["id"]}
    assert named["Log.EntryEdited"] == {log_envs[0]} or log_envs[0] in named["Log.EntryEdited"]
    assert "Log.EntryInserted" in found and "Chain.Broken" in found and "Log.RootMismatch" in found
    assert {d["size"] for d in found["Checkpoint.Unlocked"]} == {size2 - 1, size2 - 2}
    assert {d["size"] for d in found["Checkpoint.Forged"]} == {size2 - 2}
    assert {d["org_id"] for code in ("Log.EntryEdited", "Checkpoint.Forged") for d in found[code]} == {org2}

    # org1's log verified: each of its findings became one integrity.failed event; org2's log got none.
    with runtime.db.read_session() as session:
        failed = list(session.exec(select(Event).where(Event.event_type == "integrity.failed")))
        assert {e.org_id for e in failed} == {org1}
        org1_findings = [f for f in outcome.findings if f.org_id == org1]
        assert len(failed) == outcome.events_written == len(org1_findings)
        assert json.loads(failed[0].entry)["actor"] == {"org_id": org1, "source": "verifier"}
    # A second night: the same findings are open, and no event is written again.
    again = verify(_sources(runtime), options=Options(concurrency=4, read_attempts=1, retry_pause=0))
    assert {f.fingerprint for f in again.findings} >= {f.fingerprint for f in org1_findings}
    assert again.events_written == 0
    with runtime.db.read_session() as session:
        assert session.exec(select(OpenFinding).where(col(OpenFinding.closed_at).is_(None))).all()
        runs = list(session.exec(select(VerifyRun)))
        assert {r.verdict for r in runs} == {"clean", "findings"} and all(r.finished_at for r in runs)


def test_storage_misconfiguration_and_cli_exit_codes_with_a_signed_report(
    client: Any,
    runtime: Runtime,
    tenant: Any,
    vault_env: dict[str, str],
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, headers = tenant
    _vaulted(client, headers)
    for name, value in vault_env.items():
        monkeypatch.setenv(name, value)
    report = tmp_path / "report.json"
    assert main(["verify", "--report", str(report), "--concurrency", "2"]) == 0
    pem = runtime.key.public_pem().encode()
    assert verify_report(report.read_bytes(), pem)["verdict"] == "clean"
    s3_client.put_bucket_versioning(Bucket=runtime.copies.bucket, VersioningConfiguration={"Status": "Suspended"})
    assert main(["verify", "--report", str(report)]) == 2
    checked = verify_report(report.read_bytes(), pem)
    assert [f["code"] for f in checked["findings"]] == ["Storage.Misconfigured"]
    signed = json.loads(report.read_text())["signature"]["report_key"]
    assert signed["pem"] == ReportSigner(runtime.settings.vault.report_key_path).public_pem
    assert main(["verify", "--org", "org_doesnotexist000000"]) == 3


def test_an_empty_vault_is_never_clean(runtime: Runtime) -> None:
    with pytest.raises(CannotVerify) as refused:
        verify(runtime.sources())
    assert refused.value.code == "Verify.EmptyVault"


def test_a_resumed_run_reports_what_an_uninterrupted_run_reports(
    client: Any, runtime: Runtime, tenant: Any, s3_client: Any
) -> None:
    _, headers = tenant
    envs = [_vaulted(client, headers) for _ in range(9)]
    for envelope_id in (envs[1], envs[6]):
        doc = _doc(runtime, envelope_id)
        s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=doc.s3_key, Body=b"%PDF-1.7 planted")
    full = verify(runtime.sources(), options=Options(concurrency=2))
    scope = fix_scope(runtime.sources())
    with pytest.raises(Interrupted):
        verify(runtime.sources(), scope, options=Options(concurrency=2, stop_after=4))
    with runtime.db.read_session() as session:
        run = session.exec(select(VerifyRun).where(VerifyRun.status == "running")).one()
    seen: list[str] = []
    original = objects_module.check_document
    objects_module.check_document = lambda ctx, doc, *rest: (  # type: ignore[assignment]
        seen.append(doc.s3_key),
        original(ctx, doc, *rest),
    )[1]
    try:
        resumed = verify(runtime.sources(), resume=run.id, options=Options(concurrency=2))
    finally:
        objects_module.check_document = original
    assert {f.fingerprint for f in resumed.findings} == {f.fingerprint for f in full.findings}
    assert len(full.findings) == 4  # two extra versions, two unrecorded objects
    assert 0 < len(seen) < 9  # what was done before the interruption was not checked again
    assert resumed.run_id == run.id and resumed.scope == scope


@pytest.mark.once
def test_a_shard_is_two_ascii_numbers() -> None:
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/3", "\u00b2/3", "1/\u0663"):  # "\u00b2" is a digit to str.isdigit(), not to int()
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_shards_cover_every_object_exactly_once(client: Any, runtime: Runtime, tenant: Any) -> None:
    _, headers = tenant
    envs = [_vaulted(client, headers) for _ in range(9)]
    keys = {_doc(runtime, e).s3_key for e in envs}
    seen: list[list[str]] = []
    original = objects_module.check_document
    try:
        for index in range(3):
            checked: list[str] = []
            objects_module.check_document = lambda ctx, doc, *rest, checked=checked: (  # type: ignore[assignment]
                checked.append(doc.s3_key),
                original(ctx, doc, *rest),
            )[1]
            scope = fix_scope(runtime.sources(), shard=(index, 3))
            assert verify(runtime.sources(), scope, options=Options(record=False)).clean
            seen.append(checked)
    finally:
        objects_module.check_document = original
    flat = [k for shard in seen for k in shard]
    assert sorted(flat) == sorted(keys) and len(set(flat)) == len(flat)
    assert sum(1 for shard in seen if shard) >= 2
