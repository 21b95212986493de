"""Pytest fixtures for a real, locked-down embedded SeaweedFS shared by the whole session.

Load with ``pytest_plugins = ["tests.fixtures_s3"]`` or ``pytest -p tests.fixtures_s3``. The port base comes
from ``EVAULT_TEST_S3_PORT_BASE`` so parallel runs on one machine do not collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storage.buckets import ensure_bucket
from storage.embedded_s3 import EmbeddedS3
from storage.s3_client import make_s3_client


def s3_port_base() -> int:
    return int(os.environ.get("EVAULT_TEST_S3_PORT_BASE", "28330"))


@pytest.fixture(scope="session")
def embedded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    server = EmbeddedS3(tmp_path_factory.mktemp("embedded-s3"), s3_port_base(), buckets=(), unprotected=False)
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=3)  # thrown away: weed's graceful exit on SIGTERM took ~15 s of every session's end


@pytest.fixture(scope="session")
def s3_client(embedded_s3: EmbeddedS3) -> Any:
    """The service identity: objects only; it cannot create buckets."""
    ep = embedded_s3.endpoint
    return make_s3_client(ep.url, ep.access_key, ep.secret_key, ep.region)


@pytest.fixture(scope="session")
def s3_admin_client(embedded_s3: EmbeddedS3) -> Any:
    """The bucket-creating identity (what EmbeddedS3 uses at start-up)."""
    ep = embedded_s3.admin_endpoint
    return make_s3_client(ep.url, ep.access_key, ep.secret_key, ep.region)


def _unique_bucket(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def worm_bucket(s3_admin_client: Any) -> str:
    """A fresh Object Lock bucket; locked objects cannot be removed, so it is left behind on purpose."""
    bucket = _unique_bucket("worm")
    ensure_bucket(s3_admin_client, bucket, object_lock=True)
    return bucket


@pytest.fixture
def plain_bucket(s3_admin_client: Any) -> str:
    bucket = _unique_bucket("plain")
    ensure_bucket(s3_admin_client, bucket, object_lock=False)
    return bucket
