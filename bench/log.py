"""Transparency-log benchmark: the verifier's log audit from the database, append, tile arithmetic and proofs.

The headline is the **log audit** as ``evault verify`` runs it (``compliance.verifier.logs``): entries fetched
from SQLite in leaf order, each checked to be canonical JSON, linked into its envelope's chain, hashed as a leaf,
compared with the stored tile and folded into the tree root. The corpus holds no checkpoints, so comparing
checkpoints with WORM is not in that number (the store lists nothing). Beside it: appending, the tile
arithmetic alone (stored leaf hashes against recomputed ones, and the root: no entries, no JSON, no chain), and
inclusion proofs. Each is set beside its floor, raw ``hashlib.sha256`` over the same bytes, so the numbers say
how much the database, the checks and Python cost on top of the hashing that cannot be avoided.

Inclusion proofs are made the way a request makes one (``GET /log/proof/inclusion``): a new ``TiledTree`` per
proof (``tree_for``), all inside one read session (the request's own session, auth and JSON are not timed). Four
rows, each beside raw sha256 over as many 65-byte nodes as the proofs hold (what verifying them must hash; the
best of three runs): every tile read (a new tree over a store that shares nothing: one query per proof); as
requests in a fresh process (a new engine, so the process's tile cache starts empty and fills); the same with
each proof verified (``verify_inclusion``) in another fresh process; and that again in the same process, its
caches warm.

    python bench/log.py [--entries N] [--proofs M] [--batch B] [--skip-audit] [--json]
    python bench/log.py --skip-log --map-envelopes 1000000   # the head map section only

The head-map section builds the map of N envelope heads from scratch (what a cold cache and the auditor do),
updates it with one checkpoint's batch of changed heads, proves and verifies heads and absences, and times the
SQL side: writing the leaves and the stored nodes, the first commit after a restart (the same batch, read from
the stored nodes only) and proofs at the old version, each beside raw sha256 over as many 64-byte inputs as it
hashes; and, for comparison, rebuilding the old version from its leaves (what both cost before nodes were
stored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compliance.checkpoints.publisher import tree_for
from compliance.headmap import stored_tree
from compliance.headmap.sparse_tree import Head, HeadMap, map_key, tree_id_for, verify_map_proof
from compliance.headmap.sql_store import _load, head_reader, insert_nodes, node_reader, prove_at
from compliance.ledger.events import Actor, entry_bytes
from compliance.ledger.merkle import leaf_hash, root_from_leaf_hashes, verify_inclusion
from compliance.ledger.tiles import TiledTree
from compliance.sources import Sources
from compliance.verifier import audit_log
from storage.db import Database
from storage.log_tiles import SqlTileStore
from storage.models import Envelope, Event, LogState, MapLeaf, Organisation

ORG = "org_bench000000000000000"  # an identifier as the service makes them (20 characters)


def make_events(n: int, org_id: str = ORG, per_envelope: int = 7, *, spread: bool = False) -> list[Event]:
    """Real log entries (``entry_bytes``), ``per_envelope`` to an envelope's chain, as the service appends them;
    ``spread``: each envelope's events interleaved with all the others' (envelope ``i mod n/per_envelope``)."""
    envelopes = max(1, n // per_envelope)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    heads: dict[str, tuple[int, str]] = {}
    out = []
    for i in range(n):
        envelope = f"env_{(i % envelopes if spread else i // per_envelope):020d}"
        seq, prev = (heads[envelope][0] + 1, heads[envelope][1]) if envelope in heads else (0, None)
        at = start + dt.timedelta(seconds=i)
        entry = entry_bytes(
            org_id=org_id,
            leaf_index=i,
            envelope_id=envelope,
            chain_seq=seq,
            prev=prev,
            event_type="vault.copy_issued",
            occurred_at=at,
            actor=Actor(org_id, key_id="key_bench", key_prefix="lk_bench"),
            data={"copy_id": f"cpy_{i:020d}"},
        )
        digest = hashlib.sha256(entry).hexdigest()
        heads[envelope] = (seq, digest)
        out.append(
            Event(
                org_id=org_id,
                leaf_index=i,
                envelope_id=envelope,
                chain_seq=seq,
                event_type="vault.copy_issued",
                occurred_at=at,
                entry=entry,
                entry_hash=digest,
            )
        )
    return out


class _NoCheckpoints:
    """The corpus has no checkpoints, in the database or in WORM: the audit's WORM listing finds nothing."""

    def list_entries(self, prefix: str) -> Iterator[Any]:
        return iter(())


def audit_from_database(db: Database, events: list[Event]) -> float:
    """Seconds for the verifier's own log pass over ``events`` stored as the service stores them."""
    now = dt.datetime.now(dt.UTC)
    envelopes = sorted({e.envelope_id for e in events if e.envelope_id})
    envelope_rows = [
        {"id": env, "org_id": ORG, "kind": "paper", "status": "awaiting_upload", "vault_state": "not_vaulted"}
        | {"title": "bench", "parties": [], "meta": {}, "revision": 1, "created_at": now, "updated_at": now}
        for env in envelopes
    ]
    with db.session() as session:
        session.execute(Envelope.__table__.insert(), envelope_rows)  # type: ignore[attr-defined]
        for start in range(0, len(events), 10_000):
            rows = [e.model_dump(exclude={"id"}) for e in events[start : start + 10_000]]
            session.execute(Event.__table__.insert(), rows)  # type: ignore[attr-defined]
        session.execute(LogState.__table__.insert(), [{"org_id": ORG, "size": len(events)}])  # type: ignore[attr-defined]
    sources = Sources(db, _NoCheckpoints(), _NoCheckpoints(), None, "bench")  # type: ignore[arg-type]
    t0 = time.perf_counter()
    findings = audit_log(sources, ORG)
    seconds = time.perf_counter() - t0
    assert not findings, findings[:3]
    return seconds


def floor_seconds(messages: list[bytes], nodes: int) -> float:
    """Raw SHA-256 of ``messages`` (with the leaf prefix) and of ``nodes`` 65-byte interior nodes."""
    sha = hashlib.sha256
    node = b"\x01" + bytes(64)
    t0 = time.perf_counter()
    for m in messages:
        sha(b"\x00" + m).digest()
    for _ in range(nodes):
        sha(node).digest()
    return time.perf_counter() - t0


def log_tile_bytes(path: Path) -> tuple[int, int]:
    """(bytes of the log_tile table's pages, bytes of hashes in it: rows and interiors), from SQLite's dbstat."""
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        payload = (
            con.execute("SELECT SUM(length(hashes) + COALESCE(length(interior), 0)) FROM log_tile").fetchone()[0] or 0
        )
        try:
            pages = con.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = 'log_tile'").fetchone()[0] or 0
        except sqlite3.OperationalError:
            pages = -1
    con.close()
    return pages, payload


def time_proofs(
    db: Database, n: int, indices: list[int], check: tuple[list[bytes], bytes] | None, *, share: bool
) -> float:
    """Seconds for inclusion proofs of ``indices`` in the tree of ``n``, a new tree per proof (``tree_for`` with
    ``share``, else a store that shares nothing), each verified against ``check`` (leaf hashes, root) if given."""
    with db.read_session() as session:
        t0 = time.perf_counter()
        for i in indices:
            tree = tree_for(session, ORG, n) if share else TiledTree(SqlTileStore(session, ORG), n)
            proof = tree.inclusion_proof(i, n)
            if check is not None:
                verify_inclusion(check[0][i], i, n, proof, check[1])
        return time.perf_counter() - t0


def run(n: int, m: int, batch: int, seed: int, *, audit: bool = True) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    events = make_events(n)
    entries = [e.entry for e in events]
    gen_s = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix="evault-bench-"))
    db_path = workdir / "log.db"
    db = Database(f"sqlite:///{db_path}")
    db.migrate()
    with db.session() as session:
        session.add(Organisation(id=ORG, name="bench", created_at=dt.datetime.now(dt.UTC)))
    file_before = db_path.stat().st_size

    # (a) append in batches, one transaction each, a new TiledTree per transaction as a request would have.
    t0 = time.perf_counter()
    size = 0
    for start in range(0, n, batch):
        with db.session() as session:
            tree = TiledTree(SqlTileStore(session, ORG), size)
            size = tree.append([leaf_hash(e) for e in entries[start : start + batch]])
    with db.session() as session:
        signed_root = TiledTree(SqlTileStore(session, ORG), size).root()
    append_s = time.perf_counter() - t0
    append_floor = floor_seconds(entries, n - 1)

    # (b) verify from scratch: stored leaf hashes = recomputed ones; the recomputed root = the tree root.
    t0 = time.perf_counter()
    with db.session() as session:
        stored = TiledTree(SqlTileStore(session, ORG), n).leaf_hashes(0, n)
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    recomputed = [leaf_hash(e) for e in entries]
    assert recomputed == stored, "stored leaf hashes differ from the entries"
    root = root_from_leaf_hashes(recomputed)
    hash_s = time.perf_counter() - t1
    verify_s = time.perf_counter() - t0
    assert root == signed_root, "recomputed root differs from the tree's root"

    # (c) inclusion proofs as requests make them (see the module's docstring); a fresh engine is a fresh process.
    indices = [rng.randrange(n) for _ in range(m)]
    with db.read_session() as session:
        proof_hashes = sum(len(TiledTree(SqlTileStore(session, ORG), n).inclusion_proof(i, n)) for i in indices)
    proof_floor = min(floor_seconds([], proof_hashes) for _ in range(3))  # the best of three: a noisy machine
    timings: dict[str, float] = {}
    for name, check, share, fresh in [
        ("proofs_read", None, False, True),
        ("proofs_request", None, True, True),
        ("proofs_request_verified", (recomputed, root), True, True),
        ("proofs_warm_verified", (recomputed, root), True, False),
    ]:
        if fresh:
            db.dispose()
            db = Database(f"sqlite:///{db_path}")
        timings[name] = time_proofs(db, n, indices, check, share=share)
    audit_s = audit_from_database(db, events) if audit else float("nan")
    # The audit's unavoidable hashing: each entry as a leaf and once more for its chain link, and the nodes.
    audit_floor = floor_seconds(entries, n - 1) + floor_seconds([e[1:] for e in entries], 0) if audit else float("nan")
    db.dispose()

    pages, payload = log_tile_bytes(db_path)
    file_after = db_path.stat().st_size
    shutil.rmtree(workdir)  # ~150 MB at 10^6 entries, left in the temporary directory by every run before
    return {
        "entries": n,
        "proofs": m,
        "batch": batch,
        "entry_bytes_avg": sum(map(len, entries)) / n,
        "generate_s": gen_s,
        "audit": {"seconds": audit_s, "per_s": n / audit_s, "floor_s": audit_floor},
        "append": {"seconds": append_s, "per_s": n / append_s, "floor_s": append_floor},
        "tile_arithmetic": {
            "seconds": verify_s,
            "per_s": n / verify_s,
            "floor_s": append_floor,
            "read_tiles_s": read_s,
            "hash_s": hash_s,
        },
        **{name: {"seconds": t, "per_s": m / t, "floor_s": proof_floor} for name, t in timings.items()},
        "proof_hashes_avg": proof_hashes / m,
        "storage": {
            "log_tile_page_bytes_per_entry": pages / n if pages >= 0 else None,
            "log_tile_payload_bytes_per_entry": payload / n,
            "file_growth_bytes_per_entry": (file_after - file_before) / n,
        },
        "root": root.hex(),
    }


def run_map(n: int, batch: int, m: int, seed: int) -> dict[str, Any]:
    """Head map of ``n`` envelopes: build, one checkpoint's batch update, proofs, and the SQL leaves."""
    import resource

    rng = random.Random(seed)
    tree_id = tree_id_for(ORG)
    heads = {map_key(f"env_{i:020d}"): Head(rng.randrange(8), rng.randbytes(32)) for i in range(n)}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    tree = HeadMap(tree_id, heads)
    root = built = tree.root()
    build_s = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    keys = list(heads)
    changes = {k: Head(heads[k].seq + 1, rng.randbytes(32)) for k in rng.sample(keys, batch // 2)}
    changes |= {map_key(f"env_new_{i}"): Head(0, rng.randbytes(32)) for i in range(batch - batch // 2)}
    t0 = time.perf_counter()
    root = tree.update(changes)
    update_s = time.perf_counter() - t0
    present = rng.sample(list(tree.heads), m)
    absent = [map_key(f"env_missing_{i}") for i in range(m)]
    sizes, depths, nonempty = [], [], []
    t0 = time.perf_counter()
    proofs = [tree.prove(k) for k in present + absent]
    prove_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for key, proof in zip(present + absent, proofs, strict=True):
        found = verify_map_proof(tree_id, key, proof, root)
        assert (found is not None) == (key in tree.heads)
    verify_s = time.perf_counter() - t0
    for proof in proofs:
        sizes.append(len(json.dumps(proof.as_json(), separators=(",", ":"))))
        depths.append(len(proof.siblings))
        nonempty.append(sum(s is not None for s in proof.siblings))

    k = min(m, 200)
    probes = [f"env_{i:020d}" for i in rng.sample(range(n), k)] + [f"env_missing_{i}" for i in range(k)]
    sql = run_map_sql(tree_id, heads, changes, (built, root), probes)
    return {
        "envelopes": n,
        "batch": batch,
        "build_s": build_s,
        "build_rss_mib": rss_kib / 1024,
        "update_s": update_s,
        "update_per_head_ms": update_s / batch * 1000,
        "prove_per_proof_us": prove_s / len(proofs) * 1e6,
        "verify_per_proof_us": verify_s / len(proofs) * 1e6,
        "proof_depth_avg": sum(depths) / len(depths),
        "proof_depth_max": max(depths),
        "proof_nonempty_siblings_avg": sum(nonempty) / len(nonempty),
        "proof_json_bytes_avg": sum(sizes) / len(sizes),
        **sql,
    }


def _hash_floor(messages: int) -> float:
    """Raw hashlib.sha256 over ``messages`` 64-byte inputs: what a proof's or a commit's hashing cannot go below."""
    block = bytes(64)
    t0 = time.perf_counter()
    for _ in range(messages):
        hashlib.sha256(block).digest()
    return time.perf_counter() - t0


def _leaf_rows(heads: dict[int, Head], version: int) -> list[dict[str, Any]]:
    return [
        {"org_id": ORG, "envelope_key": f"{k:064x}", "version": version, "seq": h.seq, "entry_hash": h.entry_hash.hex()}
        for k, h in heads.items()
    ]


def run_map_sql(
    tree_id: int, heads: dict[int, Head], changes: dict[int, Head], roots: tuple[bytes, bytes], probes: list[str]
) -> dict[str, Any]:
    """The SQL side: version 1 holds ``heads``, version 2 adds ``changes`` the way the first commit after a restart
    does (reading only the stored nodes on the changed paths), then proofs at the old version 1 from stored nodes;
    beside them, the rebuild of version 1 from its leaves that both took before nodes were stored."""
    workdir = Path(tempfile.mkdtemp(prefix="evault-bench-map-"))
    db = Database(f"sqlite:///{workdir / 'map.db'}")
    db.migrate()
    with db.session() as session:
        session.add(Organisation(id=ORG, name="bench", created_at=dt.datetime.now(dt.UTC)))
    root_1, nodes = stored_tree.apply(tree_id, heads, lambda _ids: {}, lambda _keys: {})
    assert root_1 == roots[0]
    t0 = time.perf_counter()
    with db.session() as session:
        session.execute(MapLeaf.__table__.insert(), _leaf_rows(heads, 1))  # type: ignore[attr-defined]
    write_leaves_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with db.session() as session:
        insert_nodes(session, ORG, 1, nodes)
    write_nodes_s = time.perf_counter() - t0
    del nodes
    db.dispose()
    db = Database(f"sqlite:///{workdir / 'map.db'}")  # a restart: nothing of the map in memory
    t0 = time.perf_counter()
    with db.session() as session:
        root_2, written = stored_tree.apply(
            tree_id, changes, node_reader(session, ORG, 1), head_reader(session, ORG, 1)
        )
        insert_nodes(session, ORG, 2, written)
        session.execute(MapLeaf.__table__.insert(), _leaf_rows(changes, 2))  # type: ignore[attr-defined]
    commit_s = time.perf_counter() - t0
    commit_floor = _hash_floor(len(written))
    assert root_2 == roots[1]  # the same root as the whole map updated in memory
    proof_hashes = 0
    t0 = time.perf_counter()
    with db.read_session() as session:
        proofs = [prove_at(session, ORG, 1, envelope_id) for envelope_id in probes]  # 1 is now an old version
    prove_s = time.perf_counter() - t0
    for envelope_id, proof in zip(probes, proofs, strict=True):
        key = map_key(envelope_id)
        assert verify_map_proof(tree_id, key, proof, root_1) == heads.get(key)
        proof_hashes += len(proof.siblings) + 1
    prove_floor = _hash_floor(proof_hashes)
    t0 = time.perf_counter()
    with db.read_session() as session:
        loaded = _load(session, ORG, 1)
    load_s = time.perf_counter() - t0
    assert loaded.root() == root_1
    size = (workdir / "map.db").stat().st_size
    db.dispose()
    shutil.rmtree(workdir)
    return {
        "sql_write_leaves_s": write_leaves_s,
        "sql_write_nodes_s": write_nodes_s,
        "sql_bytes_per_envelope": size / len(heads),
        "restart_commit_s": commit_s,
        "restart_commit_nodes": len(written),
        "restart_commit_floor_s": commit_floor,
        "old_proof_ms": prove_s / len(probes) * 1000,
        "old_proof_floor_ms": prove_floor / len(probes) * 1000,
        "sql_load_version_s": load_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--skip-audit", action="store_true", help="leave out the log audit (minutes at 10^6)")
    parser.add_argument("--map-envelopes", type=int, default=0, help="also run the head-map section with N envelopes")
    parser.add_argument("--map-batch", type=int, default=1000, help="changed heads in one checkpoint's map update")
    parser.add_argument("--skip-log", action="store_true", help="run only the head-map section")
    args = parser.parse_args(argv)
    if args.map_envelopes:
        mapped = run_map(args.map_envelopes, args.map_batch, min(args.proofs, 1000), args.seed)
        if args.json:
            json.dump(mapped, sys.stdout, indent=2)
            print()
        else:
            print_map(mapped)
    if args.skip_log:
        return 0
    result = run(args.entries, args.proofs, args.batch, args.seed, audit=not args.skip_audit)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"{result['entries']:,} entries of ~{result['entry_bytes_avg']:.0f} B, batches of {args.batch}")
    print(f"{'phase':<34}{'seconds':>9}{'per second':>13}{'floor s':>9}{'floor/ours':>11}")
    for name, label in [
        ("audit", "log audit from the DB"),
        ("append", "append + commit"),
        ("tile_arithmetic", "tile arithmetic only"),
        ("proofs_read", "proofs, every tile read"),
        ("proofs_request", "proofs as requests, fresh process"),
        ("proofs_request_verified", "  + verified, fresh process"),
        ("proofs_warm_verified", "  + verified, warm process"),
    ]:
        r = result[name]
        if name == "audit" and args.skip_audit:
            continue
        ratio = r["floor_s"] / r["seconds"]
        print(f"{label:<34}{r['seconds']:>9.2f}{r['per_s']:>13,.0f}{r['floor_s']:>9.2f}{ratio:>11.2f}")
    v, s = result["tile_arithmetic"], result["storage"]
    print(f"tile arithmetic split: read tiles {v['read_tiles_s']:.2f} s, hash + compare + root {v['hash_s']:.2f} s")
    print(f"proof length: {result['proof_hashes_avg']:.1f} hashes")
    pages = s["log_tile_page_bytes_per_entry"]
    print(
        f"log_tile: {pages:.1f} B/entry in pages, " if pages is not None else "log_tile: ",
        f"{s['log_tile_payload_bytes_per_entry']:.1f} B/entry of hashes, "
        f"file growth {s['file_growth_bytes_per_entry']:.1f} B/entry",
        sep="",
    )
    return 0


def print_map(r: dict[str, Any]) -> None:
    print(f"head map: {r['envelopes']:,} envelopes")
    print(f"  build from scratch     {r['build_s']:8.2f} s   (+{r['build_rss_mib']:.0f} MiB resident)")
    print(f"  checkpoint update      {r['update_s']:8.3f} s   for {r['batch']:,} changed heads")
    print(f"  prove / verify         {r['prove_per_proof_us']:8.0f} us / {r['verify_per_proof_us']:.0f} us per proof")
    print(
        f"  proof                  {r['proof_depth_avg']:8.1f} levels avg (max {r['proof_depth_max']}), "
        f"{r['proof_nonempty_siblings_avg']:.1f} non-empty siblings, {r['proof_json_bytes_avg']:.0f} B JSON"
    )
    print(
        f"  SQL: leaves written {r['sql_write_leaves_s']:.2f} s, nodes {r['sql_write_nodes_s']:.2f} s, "
        f"file {r['sql_bytes_per_envelope']:.0f} B per envelope"
    )
    commit_s, floor_s = r["restart_commit_s"], r["restart_commit_floor_s"]
    print(
        f"  first commit after restart {commit_s:8.3f} s   {r['restart_commit_nodes']:,} nodes written; "
        f"sha256 floor {floor_s * 1000:.1f} ms ({commit_s / floor_s:.0f}x)"
    )
    proof_ms, proof_floor = r["old_proof_ms"], r["old_proof_floor_ms"]
    print(
        f"  old-version proof      {proof_ms:8.2f} ms  from stored nodes; sha256 floor {proof_floor * 1000:.1f} us "
        f"({proof_ms / proof_floor:.0f}x)"
    )
    print(f"  before stored nodes: an old version rebuilt from its leaves {r['sql_load_version_s']:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
