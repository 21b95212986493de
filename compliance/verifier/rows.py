"""Rows against the chain: every envelope's rows that the ledger also records, re-derived from its chain.

Per organisation, envelopes are taken in id order a page at a time; for a page, one snapshot reads the
envelopes, their records, documents, copies and import claims, and streams their events in (envelope, seq)
order, folding each chain into the state it implies (``compliance.conditions.projection``; an import claim:
``compliance.conditions.import_projection``) and naming every row it does not support. Recorded import claims
that name no envelope at all are looked up once per organisation. Memory is one page's rows and one chain's
fold. The log pass checks the entries themselves; an envelope whose entries do not parse is left to it. The
position (the last envelope id of a finished page) is durable, so a resumed run starts after it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from compliance.bundles.cross_log import link
from compliance.conditions.import_projection import compare_import, unsupported_claim
from compliance.conditions.key_projection import compare_keys, key_ledger
from compliance.conditions.projection import Projection, Rows, compare, snapshot
from compliance.ledger.chain import parse_entry
from compliance.ledger.log_error import LogError
from compliance.verifier.context import Context, Interrupted
from compliance.verifier.findings import Finding
from storage.models import ApiKey, CopyRecord, Envelope, EnvelopeImport, Event, VaultedDocument, VaultRecord

PAGE = 200  # envelopes compared per snapshot


def _envelope_ids(ctx: Context, org_id: str, after: str | None) -> Iterator[list[str]]:
    """Envelope ids in scope, in pages; created before the run started (later ones are the next run's)."""
    scope = ctx.scope
    with ctx.sources.db.read_session() as session:
        stmt = select(Envelope.id).where(Envelope.org_id == org_id)
        if scope.started_at is not None:
            stmt = stmt.where(col(Envelope.created_at) <= scope.started_at)
        if scope.envelopes:
            stmt = stmt.where(col(Envelope.id).in_(scope.envelopes))
        if scope.since is not None:
            recent = select(Event.envelope_id).where(col(Event.occurred_at) >= scope.since)
            stmt = stmt.where((col(Envelope.updated_at) >= scope.since) | col(Envelope.id).in_(recent))
        if after is not None:
            stmt = stmt.where(col(Envelope.id) > after)
        page: list[str] = []
        for envelope_id in session.exec(stmt.order_by(col(Envelope.id)).execution_options(yield_per=1000)):
            if scope.key_in_shard(envelope_id):
                page.append(envelope_id)
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page


def _rows(session: Session, ids: list[str]) -> dict[str, Rows]:
    envelopes = {e.id: e for e in session.exec(select(Envelope).where(col(Envelope.id).in_(ids)))}
    records = {r.envelope_id: r for r in session.exec(select(VaultRecord).where(col(VaultRecord.envelope_id).in_(ids)))}
    documents: dict[str, list[VaultedDocument]] = defaultdict(list)
    by_record = {r.id: r.envelope_id for r in records.values()}
    if by_record:
        for doc in session.exec(select(VaultedDocument).where(col(VaultedDocument.record_id).in_(list(by_record)))):
            documents[by_record[doc.record_id]].append(doc)
    copies: dict[str, list[CopyRecord]] = defaultdict(list)
    for copy in session.exec(select(CopyRecord).where(col(CopyRecord.envelope_id).in_(ids))):
        copies[copy.envelope_id].append(copy)
    return {
        envelope_id: Rows(env, records.get(envelope_id), documents[envelope_id], copies[envelope_id])
        for envelope_id, env in envelopes.items()
    }


@dataclass
class _Fold:
    """One envelope's chain folded across the logs it went through, and the first hand-off that does not link."""

    projection: Projection | None
    last: tuple[str, bytes, dict[str, Any]] | None = None  # (log, entry, parsed) of the entry before
    broken: Finding | None = None

    def add(self, envelope_id: str, org_id: str, entry: bytes) -> None:
        if self.projection is None:
            return
        try:
            value = parse_entry(entry)
        except LogError:
            self.projection = None
            return
        if self.last is not None and self.last[0] != org_id and self.broken is None:
            try:
                link(self.last[2], self.last[1], value)
            except LogError as exc:
                where = {"envelope_id": envelope_id, "org_id": org_id, "seq": value.get("seq")}
                self.broken = Finding("Chain.Broken", f"the chain crosses logs badly: {exc.message}", where)
        self.projection.apply(value)
        self.last = (org_id, entry, value)


def _chains(session: Session, ids: list[str]) -> Iterator[tuple[str, _Fold]]:
    """Each envelope's chain folded across logs, streamed in (envelope, seq) order; a projection of None when an
    entry does not parse (the log pass reports it)."""
    stmt = (
        select(Event.envelope_id, Event.org_id, Event.entry)
        .where(col(Event.envelope_id).in_(ids))
        .order_by(col(Event.envelope_id), col(Event.chain_seq))
    )
    current: tuple[str, _Fold] | None = None
    for envelope_id, org_id, entry in session.exec(stmt.execution_options(yield_per=1000)):
        assert envelope_id is not None  # selected by envelope
        if current is None or current[0] != envelope_id:
            if current is not None:
                yield current
            current = (envelope_id, _Fold(Projection(envelope_id)))
        current[1].add(envelope_id, org_id, entry)
    if current is not None:
        yield current


def _report(ctx: Context, chain: Projection, rows: Rows, claim: EnvelopeImport | None) -> None:
    for mismatch in compare(chain, rows) + compare_import(chain, claim):
        ctx.report(Finding(mismatch.code, mismatch.message, mismatch.details))


def _claims(session: Session, ids: list[str]) -> dict[str, EnvelopeImport]:
    """The page's import claims by envelope, whichever organisation a row names (an edited one is a finding)."""
    return {
        c.envelope_id: c for c in session.exec(select(EnvelopeImport).where(col(EnvelopeImport.envelope_id).in_(ids)))
    }


def _check_unattached_claims(ctx: Context, org_id: str) -> None:
    """The organisation's recorded import claims that name no envelope at all: the page pass never meets them.

    One anti-join on the claim's key; a claim not yet recorded is an import in flight, not a finding. (A run
    scoped to envelopes names existing ones only, so it has none to look for.)"""
    scope = ctx.scope
    with ctx.sources.db.read_session() as session:
        snapshot(session)
        envelope = select(Envelope.id).where(Envelope.id == EnvelopeImport.envelope_id)
        stmt = select(EnvelopeImport).where(
            EnvelopeImport.org_id == org_id, col(EnvelopeImport.recorded_at).is_not(None), ~envelope.exists()
        )
        for claim in session.exec(stmt.order_by(col(EnvelopeImport.envelope_id))):
            if scope.key_in_shard(claim.envelope_id):
                for mismatch in unsupported_claim(claim):
                    ctx.report(Finding(mismatch.code, mismatch.message, mismatch.details))


def _check_keys(ctx: Context, org_id: str) -> None:
    """The organisation's key rows against its log's key events (the scopes condition 4 relies on)."""
    with ctx.sources.db.read_session() as session:
        snapshot(session)
        stmt = select(ApiKey).where(ApiKey.org_id == org_id)
        if ctx.scope.started_at is not None:
            stmt = stmt.where(col(ApiKey.created_at) <= ctx.scope.started_at)
        for mismatch in compare_keys(key_ledger(session, org_id), session.exec(stmt)):
            ctx.report(Finding(mismatch.code, mismatch.message, mismatch.details))


def _check_page(ctx: Context, ids: list[str]) -> None:
    with ctx.sources.db.read_session() as session:
        snapshot(session)
        rows, claims = _rows(session, ids), _claims(session, ids)
        for envelope_id, fold in _chains(session, ids):
            left = rows.pop(envelope_id, None)
            if fold.broken is not None:
                ctx.report(fold.broken)
            if fold.projection is not None and left is not None:
                _report(ctx, fold.projection, left, claims.get(envelope_id))
    for envelope_id, left in rows.items():  # envelopes whose chain has no entry at all
        _report(ctx, Projection(envelope_id), left, claims.get(envelope_id))
    ctx.count("envelopes", len(ids))


def check_rows(ctx: Context, org_id: str) -> None:
    """Compare one organisation's rows with their chains; an interrupted pass resumes after its last page."""
    unit = f"rows:{org_id}"
    state = ctx.runs.unit_state(unit)
    if state.done:
        return
    position, checked = state.position, state.checked
    if position is None and not ctx.scope.envelopes:
        _check_keys(ctx, org_id)
        _check_unattached_claims(ctx, org_id)
    last_save = time.monotonic()
    for page in _envelope_ids(ctx, org_id, position):
        if ctx.stopping.is_set():
            ctx.runs.save_position(unit, position, checked)
            raise Interrupted("another pass of this run stopped")
        _check_page(ctx, page)
        position, checked = page[-1], checked + len(page)
        if time.monotonic() - last_save >= ctx.tuning.save_seconds:
            ctx.runs.save_position(unit, position, checked)
            last_save = time.monotonic()
    ctx.runs.save_position(unit, position, checked, done=True)
