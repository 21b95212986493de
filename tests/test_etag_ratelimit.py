"""ETags, conditional requests (If-Match on every mutation, If-None-Match on reads) and rate limits."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import col, select

from storage.models import Event, StagedDocument
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _events(runtime: Runtime, envelope_id: str) -> list[str]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.envelope_id == envelope_id).order_by(col(Event.chain_seq)))
        return [e.event_type for e in rows]


def _etag(client: Any, headers: dict[str, str], envelope_id: str) -> str:
    tag: str = client.get(f"{API}/envelopes/{envelope_id}", headers=headers).headers["etag"]
    return tag


def test_etag_changes_with_state_not_with_urls_or_copies(client: Any, tenant: Any) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    created = _etag(client, headers, envelope_id)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    vaulted = _etag(client, headers, envelope_id)
    assert vaulted != created
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url", headers=headers).status_code == 200
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200
    assert _etag(client, headers, envelope_id) == vaulted
    unchanged = client.get(f"{API}/envelopes/{envelope_id}", headers={**headers, "If-None-Match": vaulted})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == vaulted
    stale = client.get(f"{API}/envelopes/{envelope_id}", headers={**headers, "If-None-Match": created})
    assert stale.status_code == 200


@pytest.mark.parametrize("operation", ["void", "upload", "vault-in", "vault-out"])
def test_stale_if_match_is_412_and_changes_nothing(client: Any, runtime: Runtime, tenant: Any, operation: str) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    if operation == "vault-out":
        assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    stale = _etag(client, headers, envelope_id)
    assert client.post(
        f"{API}/envelopes/{envelope_id}/upload",
        content=make_pdf(),
        headers={**headers, "Content-Type": "application/pdf"},
    ).status_code in (201, 409)
    current = _etag(client, headers, envelope_id)
    assert current != stale or operation == "vault-out"
    if operation == "vault-out":  # nothing else moves a vaulted envelope: make the tag stale by hand
        stale = f'"{envelope_id}.1"'
    before = _events(runtime, envelope_id)
    with runtime.db.read_session() as session:
        staged_before = len(list(session.exec(select(StagedDocument))))

    def call(tag: str) -> Any:
        h = {**headers, "If-Match": tag}
        url = f"{API}/envelopes/{envelope_id}"
        if operation == "void":
            return client.post(f"{url}/void", json={"reason": "x"}, headers=h)
        if operation == "upload":
            return client.post(f"{url}/upload", content=make_pdf(), headers={**h, "Content-Type": "application/pdf"})
        if operation == "vault-in":
            return client.post(
                f"{url}/vault-in-upload", content=make_pdf(), headers={**h, "Content-Type": "application/pdf"}
            )
        return client.post(f"{url}/vault-out", json={"reason": "payoff"}, headers=h)

    refused = call(stale)
    assert refused.status_code == 412, refused.text
    assert refused.json()["code"] == "Envelope.PreconditionFailed"
    assert refused.json()["details"]["etag"] == current
    assert _events(runtime, envelope_id) == before
    assert _etag(client, headers, envelope_id) == current
    with runtime.db.read_session() as session:
        assert len(list(session.exec(select(StagedDocument)))) == staged_before
    accepted = call(current)
    assert accepted.status_code in (200, 201), accepted.text
    assert accepted.headers["etag"] != current
