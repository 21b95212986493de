"""Faults are ours: a store that is down is a 503 with ``Retry-After`` on every route, and our own damaged log is
a 500 that says so, never a 4xx that blames the caller (issue 21)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import text

from storage.embedded_s3 import EmbeddedS3
from storage.log_tiles import SqlTileStore
from storage.settings import Settings
from tests.helpers import API, create_envelope, disarm_triggers, store_env, upload
from tests.pdf_factory import make_pdf
from tests.test_fault_injection import own_store  # noqa: F401  (fixture)
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation


def test_store_down_is_503_for_checkpoints_and_proofs(vault_env: dict[str, str], own_store: EmbeddedS3) -> None:  # noqa: F811
    runtime = open_runtime(Settings.from_env({**vault_env, **store_env(own_store, uuid.uuid4().hex[:10])}))
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Store down").id
        headers = {"X-API-Key": create_api_key(session, org_id, "all", list(SCOPES))[1]}
    try:
        with TestClient(create_app(runtime)) as client:
            envelope_id = create_envelope(client, headers)
            assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
            own_store.stop(timeout=3)
            try:
                for response in (
                    client.post(f"{API}/log/checkpoint", headers=headers),
                    client.get(f"{API}/log/checkpoint", headers=headers),
                    client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers),
                ):
                    assert (response.status_code, response.json()["code"]) == (503, "Storage.Unavailable"), (
                        response.text
                    )
                    assert int(response.headers["Retry-After"]) > 0
            finally:
                own_store.start()
            assert client.get(f"{API}/envelopes/{envelope_id}/proof", headers=headers).status_code == 200
    finally:
        runtime.close()


def test_a_tile_missing_from_our_database_is_500_log_corrupt(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, make_pdf()).status_code == 201
    # The tiles are there, read from the database: no proof has read them, so this process keeps none in memory
    # (storage/shared_tiles.py: a committed tile a proof has read is served from memory after; the verifier's
    # audit reads the database).
    with runtime.db.read_session() as session:
        assert SqlTileStore(session, org_id).read_tiles([(0, 0)])
    with runtime.db.session() as session:
        disarm_triggers(session, "log_tile")
        session.execute(text("DELETE FROM log_tile WHERE org_id = :org"), {"org": org_id})
    for url in (
        f"{API}/log/proof/inclusion?leaf_index=0&tree_size=2",
        f"{API}/log/proof/consistency?first=1&second=2",
        f"{API}/envelopes/{envelope_id}/proof",
    ):
        response = client.get(url, headers=headers)
        assert (response.status_code, response.json()["code"]) == (500, "Log.Corrupt"), response.text
