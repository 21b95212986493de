"""The head map's stored nodes: proofs at any version equal the whole map's, a tampered node is caught, a commit
after a restart reads only the paths it changes, and maps from before the node table are backfilled."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlmodel import Session, col, select

from compliance.bundles.proof_bundle import build_bundle, verify_bundle
from compliance.headmap import stored_tree
from compliance.headmap.sparse_tree import KEY_BITS, Head, HeadMap, map_key, tree_id_for, verify_map_proof
from compliance.headmap.sql_store import ROOT, _load, commit_head_map, prove_at
from compliance.headmap.stored_tree import Node
from compliance.ledger.event_catalogue import ENVELOPE_VOIDED
from compliance.ledger.events import Actor, append_event
from compliance.ledger.log_error import LogError
from storage.db import Database
from storage.ids import utcnow
from storage.models import MapNode, MapRoot
from tests.helpers import disarm_triggers
from vault.envelopes import NewEnvelope, create_envelope
from vault.runtime import Runtime
from vault.tenancy import create_organisation

# --- The algorithm over an in-memory versioned store ---------------------------------------------------------


class _Versioned:
    """Every node and head with the versions it was stored at, read as of one version (what SQL does)."""

    def __init__(self) -> None:
        self.nodes: dict[int, list[tuple[int, Node]]] = {}
        self.heads: dict[int, list[tuple[int, Head]]] = {}

    def nodes_at(self, version: int) -> stored_tree.NodeReader:
        def read(ids: Iterable[int]) -> Mapping[int, Node]:
            out = {}
            for i in ids:
                older = [n for v, n in self.nodes.get(i, []) if v <= version]
                if older:
                    out[i] = older[-1]
            return out

        return read

    def heads_at(self, version: int) -> stored_tree.HeadReader:
        def read(keys: Iterable[int]) -> Mapping[int, Head]:
            return {k: [h for v, h in self.heads[k] if v <= version][-1] for k in keys}

        return read


def _key_near(rng: random.Random, keys: list[int]) -> int:
    """A new key sharing a long prefix with an existing one: leaves must move down, deep paths appear."""
    base = rng.choice(keys)
    shared = rng.randrange(1, 40)
    return (base >> (KEY_BITS - shared) << (KEY_BITS - shared)) | rng.getrandbits(KEY_BITS - shared)


@pytest.mark.parametrize("seed", range(12))
def test_stored_proofs_at_every_version_equal_the_whole_maps(seed: int) -> None:
    rng = random.Random(seed)
    tree_id = rng.getrandbits(62)
    store = _Versioned()
    heads: dict[int, Head] = {}
    history: list[tuple[int, dict[int, Head], bytes]] = []
    version = 0
    for _ in range(rng.randrange(3, 9)):
        version += rng.randrange(1, 50)
        changes: dict[int, Head] = {}
        for _ in range(rng.choice([0, 1, 2, 5, 30])):
            roll = rng.random()
            if heads and roll < 0.3:
                key = rng.choice(list(heads))
                changes[key] = Head(heads[key].seq + 1, rng.randbytes(32))
            elif heads and roll < 0.6:
                changes[_key_near(rng, list(heads))] = Head(0, rng.randbytes(32))
            else:
                changes[rng.getrandbits(KEY_BITS)] = Head(0, rng.randbytes(32))
        root, written = stored_tree.apply(tree_id, changes, store.nodes_at(version), store.heads_at(version))
        for heap, node in written.items():
            store.nodes.setdefault(heap, []).append((version, node))
        for key, head in changes.items():
            store.heads.setdefault(key, []).append((version, head))
        heads.update(changes)
        whole = HeadMap(tree_id, heads)
        assert root == whole.root()
        history.append((version, dict(heads), root))
    for at, heads_then, root in history:
        whole = HeadMap(tree_id, heads_then)
        probes = list(heads_then)[:25] + [rng.getrandbits(KEY_BITS) for _ in range(10)]
        probes += [_key_near(rng, list(heads_then)) for _ in range(10)] if heads_then else []
        for key in probes:
            proof = stored_tree.prove(key, store.nodes_at(at), store.heads_at(at))
            assert proof == whole.prove(key)
            assert verify_map_proof(tree_id, key, proof, root) == heads_then.get(key)


# --- In SQL, on both databases --------------------------------------------------------------------------------


def _void(session: Session, org_id: str, envelope_id: str, reason: str = "a note") -> None:
    """An event for the envelope: its head, and so its path in the map, changes at the next commit."""
    append_event(
        session,
        actor=Actor(org_id),
        event_type=ENVELOPE_VOIDED,
        occurred_at=utcnow(),
        data={"reason": reason},
        envelope_id=envelope_id,
    )


def _history(db: Database, rng: random.Random, commits: int) -> tuple[str, list[str], list[MapRoot]]:
    """An organisation whose envelopes gain events between map commits, at random."""
    with db.session() as session:
        org_id = create_organisation(session, "Nodes Org").id
    envelopes: list[str] = []
    roots = []
    for _ in range(commits):
        with db.session() as session:
            for _ in range(rng.randrange(0, 6)):
                envelopes.append(create_envelope(session, Actor(org_id), NewEnvelope(kind="paper", title="L")).id)
            for envelope_id in rng.sample(envelopes, min(len(envelopes), rng.randrange(0, 4))):
                _void(session, org_id, envelope_id)
        with db.session() as session:
            committed = commit_head_map(session, org_id)
            if committed is not None:
                roots.append(committed)
    return org_id, envelopes, roots


def _assert_proofs_match_the_leaves(db: Database, org_id: str, envelopes: list[str], roots: list[MapRoot]) -> None:
    tree_id = tree_id_for(org_id)
    with db.read_session() as session:
        for committed in roots:
            whole = _load(session, org_id, committed.version)
            assert whole.root().hex() == committed.root_hash
            for envelope_id in [*envelopes, "env_neverexisted"]:
                proof = prove_at(session, org_id, committed.version, envelope_id)
                assert proof == whole.prove(map_key(envelope_id))
                verify_map_proof(tree_id, map_key(envelope_id), proof, bytes.fromhex(committed.root_hash))


@pytest.mark.parametrize("seed", [1, 2])
def test_sql_proofs_at_old_versions_equal_the_rebuilt_map(db: Database, seed: int) -> None:
    org_id, envelopes, roots = _history(db, random.Random(seed), commits=6)
    assert len(roots) >= 3 and envelopes
    with db.read_session() as session:
        assert all(session.get(MapNode, (org_id, ROOT, r.version)) for r in roots)  # every commit stores its nodes
    _assert_proofs_match_the_leaves(db, org_id, envelopes, roots)


def _statements(db: Database) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", record)
    return seen, record


def test_restart_then_commit_reads_only_the_changed_paths(database_url: str) -> None:
    first = Database(database_url)
    first.migrate()
    org_id, envelopes, roots = _history(first, random.Random(3), commits=4)
    first.dispose()
    restarted = Database(database_url)  # a new process: nothing of the map in memory
    with restarted.session() as session:
        _void(session, org_id, envelopes[0], "after the restart")
    seen, record = _statements(restarted)
    with restarted.session() as session:
        committed = commit_head_map(session, org_id)
    sa_event.remove(restarted.engine, "before_cursor_execute", record)
    assert committed is not None
    leaf_reads = [s for s in seen if "map_leaf" in s and s.lstrip().upper().startswith("SELECT")]
    assert all("envelope_key =" in s for s in leaf_reads), leaf_reads  # a moved leaf's head at most, never all
    assert any("FROM map_node" in s for s in seen)  # the changed paths, from the stored nodes
    _assert_proofs_match_the_leaves(restarted, org_id, envelopes, [*roots, committed])
    seen, record = _statements(restarted)
    with restarted.read_session() as session:
        prove_at(session, org_id, roots[0].version, envelopes[0])
    assert not any("FOR UPDATE" in s.upper() or "log_state" in s for s in seen)  # a proof takes no lock
    restarted.dispose()


def test_maps_from_before_the_node_table_are_backfilled_by_the_next_commit(db: Database) -> None:
    org_id, envelopes, roots = _history(db, random.Random(4), commits=4)
    with db.session() as session:  # as migration 0020 finds them: leaves and roots, no nodes
        disarm_triggers(session, "map_node")
        session.execute(text("DELETE FROM map_node WHERE org_id = :org"), {"org": org_id})
    _assert_proofs_match_the_leaves(db, org_id, envelopes, roots)  # rebuilt from the leaves meanwhile
    with db.session() as session:
        _void(session, org_id, envelopes[-1], "after the upgrade")
    with db.session() as session:
        committed = commit_head_map(session, org_id)
    assert committed is not None
    with db.read_session() as session:
        stored = session.exec(select(MapNode.version).where(MapNode.org_id == org_id, MapNode.node == ROOT)).all()
    assert sorted(stored) == [r.version for r in [*roots, committed]]
    _assert_proofs_match_the_leaves(db, org_id, envelopes, [*roots, committed])


# --- A tampered node ------------------------------------------------------------------------------------------


def test_a_tampered_stored_node_yields_a_proof_the_signed_root_refuses(runtime: Runtime) -> None:
    org_id, envelopes, _ = _history(runtime.db, random.Random(5), commits=3)
    envelope_id = envelopes[0]
    assert len(envelopes) >= 2  # so the path has a sibling holding another envelope
    with runtime.db.session() as session:  # the newest version changes this path alone: every sibling is older
        # (the history's envelope ids are random, and once all of the path's siblings had changed last: CI)
        _void(session, org_id, envelope_id)
    checkpoint = runtime.checkpoints.checkpoint_now(org_id)  # commits the map: its newest version
    pem = runtime.key.public_pem().encode()
    with runtime.db.read_session() as session:
        good = build_bundle(session, runtime.key, envelope_id, checkpoint)
        version = session.exec(
            select(MapRoot.version).where(MapRoot.org_id == org_id).order_by(col(MapRoot.version).desc())
        ).first()
        assert version is not None
        key = map_key(envelope_id)
        depth, newest = 0, None
        while newest is None or newest.version >= version:  # a sibling on the path this version did not change
            depth += 1
            sibling = (1 << depth) | ((key >> (KEY_BITS - depth)) ^ 1)
            newest = session.exec(
                select(MapNode)
                .where(MapNode.org_id == org_id, MapNode.node == f"{sibling:x}")
                .order_by(col(MapNode.version).desc())
            ).first()
    assert verify_bundle(json.dumps(good), pem).completeness is not None
    with runtime.db.session() as session:  # what plain INSERT rights allow: a newer row for a node on the path
        session.add(MapNode(org_id=org_id, node=newest.node, version=version, hash="ab" * 32, leaf_key=None))
    with runtime.db.read_session() as session:
        forged = build_bundle(session, runtime.key, envelope_id, checkpoint)
    assert forged["map"]["proof"]["siblings"][depth - 1] == "ab" * 32
    with pytest.raises(LogError) as caught:
        verify_bundle(json.dumps(forged), pem)
    assert caught.value.code == "Log.InvalidProof"
