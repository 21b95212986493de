"""One rule decides whether the latest checkpoint is fresh enough: the log API and proof bundles agree on it."""

from __future__ import annotations

from typing import Any

from sqlmodel import func, select

from storage.models import Checkpoint
from tests.helpers import API, create_envelope, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _checkpoints(runtime: Runtime, org_id: str) -> int:
    with runtime.db.read_session() as session:
        return int(session.exec(select(func.count()).where(Checkpoint.org_id == org_id)).one())


def test_log_api_and_bundles_answer_with_the_same_fresh_checkpoint(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf(pages=1)).status_code == 201

    bundle = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers)
    assert bundle.status_code == 200, bundle.text
    signed = _checkpoints(runtime, org_id)
    latest = client.get(f"{API}/log/checkpoint", headers=headers).json()
    again = client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).json()

    assert latest["note"] == bundle.json()["checkpoint"] == again["checkpoint"]
    assert _checkpoints(runtime, org_id) == signed, "a fresh checkpoint is reused, never signed again"


def test_a_checkpoint_that_does_not_cover_the_envelope_is_not_fresh(client: Any, tenant: Any) -> None:
    _, headers = tenant
    first = create_envelope(client, headers)
    assert upload(client, headers, first, make_pdf(pages=1)).status_code == 201
    old = client.get(f"{API}/log/checkpoint", headers=headers).json()

    second = create_envelope(client, headers)
    assert upload(client, headers, second, make_pdf(pages=1)).status_code == 201
    bundle = client.get(f"{API}/envelopes/{second}/proof", headers=headers).json()

    assert bundle["checkpoint"] != old["note"]
    assert client.get(f"{API}/log/checkpoint", headers=headers).json()["note"] == bundle["checkpoint"]
