"""Reads never mint permanent objects: they reuse the latest checkpoint when it is fresh enough, and a new one
on request needs ``vault:write`` and a share of the organisation's quota (issue 20: a read-only key had
minted 132 locked checkpoint objects in 120 s)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from storage.settings import Settings
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime

READ_ONLY = ["envelopes:read", "compliance:read"]


def _worm_checkpoints(runtime: Runtime, org_id: str) -> list[str]:
    return [e.key for e in runtime.authoritative.list_entries(f"log/{org_id}/checkpoint/")]


def _refused(response: Any, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert int(response.headers["Retry-After"]) > 0


def test_read_only_keys_reuse_the_latest_checkpoint_and_never_sign(
    client: Any, runtime: Runtime, tenant: Any, make_key: Any
) -> None:
    org_id, writer = tenant
    envelope_id = create_envelope(client, writer)
    assert upload(client, writer, envelope_id, make_pdf()).status_code == 201
    _, raw = make_key(READ_ONLY, org_id=org_id)
    reader = {"X-API-Key": raw}
    compliance = f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now"
    proof = f"{API}/envelopes/{envelope_id}/proof"

    # Nothing signed yet: every read that would need a new checkpoint is refused, and nothing is written.
    for url in (compliance, proof, f"{API}/log/checkpoint"):
        _refused(client.get(url, headers=reader), 403, "Checkpoint.WriteScopeRequired")
    scoped = client.post(f"{API}/log/checkpoint", headers=reader)
    assert (scoped.status_code, scoped.json()["code"]) == (403, "Auth.InsufficientScope")
    assert _worm_checkpoints(runtime, org_id) == []

    signed = client.post(f"{API}/log/checkpoint", headers=writer)
    assert signed.status_code == 200, signed.text
    assert len(_worm_checkpoints(runtime, org_id)) == 1

    # Fresh: every read reuses it, however often.
    for _ in range(5):
        assert client.get(compliance, headers=reader).json()["verdict"] == "pass"
        assert client.get(proof, headers=reader).json()["checkpoint"] == signed.json()["note"]
        assert client.get(f"{API}/log/checkpoint", headers=reader).json() == signed.json()
        assert client.get(f"{API}/envelopes/{envelope_id}/vault/certificate", headers=reader).status_code == 200
    assert client.post(f"{API}/log/checkpoint", headers=writer).json() == signed.json()
    assert len(_worm_checkpoints(runtime, org_id)) == 1

    # The log grows elsewhere: this envelope's proof still rests on the latest checkpoint, and a read-only key
    # is shown the latest (its size says what it covers) instead of making a new one.
    other = create_envelope(client, writer)
    assert client.get(proof, headers=reader).status_code == 200
    assert client.get(f"{API}/log/checkpoint", headers=reader).json() == signed.json()
    _refused(client.get(f"{API}/envelopes/{other}/proof", headers=reader), 403, "Checkpoint.WriteScopeRequired")
    assert len(_worm_checkpoints(runtime, org_id)) == 1
    assert client.get(f"{API}/envelopes/{other}/proof", headers=writer).status_code == 200
    assert len(_worm_checkpoints(runtime, org_id)) == 2


@pytest.fixture
def stingy(vault_env: dict[str, str]) -> Iterator[tuple[Runtime, TestClient[Any]]]:
    opened = open_runtime(Settings.from_env({**vault_env, "EVAULT_RATE_LIMIT_CHECKPOINTS": "2/3600"}))
    try:
        with TestClient(create_app(opened)) as test_client:
            yield opened, test_client
    finally:
        opened.close()


def test_checkpoints_on_request_are_rate_limited_per_organisation(stingy: tuple[Runtime, Any]) -> None:
    from vault.tenancy import SCOPES, create_api_key, create_organisation

    runtime, client = stingy
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Busy Lender").id
        other_org = create_organisation(session, "Quiet Lender").id
        keys = [create_api_key(session, org_id, f"key {n}", list(SCOPES))[1] for n in range(2)]
        other = create_api_key(session, other_org, "other", list(SCOPES))[1]
    first, second = ({"X-API-Key": raw} for raw in keys)
    sizes = []
    for _ in range(2):
        create_envelope(client, first)
        answer = client.post(f"{API}/log/checkpoint", headers=first)
        assert answer.status_code == 200, answer.text
        sizes.append(answer.json()["size"])
    envelope_id = create_envelope(client, second)
    for attempt in (
        client.post(f"{API}/log/checkpoint", headers=second),  # another key of the same organisation
        client.get(f"{API}/envelopes/{envelope_id}/compliance?checkpoint=now", headers=first),
        client.get(f"{API}/envelopes/{envelope_id}/proof", headers=first),
    ):
        _refused(attempt, 429, "Checkpoint.RateLimited")
    assert len(_worm_checkpoints(runtime, org_id)) == 2
    # A plain read still answers, with the latest checkpoint there is.
    assert client.get(f"{API}/log/checkpoint", headers=first).json()["size"] == sizes[-1]
    # The quota is the organisation's: another one is not held up.
    create_envelope(client, {"X-API-Key": other})
    assert client.post(f"{API}/log/checkpoint", headers={"X-API-Key": other}).status_code == 200
