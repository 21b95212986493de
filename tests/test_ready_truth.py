"""``/ready`` tells the truth: 503 naming the failing part when the database, a bucket or the boundary is not
what the service needs.

Before, three states were reported ready: the SQLite file removed from under the service (pooled connections
kept answering from the unlinked file), the copies (and staging) bucket deleted or without versioning (only the
authoritative bucket was looked at), and an unprotected store (accepted to run without its network
namespace, its master's admin API open on the host's loopback).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from storage.embedded_s3 import EmbeddedS3
from storage.settings import Settings
from tests.fixtures_s3 import s3_port_base
from tests.pg_cluster import PrivateCluster
from tests.ports import aux_port
from vault.api.app import create_app
from vault.runtime import Runtime, open_runtime


@pytest.fixture
def ready_runtime(vault_env: dict[str, str], tmp_path: Path) -> Iterator[Runtime]:
    """A vault on a SQLite file of its own (whatever the pass), its checkpointer running."""
    env = {**vault_env, "EVAULT_DATABASE_URL": f"sqlite:///{tmp_path / 'ready.sqlite3'}"}
    opened = open_runtime(Settings.from_env(env))
    opened.start_checkpointer()
    try:
        yield opened
    finally:
        opened.embedded_s3 = None  # a store a test attached is not this runtime's to stop
        opened.close()


def _ready(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    with TestClient(create_app(runtime)) as client:
        response = client.get("/ready")
    return response.status_code, response.json()


def _failing(runtime: Runtime) -> tuple[list[str], dict[str, str]]:
    status, body = _ready(runtime)
    assert status == 503 and body["code"] == "Service.NotReady", body
    return body["details"]["failing"], body["details"]["checks"]


@pytest.mark.once
def test_sqlite_file_removed_or_replaced_is_not_ready(ready_runtime: Runtime, tmp_path: Path) -> None:
    assert _ready(ready_runtime)[0] == 200
    path = tmp_path / "ready.sqlite3"
    path.rename(tmp_path / "moved.sqlite3")
    failing, checks = _failing(ready_runtime)
    assert failing == ["database"] and "gone" in checks["database"]
    path.write_bytes(b"")  # another (empty) file at the path
    failing, checks = _failing(ready_runtime)
    assert failing == ["database"] and "not the one" in checks["database"]
    path.unlink()
    (tmp_path / "moved.sqlite3").rename(path)  # the same file back: ready again
    assert _ready(ready_runtime)[0] == 200


@pytest.mark.once
def test_postgres_stopped_is_not_ready(vault_env: dict[str, str]) -> None:
    cluster = PrivateCluster(aux_port("ready_pg"))
    try:
        cluster.init()
        cluster.start()
        env = {**vault_env, "EVAULT_DATABASE_URL": cluster.url, "EVAULT_DATABASE_TIMEOUT": "2"}
        runtime = open_runtime(Settings.from_env(env))
        runtime.start_checkpointer()
        try:
            assert _ready(runtime)[0] == 200
            cluster.stop()
            failing, _ = _failing(runtime)
            assert "database" in failing
        finally:
            runtime.close()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.mark.once
def test_a_missing_or_unversioned_copies_bucket_is_not_ready(ready_runtime: Runtime, s3_admin_client: Any) -> None:
    assert _ready(ready_runtime)[0] == 200
    bucket = ready_runtime.settings.s3.copies_bucket
    s3_admin_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    failing, checks = _failing(ready_runtime)
    assert failing == ["copies_bucket"] and "versioning is Suspended" in checks["copies_bucket"]
    s3_admin_client.delete_bucket(Bucket=bucket)
    failing, checks = _failing(ready_runtime)
    assert failing == ["copies_bucket"] and "does not exist" in checks["copies_bucket"]


@pytest.mark.once
def test_a_store_without_its_boundary_is_not_ready(
    ready_runtime: Runtime, embedded_s3: EmbeddedS3, tmp_path: Path
) -> None:
    # The session's store is in its own network namespace: ready, and the check says so.
    ready_runtime.embedded_s3 = embedded_s3
    status, body = _ready(ready_runtime)
    assert status == 200 and body["checks"]["store_boundary"] == "ok" and body["boundary"] == "netns", body
    # No namespace can be made (no unshare), the operator accepted that: weed runs, its master on the host.
    base = s3_port_base() + 70
    store = EmbeddedS3(tmp_path / "store", base, buckets=(), unprotected=True, unshare="/nonexistent/unshare")
    store.start()
    try:
        with socket.create_connection(("127.0.0.1", store.ports.master), timeout=2):
            pass  # what the boundary exists to prevent
        ready_runtime.embedded_s3 = store
        status, body = _ready(ready_runtime)
        assert status == 503 and body["details"]["failing"] == ["store_boundary"], body
        assert body["details"]["boundary"] == "unprotected"
        assert "open to every local process" in body["details"]["checks"]["store_boundary"]
    finally:
        ready_runtime.embedded_s3 = None
        store.stop(timeout=3)
