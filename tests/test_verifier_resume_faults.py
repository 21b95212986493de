"""The verifier resumed inside a log, and the planted faults the first suite leaves out (a copy deleted through
S3, a WORM checkpoint of a forked tree): each named with its envelope or log, exit 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.events import log_size
from compliance.verifier import Options, fix_scope, verify
from compliance.verifier.context import Interrupted
from compliance.verifier.log_resume import LogState
from storage.keys import checkpoint_key
from storage.models import CopyRecord, Event, VerifyProgress, VerifyRun
from tests.helpers import API, disarm_triggers
from tests.test_verifier import _by_code, _doc, _vaulted
from vault.cli.main import main
from vault.runtime import Runtime

RESUMABLE = {"log_save_every": 4, "save_seconds": 0.0, "concurrency": 2}


def _running_run(runtime: Runtime) -> VerifyRun:
    with runtime.db.read_session() as session:
        return session.exec(select(VerifyRun).where(VerifyRun.status == "running")).one()


def _log_position(runtime: Runtime, run_id: str, org_id: str) -> LogState | None:
    with runtime.db.read_session() as session:
        row = session.get(VerifyProgress, (run_id, f"log:{org_id}"))
    return LogState.decode(row.position if row else None)


def test_a_log_interrupted_midway_resumes_from_its_position_and_reports_the_same(
    client: Any, runtime: Runtime, tenant: Any, s3_client: Any
) -> None:
    org_id, headers = tenant
    envs = [_vaulted(client, headers) for _ in range(3)]
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200  # a map.root mid-log
    envs += [_vaulted(client, headers) for _ in range(3)]
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    doc = _doc(runtime, envs[4])
    s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=doc.s3_key, Body=b"%PDF-1.7 planted")
    full = verify(runtime.sources(), options=Options(**RESUMABLE))  # type: ignore[arg-type]
    assert len(full.findings) == 2  # an extra version, an unrecorded object
    with runtime.db.read_session() as session:
        first_map_root = min(
            session.exec(select(Event.leaf_index).where(Event.org_id == org_id, Event.event_type == "map.root"))
        )

    for stop, map_root in ((first_map_root + 6, first_map_root), (None, None)):
        scope = fix_scope(runtime.sources())
        size = scope.log_sizes[org_id]
        stop = stop or size - 1  # the second time: in the last stretch
        with pytest.raises(Interrupted):
            verify(runtime.sources(), scope, options=Options(stop_after_entries=stop, **RESUMABLE))  # type: ignore[arg-type]
        run = _running_run(runtime)
        saved = _log_position(runtime, run.id, org_id)
        assert saved is not None and stop - 4 < saved.size <= stop and saved.size % 4 == 0
        if map_root is not None:
            assert saved.last_map_root == map_root  # the head map is rebuilt from both sides of a commit
        resumed = verify(runtime.sources(), resume=run.id, options=Options(**RESUMABLE))  # type: ignore[arg-type]
        assert {f.fingerprint for f in resumed.findings} == {f.fingerprint for f in full.findings}, resumed.findings
        assert resumed.counts["entries"] == size - saved.size  # only what came after the position
        assert resumed.run_id == run.id


def test_a_log_with_a_finding_is_never_resumed_past_it(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    for _ in range(3):
        _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    with runtime.db.session() as session:
        disarm_triggers(session, "event")
        events = session.exec(select(Event).where(Event.org_id == org_id).order_by(col(Event.leaf_index)))
        event = next(e for e in events if b'"paper"' in e.entry)  # early in the log, before any save point
        assert event.leaf_index < 4
        event.entry = event.entry.replace(b'"paper"', b'"esign"')
        session.add(event)
    full = verify(runtime.sources(), options=Options(**RESUMABLE))  # type: ignore[arg-type]
    assert "Log.EntryEdited" in _by_code(full.findings)
    with pytest.raises(Interrupted):
        verify(runtime.sources(), options=Options(stop_after_entries=9, **RESUMABLE))  # type: ignore[arg-type]
    run = _running_run(runtime)
    assert _log_position(runtime, run.id, org_id) is None  # nothing past the finding was saved
    resumed = verify(runtime.sources(), resume=run.id, options=Options(**RESUMABLE))  # type: ignore[arg-type]
    assert {f.fingerprint for f in resumed.findings} == {f.fingerprint for f in full.findings}
    with runtime.db.read_session() as session:
        assert resumed.counts["entries"] == log_size(session, org_id)  # audited again from leaf 0


def test_an_entry_changed_before_the_saved_position_restarts_the_log_audit(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    org_id, headers = tenant
    for _ in range(4):
        _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    scope = fix_scope(runtime.sources())
    with pytest.raises(Interrupted):
        verify(runtime.sources(), scope, options=Options(stop_after_entries=10, **RESUMABLE))  # type: ignore[arg-type]
    run = _running_run(runtime)
    saved = _log_position(runtime, run.id, org_id)
    assert saved is not None and saved.size == 8
    with runtime.db.session() as session:  # an envelope's latest entry before the position, made non-canonical
        disarm_triggers(session, "event")
        event = session.exec(
            select(Event)
            .where(Event.org_id == org_id, Event.leaf_index < saved.size, col(Event.envelope_id).is_not(None))
            .order_by(col(Event.leaf_index).desc())
        ).first()
        assert event is not None
        event.entry = event.entry.replace(b"{", b"{ ", 1)
        session.add(event)
    resumed = verify(runtime.sources(), resume=run.id, options=Options(**RESUMABLE))  # type: ignore[arg-type]
    assert resumed.counts["entries"] == scope.log_sizes[org_id]  # audited again from leaf 0
    assert event.envelope_id in {d.get("envelope_id") for d in _by_code(resumed.findings)["Log.EntryEdited"]}


def _cli(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    for name, value in vault_env.items():
        monkeypatch.setenv(name, value)
    code = main(["verify", "--concurrency", "2", *args])
    return code, capsys.readouterr().out


def test_a_copy_deleted_through_s3_is_named_copy_missing(
    client: Any,
    runtime: Runtime,
    tenant: Any,
    s3_client: Any,
    vault_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    _, headers = tenant
    envs = [_vaulted(client, headers) for _ in range(2)]
    copies = [
        client.get(f"{API}/envelopes/{e}/vault/copy/signed-url", headers=headers).json()["copies"][0] for e in envs
    ]
    assert _cli(vault_env, monkeypatch, capsys)[0] == 0
    with runtime.db.read_session() as session:
        gone = session.get(CopyRecord, copies[1]["id"])
    assert gone is not None
    # The administrator removes the copy's version itself (the copies bucket is not WORM): no delete marker left.
    s3_client.delete_object(Bucket=runtime.copies.bucket, Key=gone.s3_key, VersionId=gone.s3_version_id)
    code, out = _cli(vault_env, monkeypatch, capsys)
    outcome = verify(runtime.sources(), options=Options(record=False))
    found = _by_code(outcome.findings)
    assert code == 2 and "Copy.Missing" in out
    assert set(found) == {"Copy.Missing"}
    assert [(d["envelope_id"], d["copy_id"], d["key"]) for d in found["Copy.Missing"]] == [
        (envs[1], gone.id, gone.s3_key)
    ]


def test_a_worm_checkpoint_of_a_forked_tree_is_named_log_inconsistent(
    client: Any,
    runtime: Runtime,
    tenant: Any,
    make_key: Any,
    s3_client: Any,
    vault_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    org_id, headers = tenant
    other, raw = make_key()
    for _ in range(2):
        _vaulted(client, headers)
    _vaulted(client, {"X-API-Key": raw})
    for h in (headers, {"X-API-Key": raw}):
        assert client.post(f"{API}/log/checkpoint", headers=h).status_code == 200
    _vaulted(client, headers)  # the log grows past its last checkpoint
    assert _cli(vault_env, monkeypatch, capsys)[0] == 0
    with runtime.db.read_session() as session:
        size = log_size(session, org_id)
    # Someone holding the signing key signs a different tree of the next size (a fork, or a rolled-back and
    # re-grown database log), and it sits in WORM where the log's own next checkpoint would go.
    forked = sign_checkpoint(
        Checkpoint(runtime.checkpoints.origin(org_id), size, os.urandom(32)), runtime.key.note_signer
    )
    s3_client.put_object(Bucket=runtime.authoritative.bucket, Key=checkpoint_key(org_id, size), Body=forked.encode())
    code, out = _cli(vault_env, monkeypatch, capsys, "--report", str(Path(vault_env["EVAULT_DATA_DIR"]) / "r.json"))
    assert code == 2 and "Log.Inconsistent" in out
    with runtime.db.read_session() as session:
        run = session.exec(select(VerifyRun).order_by(col(VerifyRun.started_at).desc())).first()
        assert run is not None and run.verdict == "findings"
        # A log found faulty gets no integrity.failed event (the next checkpoint would sign the tampered tree).
        assert not session.exec(select(Event).where(Event.event_type == "integrity.failed")).all()
    outcome = verify(runtime.sources(), options=Options(record=False))
    found = _by_code(outcome.findings)
    assert [(d["org_id"], d["size"]) for d in found["Log.Inconsistent"]] == [(org_id, size)]
    assert {d["org_id"] for details in found.values() for d in details} == {org_id}  # the other log is sound
    assert other != org_id
