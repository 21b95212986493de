"""The head map: Trillian's CONIKS hasher vectors, proofs of presence and absence, versions, audit, forgeries."""

from __future__ import annotations

import base64
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from compliance.bundles.proof_bundle import build_bundle, verify_bundle
from compliance.checkpoints.publisher import CheckpointService, LeaseLost, tree_for
from compliance.headmap.sparse_tree import (
    ConiksHasher,
    Head,
    HeadMap,
    MapProof,
    rederive_map,
    tree_id_for,
    verify_map_proof,
)
from compliance.headmap.sql_store import map_root_ending
from compliance.ledger.event_catalogue import ENVELOPE_VOIDED, MAP_ROOT, ORG_CREATED, RELEASED, EventType
from compliance.ledger.events import Actor, append_event
from compliance.ledger.log_error import LogError
from compliance.verifier import audit_log
from storage.ids import utcnow
from storage.models import Checkpoint as CheckpointRow
from storage.models import Event, MapLeaf, MapRoot
from vault.cli.main import main
from vault.envelopes import NewEnvelope, create_envelope
from vault.runtime import Runtime
from vault.tenancy import create_organisation

# --- Known answers: google/trillian merkle/coniks/coniks_test.go (SHA-512/256 unless noted) -----------------

Z = "00" * 32
ONES = "11" * 32


@pytest.mark.parametrize(
    ("left", "right", "want"),
    [
        ("", "", "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"),
        ("00", "11", "248423e26b964db547e51deaffefc7e07bea495283dba563d74d69bf06b87497"),
        ("11", "00", "b5fbd3a07d7d309062044c5f92bc32bb860900f6e2a0e63b034846e267cb25bb"),
        (Z, ONES, "c1c6101db394de0d197b6bd90406fa300d28fee7028c7b37406b16edb61cccb4"),
        (ONES, Z, "4698c0cfa150974ad8d55e9c3f7d20dcdd56e7023931e1f7b5f61fbcf15770c3"),
    ],
)
def test_trillian_hash_children(left: str, right: str, want: str) -> None:
    assert ConiksHasher().hash_children(bytes.fromhex(left), bytes.fromhex(right)).hex() == want


@pytest.mark.parametrize(
    ("tree_id", "path", "depth", "want"),
    [
        (0, Z, 0, "2b71932d625e7b83ce864f8092ae4eb470670ccff37eaac83f21679bb3b24bbb"),
        (1, Z, 0, "9a908ed88f429272254a97c6a55f781e15b0cff753fb90ce7591988b398378ea"),
        (0, ONES, 1, "a9804d4c78c33a72903a5dc71a900a00e55136a425b6e4365c2d90f8303eb233"),
        (0, Z, 256, "af8545ff33b365f2a45971abc45167634c17bfc883ff0280f56e542663b02417"),
    ],
)
def test_trillian_hash_empty(tree_id: int, path: str, depth: int, want: str) -> None:
    assert ConiksHasher().hash_empty(tree_id, bytes.fromhex(path), depth).hex() == want


@pytest.mark.parametrize(
    ("tree_id", "path", "leaf", "want"),
    [
        (0, Z, b"", "b4e04ff32be7f76c9621dd28946c261dd8aea6494bf713c03da75dd9f1ce2fec"),
        (1, Z, b"", "83800c063525c35afdfe60733fb631be976d06835f79e9914dd268ec2f313721"),
        (0, ONES, b"", "4a95b36a21da32aba1a32d05ae3a1ef200f896c82a7c5ad03da52b17fdcbeb37"),
        (0, Z, b"foo", "d1f7b835e5ed66fc564b5a9e0a7ca028a6e4ec85a6c7d9d96b2ad6d0c1369700"),
        (0, ONES, b"leaf", "87f51e6ceb5a46947fedbd1de543482fb72f7459055d853a841566ef8e43c4a2"),  # Key Transparency's
    ],
)
def test_trillian_hash_leaf(tree_id: int, path: str, leaf: bytes, want: str) -> None:
    assert ConiksHasher().hash_leaf(tree_id, bytes.fromhex(path), 256, leaf).hex() == want


@pytest.mark.parametrize(
    ("path", "depth", "want"),
    [
        ("FF" * 20, 0, "00" * 20),
        ("FF" * 20, 1, "80" + "00" * 19),
        ("FF" * 20, 7, "FE" + "00" * 19),
        ("FF" * 20, 9, "FF80" + "00" * 18),
        ("FF" * 20, 159, "FF" * 19 + "FE"),
        ("000102030405060708090A0B0C0D0E0F10111213", 17, "0001" + "00" * 18),
        ("000102030405060708090A0B0C0D0E0F10111213", 159, "000102030405060708090A0B0C0D0E0F10111212"),
    ],
)
def test_trillian_masked_node_id_sha1(path: str, depth: int, want: str) -> None:
    assert ConiksHasher("sha1").masked_id(bytes.fromhex(path), depth).hex() == want.lower()


def test_trillian_masked_node_id_sha512_every_bit() -> None:
    """TestWriteMaskedNodeIDBits: depth b of an all-ones id is b ones, then zeros, over 64 bytes."""
    hasher = ConiksHasher("sha512")
    for bits in range(1, 512):
        want = (((1 << bits) - 1) << (512 - bits)).to_bytes(64, "big")
        assert hasher.masked_id(b"\xff" * 64, bits) == want


# --- The tree in memory ------------------------------------------------------------------------------------


def _heads(n: int, rng: random.Random) -> dict[int, Head]:
    return {rng.getrandbits(256): Head(rng.randrange(10), rng.randbytes(32)) for _ in range(n)}


def test_proofs_of_presence_and_absence_and_compact_depth() -> None:
    rng = random.Random(7)
    heads = _heads(2000, rng)
    tree = HeadMap(99, heads)
    root = tree.root()
    for key in list(heads)[:100]:
        proof = tree.prove(key)
        assert verify_map_proof(99, key, proof, root) == heads[key]
        assert MapProof.from_json(json.loads(json.dumps(proof.as_json()))) == proof  # wire round trip
        assert len(proof.siblings) < 40  # about log2(2000) + a few, not 256
    for _ in range(100):
        missing = rng.getrandbits(256)
        assert verify_map_proof(99, missing, tree.prove(missing), root) is None
    assert HeadMap(99).root() != HeadMap(98).root()  # the tree id is in every empty hash


def test_batched_update_equals_a_rebuild() -> None:
    rng = random.Random(8)
    heads = _heads(500, rng)
    tree = HeadMap(1, heads)
    tree.root()
    for _ in range(5):
        batch = {k: Head(h.seq + 1, rng.randbytes(32)) for k, h in list(heads.items())[:20]} | _heads(30, rng)
        heads.update(batch)
        assert tree.update(batch) == HeadMap(1, heads).root()


@pytest.mark.parametrize("forgery", ["sibling", "seq", "empty_sibling", "absent", "other_leaf", "depth"])
def test_forged_map_proofs_are_refused(forgery: str) -> None:
    rng = random.Random(9)
    heads = _heads(300, rng)
    tree = HeadMap(5, heads)
    root = tree.root()
    key = next(iter(heads))
    good = tree.prove(key)
    siblings = list(good.siblings)
    if forgery == "sibling":
        index = next(i for i, s in enumerate(siblings) if s is not None)
        siblings[index] = bytes(32)
        forged = MapProof(tuple(siblings), good.leaf_key, good.leaf_head)
    elif forgery == "seq":
        assert good.leaf_head is not None
        forged = MapProof(good.siblings, key, Head(good.leaf_head.seq + 1, good.leaf_head.entry_hash))
    elif forgery == "empty_sibling":
        forged = MapProof(tuple(None for _ in siblings), good.leaf_key, good.leaf_head)
    elif forgery == "absent":
        forged = MapProof(good.siblings, None, None)
    elif forgery == "other_leaf":
        other = list(heads)[1]
        forged = MapProof(good.siblings, other, heads[other])
    else:
        forged = MapProof((), good.leaf_key, good.leaf_head)
    with pytest.raises(LogError) as caught:
        verify_map_proof(5, key, forged, root)
    assert caught.value.code in {"Log.InvalidProof", "Log.Malformed"}


# --- In the vault: commits at checkpoints, versions, bundles of absence, the audit ---------------------------


def _org_with_envelope(runtime: Runtime) -> tuple[str, str]:
    with runtime.db.session() as session:
        org_id = create_organisation(session, "Map Org").id
        envelope = create_envelope(session, Actor(org_id), NewEnvelope(kind="paper", title="Loan"))
    return org_id, envelope.id


_NOTES = {  # declared events with data that fits, as the notes these tests append
    ENVELOPE_VOIDED: {"reason": "a note"},
    ORG_CREATED: {"name": "a note"},
    RELEASED: {"authoritative_copy_id": "vr_note", "reason": "payoff"},
}


def _note(runtime: Runtime, org_id: str, envelope_id: str | None, kind: EventType | None = None) -> Event:
    kind = kind or (ENVELOPE_VOIDED if envelope_id else ORG_CREATED)
    with runtime.db.session() as session:
        return append_event(
            session,
            actor=Actor(org_id),
            event_type=kind,
            occurred_at=utcnow(),
            data=_NOTES[kind],
            envelope_id=envelope_id,
        )


def _bundle(runtime: Runtime, envelope_id: str, checkpoint: CheckpointRow) -> dict[str, Any]:
    with runtime.db.read_session() as session:
        return build_bundle(session, runtime.key, envelope_id, checkpoint)


def test_every_checkpoint_ends_with_a_map_commit_and_old_versions_still_prove(runtime: Runtime) -> None:
    org_id, envelope_id = _org_with_envelope(runtime)
    pem = runtime.key.public_pem().encode()
    first = runtime.checkpoints.checkpoint_now(org_id)
    _note(runtime, org_id, envelope_id)
    second = runtime.checkpoints.checkpoint_now(org_id)
    _note(runtime, org_id, envelope_id)
    _note(runtime, org_id, None)
    third = runtime.checkpoints.checkpoint_now(org_id)
    assert runtime.checkpoints.checkpoint_now(org_id).size == third.size  # no growth: no new map, no new checkpoint
    with runtime.db.read_session() as session:
        roots = session.exec(select(MapRoot).where(MapRoot.org_id == org_id).order_by(col(MapRoot.version))).all()
        assert [r.entry_index + 1 for r in roots] == [first.size, second.size, third.size]
        assert all(map_root_ending(session, org_id, cp.size) for cp in (first, second, third))
        leaves = session.exec(select(MapLeaf).where(MapLeaf.org_id == org_id)).all()
        assert sorted(leaf.seq for leaf in leaves) == [0, 1, 2]  # one row per changed head per version
    for checkpoint, head_seq in ((first, 0), (second, 1), (third, 2)):
        result = verify_bundle(json.dumps(_bundle(runtime, envelope_id, checkpoint)), pem)
        assert result.completeness is not None and result.completeness.head_seq == head_seq
        assert len(result.events) == head_seq + 1


def test_absence_proof_and_a_hidden_history(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    org_id, envelope_id = _org_with_envelope(runtime)
    checkpoint = runtime.checkpoints.checkpoint_now(org_id)
    pem = runtime.key.public_pem()
    (tmp_path / "vault.pem").write_text(pem)
    absent = _bundle(runtime, "env_neverexisted", checkpoint)
    result = verify_bundle(json.dumps(absent), pem.encode())
    assert result.completeness is not None and result.completeness.head_seq is None and result.events == []
    (tmp_path / "absent.json").write_text(json.dumps(absent))
    assert main(["log", "verify", str(tmp_path / "absent.json"), "--public-key", str(tmp_path / "vault.pem")]) == 0
    assert "absent: envelope env_neverexisted has no events" in capsys.readouterr().out

    hidden = _bundle(runtime, envelope_id, checkpoint)
    hidden["events"] = []  # the envelope exists: showing none of its events is a cut-off history
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(hidden), pem.encode())
    assert caught.value.code == "Log.Incomplete"
    swapped = _bundle(runtime, envelope_id, checkpoint)
    swapped["map"]["proof"]["leaf"] = None  # claim the envelope absent, to pass off an empty history
    with pytest.raises(LogError) as forged:
        verify_bundle(json.dumps(swapped), pem.encode())
    assert forged.value.code == "Log.InvalidProof"


def test_stale_map_commit_cannot_ride_a_newer_checkpoint(runtime: Runtime) -> None:
    org_id, envelope_id = _org_with_envelope(runtime)
    old = runtime.checkpoints.checkpoint_now(org_id)
    stale = _bundle(runtime, envelope_id, old)
    _note(runtime, org_id, envelope_id, RELEASED)
    new = runtime.checkpoints.checkpoint_now(org_id)
    fresh = _bundle(runtime, envelope_id, new)
    # The old map (head = event 0) with the new checkpoint: its map.root is not the checkpoint's last entry.
    with runtime.db.read_session() as session:
        proof = tree_for(session, org_id, new.size).inclusion_proof(stale["map"]["entry"]["leaf_index"], new.size)
    stale["map"]["entry"]["inclusion_proof"] = [base64.b64encode(h).decode() for h in proof]
    stale["checkpoint"] = fresh["checkpoint"]
    stale["events"] = fresh["events"][:1]  # the history without the vault-out, re-proven in the new checkpoint
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(stale), runtime.key.public_pem().encode())
    assert caught.value.code == "Log.InvalidProof"


def test_rederived_map_matches_and_a_planted_root_is_named(runtime: Runtime) -> None:
    org_id, envelope_id = _org_with_envelope(runtime)
    _note(runtime, org_id, envelope_id)
    runtime.checkpoints.checkpoint_now(org_id)
    with runtime.db.read_session() as session:
        root = session.exec(select(MapRoot).where(MapRoot.org_id == org_id)).one()
        entries = [
            e.entry for e in session.exec(select(Event).where(Event.org_id == org_id).order_by(col(Event.leaf_index)))
        ]
    assert rederive_map(entries[: root.version], org_id).hex() == root.root_hash
    assert rederive_map(entries[: root.version - 1], org_id).hex() != root.root_hash
    assert {f.code for f in audit_log(runtime.sources(), org_id)} == set()
    with runtime.db.session() as session:  # an attacker with the service's write access commits a wrong root
        size = len(entries)
        append_event(
            session,
            actor=Actor(org_id, source="head-map"),
            event_type=MAP_ROOT,
            occurred_at=utcnow(),
            data={"map_root": "ab" * 32, "log_size_mapped": size, "version": size},
        )
    findings = audit_log(runtime.sources(), org_id)
    assert [f.code for f in findings] == ["Map.RootMismatch"]
    assert tree_id_for(org_id) != tree_id_for(org_id + "x")


def test_concurrent_appends_and_checkpoints_always_end_with_the_map(runtime: Runtime) -> None:
    """Two checkpoint services (two processes) and writers race; every signed checkpoint ends with a map.root.
    One that finds the other holding the log's lease is refused (Checkpoint.Busy) and signs nothing."""
    org_id, envelope_id = _org_with_envelope(runtime)
    base = runtime.checkpoints
    other = CheckpointService(base.db, base.worm, base.signer, base.origin_prefix, base.retention)
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        try:
            for _ in range(6):
                try:
                    work()
                except LeaseLost:  # the other service holds the log's lease right now
                    continue
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(lambda: _note(runtime, org_id, envelope_id),)),
        threading.Thread(target=run, args=(lambda: base.checkpoint_now(org_id),)),
        threading.Thread(target=run, args=(lambda: other.checkpoint_now(org_id),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = base.checkpoint_now(org_id)
    with runtime.db.read_session() as session:
        checkpoints = session.exec(select(CheckpointRow).where(CheckpointRow.org_id == org_id)).all()
        assert checkpoints and all(map_root_ending(session, org_id, cp.size) for cp in checkpoints)
    result = verify_bundle(json.dumps(_bundle(runtime, envelope_id, final)), runtime.key.public_pem().encode())
    assert result.completeness is not None and result.completeness.head_seq == 6
    assert {f.code for f in audit_log(runtime.sources(), org_id)} == set()
