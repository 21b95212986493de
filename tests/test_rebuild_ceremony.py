"""A vault that ran e-sign ceremonies, rebuilt from the WORM bucket (and restored with a backup).

Through the HTTP API, as in tests/test_ceremony.py: one ceremony completed (signed by two, viewed by a third, the
sealed PDF vaulted in), one in progress (sent, the first of two signed, the second viewed, reminded) and one
declined. The database is then thrown away. Rebuilt from the bucket alone, the vault verifies clean, serves the
same proof bundles and certificates, and reads the same ceremonies (statuses, order, fields, times) except the
people's names and emails, which the log holds only as commitments. The ceremony in progress finishes on the
rebuilt vault with new links; one whose staged document is gone too refuses its links with a clear 410.
Restored with a backup, the names, emails and the old links come back too, and a signature logged after the
backup is kept (marked as still awaiting its off-log values).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient
from sqlmodel import col, select

from compliance.verifier import verify_vault
from storage.models import ApiKey, Ceremony, Recipient
from tests.ceremony_helpers import SIGNERS, VIEWER, consent_and_sign, links, png_data_url, roster, sent_envelope
from tests.helpers import API
from tests.test_rebuild import _evidence, fresh_database_url, into_fresh_database  # noqa: F401 (fixtures)
from vault.api.app import create_app
from vault.rebuild.replay import STEPS
from vault.rebuild.rows import Entry, Rows
from vault.runtime import Runtime

pytestmark = pytest.mark.s3

ADA, BOB, VERA = SIGNERS[0]["email"], SIGNERS[1]["email"], VIEWER["email"]
PERSONAL = ("name", "email")  # what a rebuild from the log alone cannot show


def _ceremonies(client: TestClient[Any], headers: dict[str, str]) -> dict[str, str]:
    """A completed, an in-progress and a declined ceremony, checkpointed: their envelope ids by name."""
    done = sent_envelope(client, headers)
    paths = links(client, headers, done)
    assert client.get(f"{paths[VERA]}/state").status_code == 200
    assert consent_and_sign(client, paths[ADA], "Ada B. Borrower").status_code == 200
    drawn, _ = png_data_url()
    assert client.post(f"{paths[BOB]}/consent").status_code == 200
    signed = client.post(f"{paths[BOB]}/sign", json={"signature": {"type": "drawn", "name": "Bob C.", "image": drawn}})
    assert signed.status_code == 200 and signed.json()["envelope_status"] == "completed", signed.text

    midway = sent_envelope(client, headers, roster(viewer=False))
    paths = links(client, headers, midway)
    assert consent_and_sign(client, paths[ADA], "Ada B. Borrower").status_code == 200
    assert client.get(f"{paths[BOB]}/state").status_code == 200
    assert client.post(f"{API}/envelopes/{midway}/remind", headers=headers).status_code == 200

    declined = sent_envelope(client, headers, roster(viewer=False))
    ada = links(client, headers, declined)[ADA]
    assert client.post(f"{ada}/decline", json={"reason": "the amount is wrong"}).status_code == 200
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    return {"done": done, "midway": midway, "declined": declined}


def _state(client: TestClient[Any], headers: dict[str, str], ids: dict[str, str]) -> dict[str, Any]:
    return {name: _evidence(client, envelope_id, headers) for name, envelope_id in ids.items()}


def _without_people(state: dict[str, Any]) -> dict[str, Any]:
    """The state with each recipient's name and email taken out (the log holds commitments to them only)."""
    out = {}
    for name, found in state.items():
        view = dict(found["view"])
        view["recipients"] = [{k: v for k, v in r.items() if k not in PERSONAL} for r in view["recipients"]]
        out[name] = {**found, "view": view}
    return out


def _finish(client: TestClient[Any], headers: dict[str, str], envelope_id: str, bob: str) -> None:
    """Bob signs through ``bob`` (a link path): the ceremony completes and is vaulted in."""
    assert client.post(f"{bob}/consent").status_code == 200
    assert client.get(f"{bob}/document").status_code == 200
    signed = client.post(f"{bob}/sign", json={"signature": {"type": "typed", "name": "Bob C."}})
    assert signed.status_code == 200 and signed.json()["envelope_status"] == "completed", signed.text
    view = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()
    assert (view["status"], view["vault"]["state"], view["vault"]["source"]) == ("completed", "vaulted", "signed")


def test_ceremonies_rebuilt_from_the_bucket_read_the_same_and_one_in_progress_finishes(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    into_fresh_database: Callable[..., tuple[Runtime, str]],  # noqa: F811
) -> None:
    org_id, headers = tenant
    ids = _ceremonies(client, headers)
    # A ceremony in progress whose staged document is gone too (the staging bucket is not WORM).
    lost = sent_envelope(client, headers, roster(viewer=False))
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    with runtime.db.read_session() as session:
        staged = session.get(Ceremony, lost)
    assert staged is not None and staged.s3_key and staged.s3_version_id
    runtime.custody().staging_store.delete_version(staged.s3_key, staged.s3_version_id)
    ids["lost"] = lost
    before = _state(client, headers, ids)
    assert before["done"]["view"]["recipients"][0]["name"] == "Ada Borrower"
    old_bob = links(client, headers, ids["midway"])[BOB]
    with runtime.db.read_session() as session:
        key_hashes = {k.id: k.key_hash for k in session.exec(select(ApiKey))}

    rebuilt, out = into_fresh_database("rebuild", "--from-bucket")
    assert org_id in out
    try:
        with rebuilt.db.session() as session:  # the log keeps no key hash: laid back as a restore would
            for key in session.exec(select(ApiKey)):
                key.key_hash = key_hashes[key.id]
                session.add(key)
        report = verify_vault(rebuilt.sources())
        assert report["clean"], report["findings"]
        with TestClient(create_app(rebuilt)) as again:
            after = _state(again, headers, ids)
            assert _without_people(after) == _without_people(before)
            for found in after.values():
                assert all(r["name"] is None and r["email"] is None for r in found["view"]["recipients"])
            # The old link's nonce is not in the log: it no longer opens; the new one does, and the ceremony ends.
            assert again.get(f"{old_bob}/state").status_code == 404
            answer = again.get(f"{API}/envelopes/{ids['midway']}/signing-links", headers=headers)
            assert answer.status_code == 200, answer.text
            new = {link["order"]: urlsplit(link["url"]).path for link in answer.json()["links"]}
            assert all(link["email"] is None for link in answer.json()["links"])
            _finish(again, headers, ids["midway"], new[2])
            # Nothing to sign without the document: every link says so, and the sender can void the envelope.
            first = urlsplit(
                again.get(f"{API}/envelopes/{lost}/signing-links", headers=headers).json()["links"][0]["url"]
            )
            refused = again.get(f"{first.path}/state")
            assert (refused.status_code, refused.json()["code"]) == (410, "Ceremony.DocumentMissing")
            voided = again.post(f"{API}/envelopes/{lost}/void", json={"reason": "resend"}, headers=headers)
            assert voided.status_code == 200, voided.text
        with rebuilt.db.read_session() as session:
            pending = session.exec(select(Recipient).where(Recipient.envelope_id == ids["done"])).all()
            assert pending and all(r.restore_pending for r in pending)
            ceremony = session.get(Ceremony, ids["midway"])
            assert ceremony is not None and ceremony.s3_version_id  # the staged document, found in staging
        assert verify_vault(rebuilt.sources())["clean"]
    finally:
        rebuilt.close()


def test_ceremonies_restored_with_a_backup_read_the_same_and_the_old_links_work(
    runtime: Runtime,
    client: TestClient[Any],
    tenant: tuple[str, dict[str, str]],
    evault: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    into_fresh_database: Callable[..., tuple[Runtime, str]],  # noqa: F811
) -> None:
    _, headers = tenant
    ids = _ceremonies(client, headers)
    ids["fresh"] = sent_envelope(client, headers, roster(viewer=False))  # nobody has acted on it yet
    old = {name: links(client, headers, ids[name]) for name in ("midway", "fresh")}
    code, _, err = evault("backup", "--to", str(tmp_path / "backup"))
    assert code == 0, err
    # After the backup, and checkpointed: Bob signs the ceremony in progress (no backup holds his signature).
    _finish(client, headers, ids["midway"], old["midway"][BOB])
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    before = _state(client, headers, ids)

    restored, _ = into_fresh_database("restore", "--from", str(tmp_path / "backup"))
    try:
        assert verify_vault(restored.sources())["clean"]
        with TestClient(create_app(restored)) as again:
            assert _state(again, headers, ids) == before  # names and emails too
            # The old links are genuine again: Bob's is used up, and Ada signs the fresh ceremony through hers.
            used = again.get(f"{old['midway'][BOB]}/state")
            assert (used.status_code, used.json()["code"]) == (409, "Signing.LinkUsed")
            assert consent_and_sign(again, old["fresh"][ADA], "Ada B. Borrower").status_code == 200
        with restored.db.read_session() as session:
            pending = session.exec(select(Recipient).where(col(Recipient.restore_pending).is_(True))).all()
            done = session.exec(select(Recipient).where(Recipient.envelope_id == ids["done"])).all()
        # Only the signature logged after the backup: its adopted name and image are in no backup.
        assert [(r.envelope_id, r.signing_order, r.signature) for r in pending] == [
            (ids["midway"], 2, {"type": "typed"})
        ]
        assert {r.signature["name"] for r in done if r.signature} == {"Ada B. Borrower", "Bob C."}
        assert verify_vault(restored.sources())["clean"]
    finally:
        restored.close()


def test_a_sent_entry_logged_before_it_named_subjects_and_fields_rebuilds_without_fields() -> None:
    """An ``envelope.sent`` of an earlier version (field counts, no subjects, places or placements) is not refused:
    its recipients pair with the signers' commitments in roster order and come back without fields."""
    now = dt.datetime.now(dt.UTC)
    rows, envelope_id = Rows(), f"env_{uuid.uuid4().hex[:20]}"
    created = {"kind": "esign", "title": "t", "external_id": None, "parties": [], "secured_party": None}
    legacy = {
        "document": {"id": "up_00000001", "filename": "a.pdf", "sha256": "0" * 64, "pages": 2},
        "recipients": [
            {"recipient_id": "rcp_a", "role": "signer", "order": 1, "fields": 2},
            {"recipient_id": "rcp_b", "role": "signer", "order": 2, "fields": 1},
        ],
        "signers": [{"subject": "sub_a", "commitment": "1" * 64}, {"subject": "sub_b", "commitment": "2" * 64}],
    }
    for index, (kind, data) in enumerate([("envelope.created", created), ("envelope.sent", legacy)]):
        entry = Entry("org_00000001", index, kind, now, envelope_id, "key_00000001", data)
        STEPS[next(e for e in STEPS if e.name == kind)](rows, entry)
    assert [(r.subject_id, r.position, r.fields, r.restore_pending) for r in rows.recipients.values()] == [
        ("sub_a", 0, [], True),
        ("sub_b", 1, [], True),
    ]
    ceremony = rows.ceremonies[envelope_id]
    assert (ceremony.size, ceremony.pages, rows.envelopes[envelope_id].status) == (None, None, "sent")
    assert set(rows.subjects) == {"sub_a", "sub_b"}


def test_a_recipient_erased_before_send_rebuilds_erased_and_is_not_refused() -> None:
    """``evault erase`` may erase a draft's recipient, whom the log names only at send: the rebuild keeps them
    erased from that moment instead of refusing an erasure of a subject it had not met yet."""
    start = dt.datetime.now(dt.UTC)
    rows, envelope_id = Rows(), f"env_{uuid.uuid4().hex[:20]}"
    created = {"kind": "esign", "title": "t", "external_id": None, "parties": [], "secured_party": None}
    document = {"id": "up_00000001", "filename": "a.pdf", "sha256": "0" * 64, "pages": 1, "size": 9}
    listed = [
        {"recipient_id": f"rcp_{w}0000000", "role": "signer", "order": 1, "fields": 0, "position": i, "placements": []}
        for i, w in enumerate("ab")
    ]
    subjects = ["sub_a0000000", "sub_b0000000"]
    sent = {
        "document": {**document, "page_sizes": [[612.0, 792.0]]},
        "recipients": listed,
        "signers": [],
        "subjects": subjects,
    }
    history = [("envelope.created", created), ("subject.erased", {"subject": "sub_a0000000"}), ("envelope.sent", sent)]
    for index, (kind, data) in enumerate(history):
        entry = Entry("org_00000001", index, kind, start + dt.timedelta(seconds=index), envelope_id, None, data)
        STEPS[next(e for e in STEPS if e.name == kind)](rows, entry)
    assert [r.subject_id for r in rows.recipients.values()] == ["sub_a0000000", "sub_b0000000"]
    assert rows.subjects["sub_a0000000"].erased_at == start + dt.timedelta(seconds=1)
    assert rows.ceremonies[envelope_id].pages == [[612.0, 792.0]]
