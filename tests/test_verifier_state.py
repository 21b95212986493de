"""The log audit's per-envelope state spilled to SQLite: the same roots and the same findings with any cache size."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from sqlmodel import col, select

from compliance.headmap.sparse_tree import Head, HeadMap
from compliance.verifier import Options, fix_scope, verify
from compliance.verifier.context import Interrupted
from compliance.verifier.envelope_state import EnvelopeState
from compliance.verifier.findings import Finding
from storage.models import Event, VerifyRun
from tests.helpers import API, disarm_triggers
from tests.test_verifier import _vaulted
from vault.runtime import Runtime

TINY = 8


def _head(rng: random.Random) -> Head:
    return Head(rng.randrange(2**63), rng.randbytes(32))


def test_spilled_state_commits_the_roots_of_the_map_in_memory() -> None:
    """A tiny cache and small commit chunks: every root equals the in-memory map's over batches that move leaves."""
    rng = random.Random(25)
    keys = [rng.randrange(2**256) for _ in range(300)]
    keys += [keys[0] ^ 1, keys[1] ^ 2]  # deep paths: a leaf pushed down many levels by a near neighbour
    reference, state = HeadMap(77), EnvelopeState(77, cache=TINY, chunk=16)
    try:
        assert state.commit() == reference.root()  # the empty map
        for batch in range(6):
            changes = {k: _head(rng) for k in rng.sample(keys[: 60 * (batch + 1)], 40 + batch * 10)}
            for key, head in changes.items():
                state.pend(key, Head(head.seq, b"\0" * 32))  # overwritten below: only the latest pending head counts
                state.pend(key, head)
            assert state.commit() == reference.update(changes), batch
        for i, key in enumerate(keys):  # chains survive eviction, a 64-bit-overflowing seq too
            state.chains.put(key.to_bytes(32, "big"), (i + 2**70 * (i % 2), hashlib.sha256(bytes(i)).digest()))
        assert all(
            state.chains.get(key.to_bytes(32, "big")) == (i + 2**70 * (i % 2), hashlib.sha256(bytes(i)).digest())
            for i, key in enumerate(keys)
        )
    finally:
        state.close()


def _findings(findings: list[Finding]) -> list[tuple[str, str]]:
    return sorted((f.code, repr(sorted(f.details.items()))) for f in findings)


def test_a_tiny_cache_verifies_exactly_as_the_default(client: Any, runtime: Runtime, tenant: Any) -> None:
    """Resumed and whole, clean and tampered: a cache of 8 envelopes (everything spills) changes no finding."""
    org_id, headers = tenant
    tiny = {"state_cache": TINY, "log_save_every": 4, "save_seconds": 0.0, "concurrency": 2}
    for _ in range(10):
        _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200  # a map.root mid-log
    for _ in range(4):
        _vaulted(client, headers)
    assert client.post(f"{API}/log/checkpoint", headers=headers).status_code == 200
    scope = fix_scope(runtime.sources())
    with pytest.raises(Interrupted):  # past the first map.root: the resumed audit rebuilds the map into SQLite
        verify(runtime.sources(), scope, options=Options(stop_after_entries=scope.log_sizes[org_id] - 3, **tiny))  # type: ignore[arg-type]
    with runtime.db.read_session() as session:
        run = session.exec(select(VerifyRun).where(VerifyRun.status == "running")).one()
    resumed = verify(runtime.sources(), resume=run.id, options=Options(**tiny))  # type: ignore[arg-type]
    assert resumed.clean and 0 < resumed.counts["entries"] < scope.log_sizes[org_id]

    with runtime.db.session() as session:  # the first envelope's entries edited: its chain and the map both break
        disarm_triggers(session, "event")
        entries = session.exec(
            select(Event)
            .where(Event.org_id == org_id, col(Event.envelope_id).is_not(None))
            .order_by(col(Event.leaf_index))
        ).all()
        first, last = entries[0], [e for e in entries if e.envelope_id == entries[0].envelope_id][-1]
        assert first.leaf_index < last.leaf_index
        first.entry = first.entry.replace(b'"paper"', b'"esign"')
        last.entry = last.entry.replace(b"{", b"{ ", 1)  # not canonical: the map misses the envelope's head
        session.add_all([first, last])
    default = verify(runtime.sources(), options=Options(record=False))
    small = verify(runtime.sources(), options=Options(record=False, state_cache=TINY))
    codes = {f.code for f in default.findings}
    assert {"Log.EntryEdited", "Chain.Broken", "Map.RootMismatch"} <= codes, codes
    assert _findings(small.findings) == _findings(default.findings)
