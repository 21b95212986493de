"""``evault rebuild --from-bucket``: a vault's history, its database thrown away, rebuilt from the WORM bucket alone.

The rebuilt vault verifies clean, serves the same proof bundles and certificates, and its logs have the roots
the bucket's signed checkpoints name. A bucket whose tiles or entries do not hash to those roots is refused,
and so is an entry whose event type the rebuild cannot replay.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, update
from sqlmodel import select

from compliance.checkpoints.publisher import tree_for
from compliance.ledger.event_catalogue import CATALOGUE
from compliance.ledger.key_ring import generations
from compliance.ledger.merkle import leaf_hash
from compliance.ledger.note import NoteVerifier
from compliance.ledger.tile_paths import bundle, unbundle
from compliance.verifier import verify_vault
from storage.ids import iso, utcnow
from storage.models import ApiKey, Checkpoint, CopyClaim, Event, LogState, MersMin, Organisation, VaultClaim
from storage.object_store import ObjectStore
from storage.settings import Settings
from tests.helpers import API, EXPIRY_LEAD, create_envelope, own_database, sleep_past, upload
from tests.pdf_factory import make_pdf
from vault import retrieval
from vault import vault_in as vault_in_module
from vault.api.app import create_app
from vault.envelopes import NewEnvelope
from vault.envelopes import create_envelope as create_envelope_row
from vault.erasure import erase_subject
from vault.rebuild.backup import restore, write_backup
from vault.rebuild.bucket_log import RebuildRefused
from vault.rebuild.replay import STEPS, step_for
from vault.rebuild.rows import Entry, Rows
from vault.rebuild.service import rebuild
from vault.reconcile import reconcile_claims, reconcile_copy_claims
from vault.registry_ids import make_min
from vault.runtime import Runtime, open_runtime
from vault.tenancy import authenticate
from vault.vault_in import Upload

# Fields a certificate takes from the moment it is issued, not from the record.
MOMENT_FIELDS = {"issued_at", "signature", "checked_at"}


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """A second, empty database: where the vault is rebuilt after its own is gone."""
    with own_database(tmp_path, "rebuilt") as url:
        yield url


@pytest.fixture
def into_fresh_database(
    fresh_database_url: str,
    vault_env: dict[str, str],
    evault: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., tuple[Runtime, str]]:
    """``evault ARGS`` (a rebuild or a restore) into the fresh database, which must succeed: the vault opened on
    that database (the caller closes it) and what the command printed."""

    def run(*args: str) -> tuple[Runtime, str]:
        monkeypatch.setenv("EVAULT_DATABASE_URL", fresh_database_url)
        code, out, err = evault(*args)
        assert code == 0, err
        return open_runtime(Settings.from_env({**vault_env, "EVAULT_DATABASE_URL": fresh_database_url})), out

    return run


def _vaulted(client: TestClient[Any], headers: dict[str, str], pages: int = 2) -> str:
    envelope_id = create_envelope(client, headers)
    response = upload(client, headers, envelope_id, make_pdf(pages, text=f"Loan {uuid.uuid4().hex[:6]}"))
    assert response.status_code == 201, response.text
    return envelope_id


def _history(
    client: TestClient[Any], headers: dict[str, str], other: dict[str, str], other_org: str
) -> list[tuple[str, str]]:
    """A realistic history over two organisations: (envelope id, the headers of its organisation)."""
    released = _vaulted(client, headers, pages=3)
    assert client.get(f"{API}/envelopes/{released}/vault/copy/signed-url", headers=headers).status_code == 200
    out = {"reason": "transfer", "transferee": {"vault_id": "vault-2"}, "note": "sold"}
    assert client.post(f"{API}/envelopes/{released}/vault-out", json=out, headers=headers).status_code == 200

    held = _vaulted(client, headers)
    later = iso(dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3))
    extended = client.post(f"{API}/envelopes/{held}/retention", json={"retain_until": later}, headers=headers)
    assert extended.status_code == 200, extended.text
    assert client.post(f"{API}/envelopes/{held}/legal-hold", json={"reason": "subpoena"}, headers=headers).is_success
    amendment = [
        ("metadata", (None, '{"type": "assumption", "data": {"assumed_by": "New Borrower LLC"}}', None)),
        ("document", ("assumption.pdf", make_pdf(1, text="assumption"), "application/pdf")),
    ]
    assert client.post(f"{API}/envelopes/{held}/amendments", files=amendment, headers=headers).status_code == 201
    attestation = {"original": "held", "at": "2026-01-02T03:04:05Z", "attested_by": "Carol", "location": "Room 3"}
    attested = client.post(f"{API}/envelopes/{held}/paper-in-attestation", json=attestation, headers=headers)
    assert attested.status_code == 201, attested.text

    staged = create_envelope(client, headers)
    pdf = make_pdf(1, text="staged")
    sha = hashlib.sha256(pdf).hexdigest()
    staging = {**headers, "Content-Type": "application/pdf", "X-Content-SHA256": sha}
    assert client.post(f"{API}/envelopes/{staged}/upload", content=pdf, headers=staging).status_code == 201
    assert client.post(f"{API}/envelopes/{staged}/vault-in-upload", headers=headers).status_code == 201

    voided = create_envelope(client, headers)
    assert client.post(f"{API}/envelopes/{voided}/void", json={"reason": "withdrawn"}, headers=headers).is_success
    at = dt.datetime.now(dt.UTC) + EXPIRY_LEAD
    expired = create_envelope(client, headers, expires_at=at.isoformat(), external_id=f"x-{uuid.uuid4().hex}")
    draft = create_envelope(client, headers, kind="esign")

    theirs = _vaulted(client, other)
    assert client.get(f"{API}/envelopes/{theirs}/vault/copy/signed-url", headers=other).status_code == 200
    assert client.post(f"{API}/envelopes/{theirs}/legal-hold", json={"reason": "audit"}, headers=other).is_success
    cleared = client.request("DELETE", f"{API}/envelopes/{theirs}/legal-hold", json={"reason": "done"}, headers=other)
    assert cleared.is_success, cleared.text
    untouched = create_envelope(client, other)

    # Moved to the other organisation by a transfer (docs/transfers.md), after one that was refused.
    moved = _vaulted(client, headers)
    for answer in ("reject", "accept"):
        body = {"to_organisation": other_org, "type": "control_and_location"}
        created = client.post(f"{API}/envelopes/{moved}/transfers", json=body, headers=headers)
        assert created.status_code == 201, created.text
        step = client.post(f"{API}/transfers/{created.json()['id']}/{answer}", json={}, headers=other)
        assert step.status_code == 200, step.text

    sleep_past(at, 0.2)
    assert client.get(f"{API}/envelopes/{expired}", headers=headers).json()["status"] == "expired"
    for who in (headers, other):
        assert client.post(f"{API}/log/checkpoint", headers=who).status_code == 200
    mine = [released, held, staged, voided, expired, draft]
    return [(e, "mine") for e in mine] + [(e, "theirs") for e in (theirs, untouched, moved)]


def _without_moments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_moments(v) for k, v in value.items() if k not in MOMENT_FIELDS}
    if isinstance(value, list):
        return [_without_moments(v) for v in value]
    return value


def _evidence(client: TestClient[Any], envelope_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """What a relying party is shown of an envelope: its view, proof bundle and (once vaulted) certificate."""
    view = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    proof = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert view.status_code == 200 and proof.status_code == 200, (view.text, proof.text)
    # Who attested a paper original is personal data, like the parties: erased until a backup restores it.
    hidden = ("revision", "updated_at", "metadata", "parties", "paper_in_attestations")
    shown = {k: v for k, v in view.json().items() if k not in hidden}
    found: dict[str, Any] = {"view": shown, "proof": proof.json()}
    if view.json()["vault_state"] != "not_vaulted":
        certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=headers)
        assert certificate.status_code == 200, certificate.text
        found["certificate"] = _without_moments(certificate.json())
    return found


def _signed_roots(runtime: Runtime) -> dict[str, tuple[int, str]]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Checkpoint).order_by(Checkpoint.org_id, Checkpoint.size)).all()
        return {row.org_id: (row.size, row.root_hash) for row in rows}


def with_key_hashes(rebuilt: Runtime, original: Runtime) -> None:
    """API keys come back as the log states them, unusable until restored from a backup: restore them from the
    original database, as a backup would, so the rebuilt vault answers the same keys."""
    with original.db.read_session() as session:
        key_hashes = {k.id: k.key_hash for k in session.exec(select(ApiKey))}
    with rebuilt.db.session() as session:
        keys = session.exec(select(ApiKey)).all()
        assert {k.id for k in keys} == set(key_hashes)
        assert all(k.key_hash != key_hashes[k.id] for k in keys)
        for key in keys:
            key.key_hash = key_hashes[key.id]
            session.add(key)


def test_a_vault_rebuilt_from_the_bucket_verifies_and_proves_the_same(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    make_key: Callable[..., tuple[str, str]],
    evault: Callable[..., tuple[int, str, str]],
    into_fresh_database: Callable[..., tuple[Runtime, str]],
) -> None:
    org_id, headers = tenant
    other_org, other_raw = make_key()
    other = {"X-API-Key": other_raw}
    assert evault("org", "set-mers-id", org_id, "1234567")[0] == 0
    assert evault("org", "set-retention", org_id, "2")[0] == 0  # below the 3 days the history extends to
    registered = create_envelope(client, headers, min=make_min("1234567", 1))
    envelopes = [*_history(client, headers, other, other_org), (registered, "mine")]
    who = {"mine": headers, "theirs": other}
    before = {e: _evidence(client, e, who[o]) for e, o in envelopes}
    roots = _signed_roots(runtime)
    assert set(roots) == {org_id, other_org}
    with runtime.db.read_session() as session:
        events_before = session.exec(select(func.count()).select_from(Event)).one()

    rebuilt, out = into_fresh_database("rebuild", "--from-bucket")
    assert org_id in out and other_org in out
    try:
        report = verify_vault(rebuilt.sources())
        assert report["clean"], report["findings"]
        assert _signed_roots(rebuilt) == roots
        with rebuilt.db.session() as session:
            assert session.exec(select(func.count()).select_from(Event)).one() == events_before
            assert {s.org_id: s.size for s in session.exec(select(LogState))} == {o: r[0] for o, r in roots.items()}
        with_key_hashes(rebuilt, runtime)
        for org, (size, root) in roots.items():
            with rebuilt.db.read_session() as session:
                assert tree_for(session, org, size).root().hex() == root
        with rebuilt.db.read_session() as session:
            organisation = session.get(Organisation, org_id)
            assert organisation is not None
            assert (organisation.mers_org_id, organisation.retention_days) == ("1234567", 2)
            assert session.get(MersMin, make_min("1234567", 1)) is not None
        with TestClient(create_app(rebuilt)) as again:
            after = {e: _evidence(again, e, who[o]) for e, o in envelopes}
        for envelope_id in before:
            assert after[envelope_id] == before[envelope_id], envelope_id
    finally:
        rebuilt.close()


def test_a_database_that_holds_a_vault_is_not_rebuilt_into(
    client: TestClient[Any], tenant: tuple[str, dict[str, str]], evault: Callable[..., tuple[int, str, str]]
) -> None:
    _, headers = tenant
    _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    code, _, err = evault("rebuild", "--from-bucket")
    assert code == 1 and "Rebuild.NotEmpty" in err


class _Tampered(ObjectStore):
    """The bucket as a rebuild reads it, with one entry of the first entry bundle changed (and, with
    ``retile``, its level-0 tile recomputed to match, so only the signed root can tell)."""

    def __init__(self, store: ObjectStore, retile: bool) -> None:
        super().__init__(store.client, store.bucket)
        self.retile = retile

    def _bundle(self, blob: bytes) -> bytes:
        entries = unbundle(blob)
        entries[0] = entries[0].replace(b'"name":"', b'"name":"X', 1)
        return bundle(entries)

    def read(self, key: str, version_id: str) -> bytes:
        blob = super().read(key, version_id)
        if "/tile/entries/" in key:
            return self._bundle(blob)
        if "/tile/0/" in key and self.retile:
            entries_key = key.replace("/tile/0/", "/tile/entries/")
            entries = unbundle(self._bundle(super().read(entries_key, self.head(entries_key, None).version_id)))
            return b"".join(leaf_hash(e) for e in entries)
        return blob


@pytest.mark.parametrize("retile", [False, True], ids=["bundle-only", "bundle-and-tile"])
def test_a_log_whose_entries_do_not_hash_to_the_signed_root_is_refused(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    vault_env: dict[str, str],
    fresh_database_url: str,
    retile: bool,
) -> None:
    _, headers = tenant
    _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    target = open_runtime(Settings.from_env({**vault_env, "EVAULT_DATABASE_URL": fresh_database_url}))
    try:
        with target.db.read_session() as session:
            verifiers = [NoteVerifier.from_vkey(row.vkey) for row in generations(session)]
        tampered = _Tampered(target.authoritative, retile)
        with pytest.raises(RebuildRefused) as refused:
            rebuild(target.db, tampered, target.copies, verifiers, target.settings.vault.log_origin)
        assert refused.value.code == "Rebuild.LogMismatch"
        assert ("signed at size" in refused.value.message) == retile
        with target.db.read_session() as session:  # nothing was written
            assert session.exec(select(func.count()).select_from(Organisation)).one() == 0
        # the same bucket, read as it is, rebuilds
        done = rebuild(target.db, target.authoritative, target.copies, verifiers, target.settings.vault.log_origin)
        assert [one.envelopes for one in done] == [1]
    finally:
        target.close()


def test_every_declared_event_has_a_replay_step_and_an_unknown_one_stops_the_rebuild() -> None:
    assert set(STEPS) == set(CATALOGUE.values())
    now = dt.datetime.now(dt.UTC)
    entry = Entry("org_x", 7, "receipt.countersigned", now, "env_x", None, {})  # a type of a later version
    with pytest.raises(RebuildRefused) as refused:
        step_for(entry)(Rows(), entry)
    assert refused.value.code == "Rebuild.UnknownEvent" and "'receipt.countersigned'" in refused.value.message


def _parties(client: TestClient[Any], envelope_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{API}/envelopes/{envelope_id}", headers=headers)
    assert response.status_code == 200, response.text
    parties: list[dict[str, Any]] = response.json()["parties"]
    return parties


def _expire_claim_leases(runtime: Runtime) -> None:
    with runtime.db.session() as session:
        session.execute(update(VaultClaim).values(lease_until=utcnow() - dt.timedelta(seconds=1)))


def _log_sizes(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read_session() as session:
        return {s.org_id: s.size for s in session.exec(select(LogState))}


def test_a_restore_takes_the_log_from_the_bucket_and_the_rest_from_the_backup(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    make_key: Callable[..., tuple[str, str]],
    evault: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    into_fresh_database: Callable[..., tuple[Runtime, str]],
) -> None:
    org_id, headers = tenant
    other_org, other_raw = make_key()
    other = {"X-API-Key": other_raw}
    kept = _vaulted(client, headers)
    erased_later = create_envelope(client, headers)
    theirs = _vaulted(client, other)
    for who in (headers, other):
        assert client.post(f"{API}/log/checkpoint", headers=who).status_code == 200
    # logged after the other organisation's last checkpoint: only the database, and so the backup, holds it
    unsigned = create_envelope(client, other)

    code, out, err = evault("backup", "--to", str(tmp_path / "backup"))
    assert code == 0 and "rows" in out, err
    assert (tmp_path / "backup" / "database.json").stat().st_mode & 0o777 == 0o600

    # after the backup: an erasure and a new vault-in, checkpointed (the bucket is now ahead of the backup)
    subject = _parties(client, erased_later, headers)[0]["subject"]
    erase_subject(runtime.db, subject)
    later = _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    sizes = _log_sizes(runtime)

    restored, out = into_fresh_database("restore", "--from", str(tmp_path / "backup"))
    assert org_id in out and other_org in out
    try:
        assert _log_sizes(restored) == sizes  # the bucket's newer log, and the backup's unsigned tail
        report = verify_vault(restored.sources())
        assert report["clean"], report["findings"]
        with TestClient(create_app(restored)) as again:  # the backup's keys authenticate again
            assert _parties(again, kept, headers)[0]["state"] == "shown"
            assert _parties(again, erased_later, headers)[0]["state"] == "erased"  # the later erasure holds
            assert again.get(f"{API}/envelopes/{later}", headers=headers).json()["vault_state"] == "vaulted"
            assert _parties(again, unsigned, other)[0]["state"] == "shown"
            assert again.get(f"{API}/envelopes/{theirs}", headers=other).json()["vault_state"] == "vaulted"
    finally:
        restored.close()


@pytest.mark.parametrize("finished_after_backup", [False, True])
def test_a_restore_lays_back_the_claims_of_requests_in_flight_so_the_reconciler_finishes_them(
    finished_after_backup: bool,
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    evault: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    into_fresh_database: Callable[..., tuple[Runtime, str]],
) -> None:
    """A vault-in killed between its put and its record, and a copy killed between its put and its register,
    when the backup was taken: after the restore their claims are back, so the reconciler records the one and
    removes the other, and the verifier is clean (both objects were named by nothing before). A vault-in the
    live reconciler finished after the backup is in the bucket's log, and its claim is not laid back."""
    org_id, headers = tenant
    with runtime.db.read_session() as session:
        actor = authenticate(session, headers["X-API-Key"]).actor()

    def killed(*_: Any, **__: Any) -> None:  # no clean-up runs: the process is gone after the put
        raise SystemExit("process died after the put")

    dying = create_envelope(client, headers)
    pdf = make_pdf(text="in flight at the backup")
    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(vault_in_module, "record_claim", killed)
        vault_in_module.vault_in(runtime.custody(), actor, dying, [Upload("loan.pdf", pdf)], source="upload")
    copied = _vaulted(client, headers)
    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(retrieval, "register_copy", killed)
        retrieval.issue_copies(runtime.custody(), actor, copied)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    code, _, err = evault("backup", "--to", str(tmp_path / "backup"))
    assert code == 0, err
    if finished_after_backup:
        _expire_claim_leases(runtime)
        assert [o.outcome for o in reconcile_claims(runtime.custody(), dt.timedelta(0))] == ["completed"]
        assert len(reconcile_copy_claims(runtime.custody(), dt.timedelta(0))) == 1
        assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200

    restored, _ = into_fresh_database("restore", "--from", str(tmp_path / "backup"))
    try:
        _expire_claim_leases(restored)  # time passes: the dead requests' leases and grace run out
        in_flight = [] if finished_after_backup else [dying]
        with restored.db.read_session() as session:
            assert [c.envelope_id for c in session.exec(select(VaultClaim))] == in_flight
            assert [c.envelope_id for c in session.exec(select(CopyClaim))] == [copied]  # no register names it
        outcomes = [o.outcome for o in reconcile_claims(restored.custody(), dt.timedelta(0))]
        assert outcomes == ([] if finished_after_backup else ["completed"])
        assert len(reconcile_copy_claims(restored.custody(), dt.timedelta(0))) == 1
        report = verify_vault(restored.sources(), dt.timedelta(0))
        assert report["clean"], report["findings"]
        with TestClient(create_app(restored)) as again:
            body = again.get(f"{API}/envelopes/{dying}", headers=headers).json()
            assert body["vault"]["state"] == "vaulted"
            assert body["vault"]["documents"][0]["sha256"] == hashlib.sha256(pdf).hexdigest()
        assert list(restored.copies.list_all_versions(f"copies/{org_id}/")) == []
    finally:
        restored.close()


def test_a_backup_of_another_history_is_refused(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    vault_env: dict[str, str],
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    _, headers = tenant
    _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    write_backup(runtime.db, runtime.authoritative, runtime.copies, tmp_path / "backup")
    data = json.loads((tmp_path / "backup" / "database.json").read_text())
    first = data["tables"]["event"][0]
    entry = base64.b64decode(first["entry"]["$bytes"]).replace(b'"name":"', b'"name":"X', 1)
    first["entry"]["$bytes"] = base64.b64encode(entry).decode()
    (tmp_path / "backup" / "database.json").write_text(json.dumps(data))
    target = open_runtime(Settings.from_env({**vault_env, "EVAULT_DATABASE_URL": fresh_database_url}))
    try:
        with target.db.read_session() as session:
            verifiers = [NoteVerifier.from_vkey(row.vkey) for row in generations(session)]
        stores = (target.db, target.authoritative, target.copies, verifiers, target.settings.vault.log_origin)
        with pytest.raises(RebuildRefused) as refused:
            restore(*stores, tmp_path / "backup")
        assert refused.value.code == "Restore.Diverged"
    finally:
        target.close()


def _created(runtime: Runtime, raw_key: str, count: int) -> None:
    """``count`` envelopes created as the API creates them (``envelope.created`` each), 1,000 to a transaction:
    a history of tens of thousands of entries in minutes rather than an hour of requests."""
    with runtime.db.read_session() as session:
        actor = authenticate(session, raw_key).actor()
    for start in range(0, count, 1000):
        with runtime.db.session() as session:
            for _ in range(min(1000, count - start)):
                create_envelope_row(session, actor, NewEnvelope(kind="paper", title="Loan 1001"))


@pytest.mark.parametrize(
    "batches",
    [
        pytest.param((260, 3), id="across-one-tile"),
        # 66,113 envelopes, so over 66,113 entries: 258 full tiles at level 0, a full one at level 1 (65,536
        # entries), partial ones above and at the right edge, each checkpoint leaving partial tiles of its width.
        pytest.param((300, 3, 65_560, 250), id="a-full-level-1-tile", marks=pytest.mark.slow),
    ],
)
def test_a_log_across_tile_boundaries_is_rebuilt_from_its_full_and_partial_tiles(
    batches: tuple[int, ...],
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    into_fresh_database: Callable[..., tuple[Runtime, str]],
) -> None:
    org_id, headers = tenant
    for count in batches:
        _created(runtime, headers["X-API-Key"], count)
        assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    roots = _signed_roots(runtime)
    size = roots[org_id][0]
    assert size > sum(batches)  # and the organisation's, its key's and the head map's entries
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(Event)).one() == size
    rebuilt, _ = into_fresh_database("rebuild", "--from-bucket")
    try:
        assert _signed_roots(rebuilt) == roots
        with rebuilt.db.read_session() as session:
            assert session.exec(select(func.count()).select_from(Event)).one() == size
            assert tree_for(session, org_id, size).root().hex() == roots[org_id][1]
        report = verify_vault(rebuilt.sources())
        assert report["clean"], report["findings"]
    finally:
        rebuilt.close()
