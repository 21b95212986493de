"""Shared fixtures: a real SeaweedFS for the session; per test, a fresh database and fresh buckets.

``EVAULT_TEST_DATABASE_URL`` (a PostgreSQL URL) runs every test against PostgreSQL in a database of its own
(a copy of one migrated once per session), or for tests of migrations an empty schema of its own, dropped
afterwards; without it each test gets its own SQLite file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from storage.db import Database
from storage.embedded_s3 import EmbeddedS3
from storage.settings import Settings
from tests.helpers import copy_of, migrated_template, own_database, store_env
from vault.api.app import create_app
from vault.cli.main import main as evault_main
from vault.runtime import Runtime, open_runtime
from vault.tenancy import SCOPES, create_api_key, create_organisation

pytest_plugins = ["tests.fixtures_s3", "tests.pg_cluster"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy variants (marked ``slow``) run only when the mark expression names them (``-m slow``): every other
    run, CI's included, leaves them out (deselected, not skipped) without each lane's expression saying so."""
    if "slow" in (config.option.markexpr or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with own_database(tmp_path, "evault") as url:
        yield url


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per session, which each test's ``migrated_database_url`` starts as a
    copy of: a migration from empty costs ~0.5 s, a thousand times over in a pass."""
    with migrated_template(tmp_path_factory.mktemp("migrated")) as template:
        yield template


@pytest.fixture
def migrated_database_url(template_database: str, tmp_path: Path) -> Iterator[str]:
    """This test's database, at head from the start. Tests of migrations use ``database_url``, empty."""
    with copy_of(template_database, tmp_path) as url:
        yield url


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[Database]:
    """This test's database, migrated, without a service around it."""
    database = Database(migrated_database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def vault_env(embedded_s3: EmbeddedS3, migrated_database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "EVAULT_DATA_DIR": str(tmp_path / "data"),
        "EVAULT_DATABASE_URL": migrated_database_url,
        **store_env(embedded_s3, uuid.uuid4().hex[:10]),
        "EVAULT_RETENTION_DAYS": "1",
        "EVAULT_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "EVAULT_RATE_LIMIT": "100000/60",  # tests that count requests set their own
        "EVAULT_RATE_LIMIT_COPIES": "100000/60",
        # the suite is a shared host (two passes on two cores): niced PDF workers would wait behind the other
        # pass, and a large document's job would be starved past its wall clock (docs/isolation.md, Niceness)
        "EVAULT_PDF_WORKER_NICE": "0",
    }


@pytest.fixture
def runtime(vault_env: dict[str, str]) -> Iterator[Runtime]:
    opened = open_runtime(Settings.from_env(vault_env))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def make_key(runtime: Runtime) -> Callable[..., tuple[str, str]]:
    """Return (org_id, raw key) for a new organisation (or ``org_id``) with the given scopes."""

    def make(scopes: list[str] | None = None, org_id: str | None = None) -> tuple[str, str]:
        with runtime.db.session() as session:
            if org_id is None:
                org_id = create_organisation(session, f"Org {uuid.uuid4().hex[:6]}").id
            _, raw = create_api_key(session, org_id, "test key", scopes or list(SCOPES))
        return org_id, raw

    return make


@pytest.fixture
def tenant(make_key: Callable[..., tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """An organisation with an all-scopes key, as (org_id, headers)."""
    org_id, raw = make_key()
    return org_id, {"X-API-Key": raw}


@pytest.fixture
def evault(
    vault_env: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``evault ARGS`` in-process against the runtime's (migrated) database: (exit code, stdout, stderr)."""
    for name, value in vault_env.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = evault_main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
