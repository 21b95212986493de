"""The log in the C2SP tlog-tiles layout: each checkpoint locks its tiles and entry bundles in the WORM bucket,
the API serves them, and a monitor written from the specification alone (tests/tile_client.py) follows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from litestar.testing import TestClient

from compliance.ledger.tile_paths import encode_index, parse_path, tiles_between
from compliance.verifier import verify_vault
from storage.keys import tlog_key
from tests.helpers import API, create_envelope
from tests.outside_verifier import Rejected
from tests.tile_client import follow
from vault.runtime import Runtime


def test_index_and_paths_as_the_specification_spells_them() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(5) == "005"
    assert encode_index(1000) == "x001/000"
    assert parse_path("tile/0/x001/x234/067") == (0, 1234067, 256)
    assert parse_path("tile/entries/005.p/17") == (None, 5, 17)
    bad_paths = ("tile/01/000", "tile/0/1", "tile/0/000.p/256", "tile/0/000.p/0", "tile/0/x1/000", "tile/64/000")
    for bad in (*bad_paths, "tile/\u0663/000", "tile/\u00b2/000"):  # digits to str.isdigit(), not tile levels
        with pytest.raises(ValueError):
            parse_path(bad)


def test_the_tiles_of_a_size_are_the_specifications_example() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0 tile of width
    # 112, one full level 1 tile, one partial level 1 tile of width 17, and one partial level 2 tile of width 1"
    refs = list(tiles_between(0, 70000))
    assert sum(1 for level, _, width in refs if level == 0 and width == 256) == 273
    assert (0, 273, 112) in refs and (1, 0, 256) in refs and (1, 1, 17) in refs and (2, 0, 1) in refs
    assert len(refs) == 277
    assert list(tiles_between(0, 256)) == [(0, 0, 256), (1, 0, 1)]
    # growing from 70,000 to 70,001 adds only the three new partial tiles
    assert list(tiles_between(70000, 70001)) == [(0, 273, 113)]


def _key(client: TestClient[Any]) -> tuple[str, Any]:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    current = next(k for k in keys if k["use"] == "checkpoint" and k["current"])
    return current["vkey"].split("+", 1)[0], load_pem_public_key(current["pem"].encode())


def _over_http(client: TestClient[Any], headers: dict[str, str]) -> Any:
    def fetch(path: str) -> bytes:
        response = client.get(f"{API}/log/tlog/{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)
        return response.content

    return fetch


def _from_bucket(runtime: Runtime, org_id: str, checkpoint_note: str) -> Any:
    def fetch(path: str) -> bytes:
        if path == "checkpoint":
            return checkpoint_note.encode()
        key = tlog_key(org_id, path)
        info = runtime.authoritative.head(key, None)
        assert info.lock_mode == "COMPLIANCE", key
        return runtime.authoritative.read(key, info.version_id)

    return fetch


def test_a_monitor_follows_the_log_from_the_bucket_and_the_api(
    runtime: Runtime, client: TestClient[Any], tenant: tuple[str, dict[str, str]], make_key: Any
) -> None:
    org_id, headers = tenant
    for _ in range(270):
        create_envelope(client, headers)
    first = client.post(f"{API}/log/checkpoint", headers=headers)
    assert first.status_code == 200, first.text
    size1 = first.json()["size"]
    assert size1 > 256
    name, key = _key(client)

    size, entries = follow(_over_http(client, headers), name, key)
    assert size == size1
    assert [json.loads(e)["index"] for e in entries] == list(range(size1))
    assert follow(_from_bucket(runtime, org_id, first.json()["note"]), name, key) == (size, entries)

    for _ in range(3):
        create_envelope(client, headers)
    second = client.post(f"{API}/log/checkpoint", headers=headers).json()
    size2, entries2 = follow(_over_http(client, headers), name, key)
    assert size2 == second["size"] > size1 and entries2[:size1] == entries
    # the first checkpoint's partial tiles stay, so a monitor that stopped there still checks it
    assert follow(_from_bucket(runtime, org_id, first.json()["note"]), name, key) == (size1, entries)

    # a tile whose bytes are changed no longer hashes to the signed root
    def tampered(path: str) -> bytes:
        blob = _over_http(client, headers)(path)
        return blob[:-1] + bytes([blob[-1] ^ 1]) if path.startswith("tile/0/") else blob

    with pytest.raises(Rejected):
        follow(tampered, name, key)

    missing = client.get(f"{API}/log/tlog/tile/0/999", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "Tile.NotFound"
    bad = client.get(f"{API}/log/tlog/tile/0/7", headers=headers)
    assert bad.status_code == 404 and bad.json()["code"] == "Tile.NotFound"
    _, other = make_key()  # another organisation reads its own log: our tiles are not its
    foreign = client.get(f"{API}/log/tlog/tile/0/000", headers={"X-API-Key": other})
    assert foreign.status_code == 404

    report = verify_vault(runtime.sources())
    assert report["clean"], report["findings"]
