"""Non-authoritative copies: each registered copy exists, is the registered bytes, carries its mark on every page
and is not the original; every object in the copies bucket is in the register.

Same shape as the object pass: one version listing per organisation (``copies/<org>/``) merged in key order with
the register. A copy is read whole (the mark is recognised from its text by
``compliance.conditions.copy_mark``), so memory per copy in flight is the copy's size. An unregistered object
whose key a copy claim younger than the grace period names is a copy on its way (or the leftover of a request
that died, which the reconciler removes after the grace period), not a finding.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from compliance.conditions.copy_mark import unmarked_pages
from compliance.verifier.context import Context
from compliance.verifier.findings import Finding
from compliance.verifier.merge import binary_order, merge_by_key
from compliance.verifier.objects import _in_window
from compliance.verifier.pipeline import prefetch, run_ordered
from compliance.verifier.reads import by_key, read_version
from storage.models import CopyClaim, CopyRecord
from storage.object_store import VersionEntry


def _register(ctx: Context, org_id: str, after: str | None) -> Iterator[CopyRecord]:
    scope = ctx.scope
    with ctx.sources.db.read_session() as session:
        stmt = select(CopyRecord).where(CopyRecord.org_id == org_id)
        if scope.started_at is not None:
            stmt = stmt.where(col(CopyRecord.issued_at) <= scope.started_at)
        if scope.envelopes:
            stmt = stmt.where(col(CopyRecord.envelope_id).in_(scope.envelopes))
        if scope.since is not None:
            stmt = stmt.where(col(CopyRecord.issued_at) >= scope.since)
        if after is not None:
            stmt = stmt.where(col(CopyRecord.s3_key) > after)
        stmt = stmt.order_by(binary_order(session, col(CopyRecord.s3_key)), col(CopyRecord.id))
        yield from session.exec(stmt.execution_options(yield_per=500))


def _listing(ctx: Context, org_id: str, after: str | None) -> Iterator[tuple[str, list[VersionEntry]]]:
    prefixes = [f"copies/{org_id}/{e}/" for e in sorted(ctx.scope.envelopes)] or [f"copies/{org_id}/"]
    for prefix in prefixes:
        for key, versions in by_key(ctx.sources.copies.list_entries(prefix)):
            if after is None or key > after:
                yield key, versions


def check_copy(ctx: Context, copy: CopyRecord, versions: list[VersionEntry]) -> None:
    where = {
        "org_id": copy.org_id,
        "envelope_id": copy.envelope_id,
        "copy_id": copy.id,
        "key": copy.s3_key,
        "version_id": copy.s3_version_id,
    }
    others = [v.version_id for v in versions if v.version_id != copy.s3_version_id]
    if others:
        ctx.report(
            Finding("Copy.Altered", "other versions sit on the registered copy's key", {**where, "versions": others})
        )
    buffer = io.BytesIO()
    result = read_version(ctx, ctx.sources.copies, copy.s3_key, copy.s3_version_id, buffer.write)
    if result.failure == "missing":
        ctx.report(Finding("Copy.Missing", "a registered copy is not in the copies bucket", where))
        return
    if result.failure == "unreadable":
        ctx.report(Finding("Object.Unreadable", "a registered copy cannot be read", {**where, "error": result.error}))
        return
    if result.failure == "checksum" or result.sha256 != copy.sha256:
        ctx.report(
            Finding(
                "Copy.Altered",
                "the copy's bytes differ from the register",
                {**where, "read_sha256": result.sha256, "registered_sha256": copy.sha256},
            )
        )
    if result.sha256 == copy.source_sha256:
        ctx.report(Finding("Copy.Unmarked", "the copy is byte-identical to the authoritative original", where))
        return
    pages = unmarked_pages(buffer.getvalue(), copy.id)
    if pages:
        ctx.report(Finding("Copy.Unmarked", "pages of the copy lack its mark", {**where, "pages": pages[:50]}))


def _registered_versions(ctx: Context, key: str) -> set[str]:
    with ctx.sources.db.read_session() as session:
        return set(session.exec(select(CopyRecord.s3_version_id).where(CopyRecord.s3_key == key)))


def _claimed(ctx: Context, org_id: str) -> frozenset[str]:
    """The keys of the organisation's copy claims within the grace period: copies on their way."""
    now = ctx.scope.started_at or datetime.now().astimezone()
    with ctx.sources.db.read_session() as session:
        recent = col(CopyClaim.claimed_at) >= now - ctx.tuning.claim_grace
        return frozenset(session.exec(select(CopyClaim.s3_key).where(CopyClaim.org_id == org_id, recent)))


def _check_key(
    ctx: Context,
    org_id: str,
    key: str,
    copies: list[CopyRecord],
    versions: list[VersionEntry],
    claimed: frozenset[str],
) -> None:
    if copies and not versions:
        versions = [v for v in ctx.sources.copies.list_entries(key) if v.key == key]
    for copy in copies:
        check_copy(ctx, copy, versions)
    registered = {c.s3_version_id for c in copies}
    if not copies:
        registered |= _registered_versions(ctx, key)  # outside this run's filters, or listed out of order
    for version in versions:
        if version.delete_marker or version.version_id in registered or not _in_window(ctx, version.last_modified):
            continue
        if copies or key in claimed:
            continue  # a new version on a registered copy's key (reported as Copy.Altered), or a claimed copy
        ctx.report(
            Finding(
                "Copy.Unregistered",
                "an object in the copies bucket is not in the copy register",
                {"org_id": org_id, "key": key, "version_id": version.version_id},
            )
        )
    ctx.count("copies", len(copies) or 1)


def check_copies(ctx: Context, org_id: str) -> None:
    unit = f"copies:{org_id}"
    state = ctx.runs.unit_state(unit)
    if state.done:
        return

    claimed = _claimed(ctx, org_id)

    def jobs() -> Iterator[tuple[str, Any]]:
        merged = merge_by_key(
            _register(ctx, org_id, state.position), lambda c: c.s3_key, prefetch(_listing(ctx, org_id, state.position))
        )
        for key, copies, versions in merged:
            if ctx.scope.key_in_shard(key):
                yield (
                    key,
                    lambda key=key, copies=copies, versions=versions: _check_key(
                        ctx, org_id, key, copies, versions, claimed
                    ),
                )

    run_ordered(ctx, unit, jobs())
