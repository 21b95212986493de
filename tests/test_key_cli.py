"""``evault org`` and ``evault key``: in-process against a migrated database, and as subprocesses beside a live
``evault serve``. The commands open only the database; a missing or unmigrated one is refused with exit 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import col, select

from compliance.errors import Conflict
from storage.db import MIGRATIONS, Database
from storage.ids import as_utc, utcnow
from storage.models import ApiKey, Event
from tests.helpers import API, together
from tests.ports import aux_port
from vault.cli.main import main
from vault.keys import revoke_key, rotate_key
from vault.runtime import Runtime
from vault.tenancy import KEY_PATTERN, create_api_key, create_organisation, hash_key

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 4


def _json(result: tuple[int, str, str]) -> Any:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def _events(runtime: Runtime, org_id: str) -> list[dict[str, Any]]:
    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(Event.org_id == org_id).order_by(col(Event.leaf_index)))
        return [json.loads(row.entry) for row in rows]


def _stored(runtime: Runtime, key_id: str) -> ApiKey:
    with runtime.db.read_session() as session:
        key = session.get(ApiKey, key_id)
    assert key is not None
    return key


def test_org_and_key_commands_log_every_change(evault: Any, runtime: Runtime) -> None:
    org = _json(evault("org", "create", "Acme Lending", "--json"))
    assert org["name"] == "Acme Lending" and org["id"].startswith("org_")
    assert org["id"] in [o["id"] for o in _json(evault("org", "list", "--json"))]
    code, table, _ = evault("org", "list")
    assert (
        code == 0
        and table.splitlines()[0].split() == ["ID", "NAME", "CREATED_AT", "MERS_ORG_ID", "RETENTION_DAYS"]
        and org["id"] in table
    )

    flags = "--scopes envelopes:read,vault:read --name loan-system --expires-in 30d --json".split()
    created = _json(evault("key", "create", "--org", org["id"], *flags))
    raw = created.pop("key")
    assert KEY_PATTERN.fullmatch(raw) and len(raw) >= 43 and raw.startswith(created["prefix"])
    assert created["scopes"] == ["envelopes:read", "vault:read"] and created["status"] == "active"
    stored = _stored(runtime, created["id"])
    assert stored.key_hash == hash_key(raw)
    expires = as_utc(stored.expires_at) if stored.expires_at else None
    assert expires is not None and abs(expires - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)

    listed = _json(evault("key", "list", "--org", org["id"], "--json"))
    assert listed == [created]
    code, table, _ = evault("key", "list")
    assert code == 0 and created["prefix"] in table and raw not in table and stored.key_hash not in table

    revoked = _json(evault("key", "revoke", created["prefix"], "--json"))
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None

    second, _ = _new_key(runtime, org["id"])
    rotated = _json(evault("key", "rotate", second.id, "--json"))
    assert rotated["old"]["id"] == second.id and rotated["new"]["rotated_from"] == second.id

    types = [(e["type"], e["data"].get("key_id")) for e in _events(runtime, org["id"])]
    assert types == [
        ("org.created", None),
        ("key.created", created["id"]),
        ("key.revoked", created["id"]),
        ("key.created", second.id),
        ("key.rotated", rotated["new"]["id"]),
    ]
    assert _events(runtime, org["id"])[-1]["data"]["rotated_from"]["key_id"] == second.id


def _new_key(runtime: Runtime, org_id: str | None = None, **kwargs: Any) -> tuple[ApiKey, str]:
    with runtime.db.session() as session:
        if org_id is None:
            org_id = create_organisation(session, "Org").id
        return create_api_key(session, org_id, "partner key", ["envelopes:read", "vault:read"], **kwargs)


def test_rotate_keeps_org_name_scopes_and_lifetime(evault: Any, runtime: Runtime) -> None:
    old, _ = _new_key(runtime, expires_at=utcnow() + timedelta(days=30))
    before = utcnow()
    result = _json(evault("key", "rotate", old.prefix, "--grace", "30m", "--json"))
    new = _stored(runtime, result["new"]["id"])
    assert (new.org_id, new.name, new.scopes, new.rotated_from) == (old.org_id, old.name, old.scopes, old.id)
    assert new.key_hash == hash_key(result["key"]) and new.prefix != old.prefix
    new_expiry = as_utc(new.expires_at) if new.expires_at else None
    assert new_expiry is not None and abs(new_expiry - (before + timedelta(days=30))) < timedelta(minutes=1)
    old_expiry = as_utc(_stored(runtime, old.id).expires_at or before)
    assert before + timedelta(minutes=29) < old_expiry <= utcnow() + timedelta(minutes=30)

    code, _, err = evault("key", "rotate", old.id)
    assert code == 1 and "Key.AlreadyRotated" in err
    unlimited, _ = _new_key(runtime)
    default = _json(evault("key", "rotate", unlimited.id, "--json"))
    assert default["new"]["expires_at"] is None
    grace_end = as_utc(_stored(runtime, unlimited.id).expires_at or before)
    assert abs(grace_end - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)


def test_errors_are_clear_and_change_nothing(evault: Any, runtime: Runtime) -> None:
    key, _ = _new_key(runtime)
    events = len(_events(runtime, key.org_id))
    cases = [
        (("key", "create", "--org", key.org_id, "--scopes", "vault:read,root", "--name", "x"), "Key.InvalidScopes"),
        (("key", "create", "--org", "org_nosuchorg", "--scopes", "vault:read", "--name", "x"), "Organisation.NotFound"),
        (
            ("key", "create", "--org", key.org_id, "--scopes", "vault:read", "--name", "x", "--expires-in", "0"),
            "Key.InvalidDuration",
        ),
        (("key", "rotate", key.id, "--grace", "3 weeks"), "Key.InvalidDuration"),
        (("key", "revoke", "key_nosuchkey0000000000"), "Key.NotFound"),
        (("key", "revoke", "lk_"), "Key.InvalidReference"),
        (("key", "list", "--org", "org_nosuchorg"), "Organisation.NotFound"),
        (("org", "create", "   "), "Organisation.InvalidName"),
    ]
    for args, error in cases:
        code, out, err = evault(*args)
        assert (code, out) == (1, ""), (args, err)
        assert f"evault: {error}:" in err, (args, err)
    assert len(_events(runtime, key.org_id)) == events and _stored(runtime, key.id).revoked_at is None

    assert evault("key", "revoke", key.id)[0] == 0
    code, _, err = evault("key", "revoke", key.prefix)
    assert code == 1 and "Key.AlreadyRevoked" in err
    code, _, err = evault("key", "rotate", key.prefix)
    assert code == 1 and "Key.AlreadyRevoked" in err
    assert [e["type"] for e in _events(runtime, key.org_id)].count("key.revoked") == 1


def test_a_short_prefix_is_refused_even_when_it_names_one_key(evault: Any, runtime: Runtime) -> None:
    """A prefix shorter than the public prefix could name a key the operator never saw: refused, exit 1."""
    key, _ = _new_key(runtime)
    events = len(_events(runtime, key.org_id))
    for cut in range(4, len(key.prefix)):
        for verb in ("revoke", "rotate"):
            code, out, err = evault("key", verb, key.prefix[:cut])
            assert (code, out) == (1, ""), (cut, err)
            assert "evault: Key.PrefixTooShort:" in err and "11 characters" in err, err
    assert _stored(runtime, key.id).revoked_at is None and len(_events(runtime, key.org_id)) == events
    assert _json(evault("key", "revoke", key.prefix, "--json"))["id"] == key.id


def test_a_prefix_matching_several_keys_is_ambiguous(evault: Any, runtime: Runtime) -> None:
    """Two keys whose public prefixes are equal (made so in the table: 48 random bits rarely meet)."""
    key, _ = _new_key(runtime)
    twin, _ = _new_key(runtime, key.org_id)
    with runtime.db.session() as session:
        stored = session.get(ApiKey, twin.id)
        assert stored is not None
        stored.prefix = key.prefix
        session.add(stored)
    code, _, err = evault("key", "revoke", key.prefix)
    assert code == 1 and "Key.Ambiguous" in err and key.id in err and twin.id in err
    assert _stored(runtime, key.id).revoked_at is None and _stored(runtime, twin.id).revoked_at is None
    assert _json(evault("key", "revoke", key.id, "--json"))["id"] == key.id


def test_missing_database_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "nothing-here"
    monkeypatch.setenv("EVAULT_DATA_DIR", str(data_dir))
    monkeypatch.delenv("EVAULT_DATABASE_URL", raising=False)
    for args in (["org", "list"], ["org", "create", "X"], ["key", "list"], ["key", "revoke", "lk_abcdefgh"]):
        assert main(args) == 3
        assert "Database.NotReady" in capsys.readouterr().err
    assert not data_dir.exists()


def test_unmigrated_database_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVAULT_DATABASE_URL", database_url)
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).write_bytes(b"")  # an empty SQLite database
    assert main(["org", "create", "X"]) == 3
    assert "nothing" in capsys.readouterr().err

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    previous = script.get_revision(script.get_current_head()).down_revision
    db = Database(database_url)  # the engine Database.migrate uses: the migration environment expects it
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, str(previous))
    assert main(["org", "create", "X"]) == 3
    assert str(previous) in capsys.readouterr().err
    with db.read_session() as session:
        assert session.exec(select(Event)).first() is None
    db.dispose()


def test_concurrent_revoke_and_rotate_end_consistent(runtime: Runtime) -> None:
    """Either the revoke wins and nothing is rotated, or the rotation came first and its successor lives on."""
    for _ in range(TRIALS):
        key, _ = _new_key(runtime)

        def revoke(key_id: str = key.id) -> Any:
            with runtime.db.session() as session:
                return revoke_key(session, key_id)

        def rotate(key_id: str = key.id) -> Any:
            with runtime.db.session() as session:
                return rotate_key(session, key_id, timedelta(hours=1))

        revoked, rotated = together(revoke, rotate)
        assert isinstance(revoked, ApiKey), revoked
        types = [e["type"] for e in _events(runtime, key.org_id)]
        with runtime.db.read_session() as session:
            successors = list(session.exec(select(ApiKey).where(ApiKey.rotated_from == key.id)))
        assert _stored(runtime, key.id).revoked_at is not None
        if isinstance(rotated, Conflict):
            assert rotated.code == "Key.AlreadyRevoked" and successors == []
            assert types == ["org.created", "key.created", "key.revoked"]
        else:
            assert successors and successors[0].id == rotated[1].id and successors[0].revoked_at is None
            assert types == ["org.created", "key.created", "key.rotated", "key.revoked"], types


def test_concurrent_revokes_have_one_winner(runtime: Runtime) -> None:
    for _ in range(TRIALS):
        key, _ = _new_key(runtime)

        def revoke(key_id: str = key.id) -> Any:
            with runtime.db.session() as session:
                return revoke_key(session, key_id)

        results = together(revoke, revoke)
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], Conflict) and errors[0].code == "Key.AlreadyRevoked"
        assert [e["type"] for e in _events(runtime, key.org_id)].count("key.revoked") == 1


@pytest.fixture
def live_server(vault_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``evault serve`` as a subprocess with its own data dir and port: (base URL, environment for commands)."""
    port = aux_port("key_cli_api")
    env = {
        **os.environ,
        **vault_env,
        "EVAULT_PORT": str(port),
        "EVAULT_S3_EMBEDDED_PORT_BASE": str(aux_port("key_cli_store")),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "vault.cli.main", "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "evault serve did not answer /health"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base + API, env
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def test_commands_beside_a_live_server(live_server: tuple[str, dict[str, str]]) -> None:
    api, env = live_server

    def evault(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "vault.cli.main", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def status(raw: str) -> tuple[int, str | None]:
        response = httpx.get(f"{api}/envelopes", headers={"X-API-Key": raw}, timeout=30)
        return response.status_code, None if response.status_code == 200 else response.json()["code"]

    org = evault("org", "create", "Live Lender")
    scopes = "envelopes:read,compliance:read"
    first = evault("key", "create", "--org", org["id"], "--scopes", scopes, "--name", "first")
    assert status(first["key"]) == (200, None)
    evault("key", "revoke", first["prefix"])
    assert status(first["key"]) == (401, "Auth.KeyRevoked")

    second = evault("key", "create", "--org", org["id"], "--scopes", scopes, "--name", "second")
    assert status(second["key"]) == (200, None)
    rotated = evault("key", "rotate", second["id"], "--grace", "0")
    assert status(second["key"]) == (401, "Auth.KeyExpired")
    assert status(rotated["key"]) == (200, None)
    listed = evault("key", "list", "--org", org["id"])
    assert [(k["id"], k["status"]) for k in listed] == [
        (first["id"], "revoked"),
        (second["id"], "expired"),
        (rotated["new"]["id"], "active"),
    ]
