"""One verifier run: fix the scope, check storage, every log, object and copy in it, record, report.

Modelled on Tessera's fsck: each object goes unchecked -> fetched -> ok / invalid, and a finding never stops
the run. A recorded run (``evault verify``) keeps its scope, progress and findings in the database, so
``--resume RUN_ID`` continues an interrupted run inside the same scope after its last durable position.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from compliance.errors import Unavailable
from compliance.ledger.events import log_size
from compliance.sources import Sources
from compliance.verifier.context import Context, Interrupted, MemoryRunLog, Tuning
from compliance.verifier.copies import check_copies
from compliance.verifier.findings import Finding
from compliance.verifier.health import check_storage
from compliance.verifier.logs import check_log
from compliance.verifier.objects import check_objects
from compliance.verifier.outside import check_outside
from compliance.verifier.progress import Display
from compliance.verifier.rows import check_rows
from compliance.verifier.run_records import DbRunLog, code_version, record_open_findings
from compliance.verifier.scope import Scope
from storage.ids import iso, utcnow
from storage.models import CopyRecord, Envelope, Organisation, VaultedDocument, VaultRecord


class CannotVerify(Unavailable):
    """Nothing was checked (an empty vault, an unknown run): never to be read as "clean"."""


@dataclass
class Options(Tuning):
    record: bool = True  # write run records, open findings and ledger events
    progress: Display | None = None


@dataclass
class Outcome:
    run_id: str | None
    scope: Scope
    findings: list[Finding]
    counts: dict[str, int]
    events_written: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    code_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "verdict": "clean" if self.clean else "findings",
            "scope": self.scope.as_json(),
            "started_at": iso(self.started_at) if self.started_at else None,
            "finished_at": iso(self.finished_at) if self.finished_at else None,
            "code_version": self.code_version,
            "counts": self.counts,
            "events_written": self.events_written,
            "findings": [f.as_json() for f in self.findings],
        }


def fix_scope(
    sources: Sources,
    orgs: Sequence[str] = (),
    envelopes: Sequence[str] = (),
    since: datetime | None = None,
    shard: tuple[int, int] | None = None,
) -> Scope:
    """The run's scope with its snapshot: start time, the organisations in it and each log's size now."""
    started_at = utcnow()
    with sources.db.read_session() as session:
        known = [o for o in session.exec(select(Organisation.id).order_by(col(Organisation.id)))]
        if not known:
            raise CannotVerify("Verify.EmptyVault", "the vault has no organisation: nothing to verify (never 'clean')")
        selected = [o for o in known if not orgs or o in orgs]
        unknown = sorted(set(orgs) - set(known))
        if unknown:
            raise CannotVerify("Verify.UnknownOrganisation", "no such organisation", org_ids=unknown)
        if envelopes:
            owners = dict(
                session.exec(select(Envelope.id, Envelope.org_id).where(col(Envelope.id).in_(envelopes))).all()
            )
            if set(envelopes) - set(owners):
                raise CannotVerify(
                    "Verify.UnknownEnvelope", "no such envelope", envelope_ids=sorted(set(envelopes) - set(owners))
                )
            selected = [o for o in selected if o in set(owners.values())]
        sizes = {org: log_size(session, org) for org in selected}
    return Scope(tuple(orgs), tuple(sorted(envelopes)), since, shard, started_at, sizes)


def estimate_objects(sources: Sources, scope: Scope) -> int:
    """Objects in scope (before sharding), for the progress bar's total and ETA."""
    with sources.db.read_session() as session:
        docs = select(func.count()).select_from(VaultedDocument).join(VaultRecord)
        copies = select(func.count()).select_from(CopyRecord)
        if scope.orgs or scope.envelopes:
            docs = docs.where(col(VaultRecord.org_id).in_(list(scope.log_sizes)))
            copies = copies.where(col(CopyRecord.org_id).in_(list(scope.log_sizes)))
        total = int(session.exec(docs).one()) + int(session.exec(copies).one())
    return total // scope.shard[1] if scope.shard else total


def _check_logs(ctx: Context, org_ids: list[str]) -> None:
    try:
        for org_id in org_ids:
            check_log(ctx, org_id)
    except BaseException:
        ctx.stopping.set()  # the object pass stops too: the run is interrupted, not half-checked
        raise


def verify(
    sources: Sources, scope: Scope | None = None, *, resume: str | None = None, options: Options | None = None
) -> Outcome:
    """Run (or resume) the verifier; raise :class:`CannotVerify` when nothing can be checked."""
    options = options or Options()
    if resume is not None:
        runs: DbRunLog | MemoryRunLog = DbRunLog(sources.db, resume)
        try:
            recorded = runs.run()  # type: ignore[union-attr]
        except KeyError:
            raise CannotVerify("Verify.UnknownRun", "no such verifier run", run_id=resume) from None
        if recorded.status == "finished":
            raise CannotVerify("Verify.RunFinished", "that run finished; start a new one", run_id=resume)
        scope = Scope.from_json(recorded.scope)
    else:
        scope = scope or fix_scope(sources)
        runs = DbRunLog.start(sources.db, scope) if options.record else MemoryRunLog()
    ctx = Context(sources, scope, runs, tuning=options)
    if options.progress is not None:
        ctx.on_progress = options.progress
    check_storage(ctx)
    audited = [org_id for org_id in sorted(scope.log_sizes) if scope.log_in_shard(org_id)]
    # The log pass is CPU work, the object pass waits on reads: run side by side, the log costs no wall time.
    with ThreadPoolExecutor(1, thread_name_prefix="verify-log") as log_pass:
        logs = log_pass.submit(_check_logs, ctx, audited)
        try:
            for org_id in sorted(scope.log_sizes):
                check_objects(ctx, org_id)
                check_copies(ctx, org_id)
                check_rows(ctx, org_id)
            check_outside(ctx)
        except BaseException as exc:
            ctx.stopping.set()  # the log pass stops at its next entry; its position is durable
            failure = logs.exception()
            if isinstance(exc, Interrupted) and failure is not None and not isinstance(failure, Interrupted):
                raise failure from None  # the log pass failed first: that is the cause, not the stop it caused
            raise
        logs.result()
    counts = {k: v for k, v in sorted(ctx.counts.items()) if not k.startswith("finding:")}
    if isinstance(runs, DbRunLog):
        findings = runs.findings()
        written = record_open_findings(sources.db, runs.run_id, findings, set(audited), close_rest=scope.everything)
        runs.finish({**counts, "findings": len(findings)}, "findings" if findings else "clean")
        run = runs.run()
        return Outcome(run.id, scope, findings, counts, written, scope.started_at, run.finished_at, run.code_version)
    findings = list(runs.findings.values())
    return Outcome(None, scope, findings, counts, 0, scope.started_at, utcnow(), code_version())
