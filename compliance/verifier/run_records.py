"""Run records in the database: the run, its per-unit progress and findings, and the findings still open.

A recorded run writes nothing but these rows and, for findings newly opened, one ``integrity.failed`` event
in the organisation's log: and only once the log itself verified (no log fault in this run), because the next
checkpoint would otherwise sign a tampered tree. A finding already open is not recorded again every night.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from compliance.finding_codes import LOG_CODES
from compliance.ledger.event_catalogue import INTEGRITY_FAILED
from compliance.ledger.events import Actor, append_event
from compliance.verifier.context import UnitState
from compliance.verifier.findings import Finding
from compliance.verifier.scope import Scope
from storage.db import Database
from storage.ids import new_id, utcnow
from storage.models import OpenFinding, VerifyFinding, VerifyProgress, VerifyRun

log = logging.getLogger("evault.verifier")
ACTOR_SOURCE = "verifier"


def code_version() -> str:
    """The package version, plus ``git describe`` when run from a checkout."""
    try:
        version = metadata.version("evault")
    except metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parents[2]
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],  # noqa: S607
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    return f"{version}+{described}" if described else version


class DbRunLog:
    """A run recorded in ``verify_run`` / ``verify_progress`` / ``verify_finding``."""

    def __init__(self, db: Database, run_id: str) -> None:
        self.db, self.run_id = db, run_id
        self._lock = threading.Lock()

    @classmethod
    def start(cls, db: Database, scope: Scope) -> DbRunLog:
        run_id = new_id("vr")
        with db.session() as session:
            session.add(
                VerifyRun(
                    id=run_id,
                    started_at=scope.started_at or utcnow(),
                    status="running",
                    scope=scope.as_json(),
                    code_version=code_version(),
                    counts={},
                )
            )
        return cls(db, run_id)

    def run(self) -> VerifyRun:
        with self.db.read_session() as session:
            run = session.get(VerifyRun, self.run_id)
        if run is None:
            raise KeyError(self.run_id)
        return run

    def unit_state(self, unit: str) -> UnitState:
        with self.db.read_session() as session:
            row = session.get(VerifyProgress, (self.run_id, unit))
        return UnitState() if row is None else UnitState(row.state == "done", row.position, row.checked)

    def save_position(self, unit: str, position: str | None, checked: int, *, done: bool = False) -> None:
        with self._lock, self.db.session() as session:
            row = session.get(VerifyProgress, (self.run_id, unit)) or VerifyProgress(
                run_id=self.run_id, unit=unit, state="pending", checked=0, updated_at=utcnow()
            )
            row.state, row.position, row.checked, row.updated_at = (
                ("done" if done else "pending"),
                position,
                checked,
                utcnow(),
            )
            session.add(row)

    def add_finding(self, finding: Finding) -> None:
        with self._lock:
            try:
                with self.db.session() as session:
                    if session.get(VerifyFinding, (self.run_id, finding.fingerprint)) is not None:
                        return  # found again after a resume
                    session.add(
                        VerifyFinding(
                            run_id=self.run_id,
                            fingerprint=finding.fingerprint,
                            code=finding.code,
                            org_id=finding.org_id,
                            subject=finding.subject,
                            message=finding.message,
                            details=_jsonable(finding.details),
                            found_at=utcnow(),
                        )
                    )
            except IntegrityError:
                return

    def findings(self) -> list[Finding]:
        with self.db.read_session() as session:
            rows = session.exec(
                select(VerifyFinding).where(VerifyFinding.run_id == self.run_id).order_by(col(VerifyFinding.found_at))
            )
            return [Finding(r.code, r.message, r.details) for r in rows]

    def finish(self, counts: dict[str, Any], verdict: str, status: str = "finished") -> None:
        with self.db.session() as session:
            run = session.get(VerifyRun, self.run_id)
            assert run is not None
            run.finished_at, run.counts, run.verdict, run.status = utcnow(), counts, verdict, status
            session.add(run)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def tampered_logs(findings: list[Finding]) -> set[str]:
    """Organisations whose log this run found faulty: they get no new ledger entries."""
    return {f.org_id for f in findings if f.code in LOG_CODES and f.org_id is not None}


def record_open_findings(
    db: Database, run_id: str, findings: list[Finding], audited_logs: set[str], *, close_rest: bool
) -> int:
    """Open a row (and an ``integrity.failed`` event) per new fingerprint; return the number of events written.

    ``audited_logs`` are the organisations whose log this run checked: only there is the log known sound, so
    findings of other organisations stay in the run record only. Findings of a tampered log (or of no
    organisation) are opened without an event and logged at ERROR. ``close_rest`` (an unfiltered run that
    finished) closes the open findings it did not see again.
    """
    now = utcnow()
    tampered = tampered_logs(findings)
    for faulty in sorted(tampered):
        log.error(
            "integrity: the log of %s is faulty; its findings are not written into it (see the run %s)", faulty, run_id
        )
    written = 0
    seen: set[str] = set()
    for finding in findings:
        seen.add(finding.fingerprint)
        org_id = finding.org_id
        if org_id is not None and org_id not in audited_logs:
            continue  # its log was not shown sound in this run (another shard's): a run that audits it opens it
        with db.session() as session:
            row = session.get(OpenFinding, finding.fingerprint)
            if row is not None and row.closed_at is None:
                row.last_run_id, row.last_seen_at = run_id, now
                session.add(row)
                continue
            row = row or OpenFinding(
                fingerprint=finding.fingerprint,
                code=finding.code,
                org_id=finding.org_id,
                subject=finding.subject,
                first_run_id=run_id,
                first_seen_at=now,
                last_run_id=run_id,
                last_seen_at=now,
            )
            row.closed_at, row.last_run_id, row.last_seen_at, row.event_leaf_index = None, run_id, now, None
            if org_id is not None and org_id not in tampered:
                event = append_event(
                    session,
                    actor=Actor(org_id, key_id=None, source=ACTOR_SOURCE),
                    event_type=INTEGRITY_FAILED,
                    occurred_at=now,
                    data={
                        "code": finding.code,
                        "subject": finding.subject,
                        "message": finding.message,
                        "run_id": run_id,
                    },
                )
                row.event_leaf_index = event.leaf_index
                written += 1
            else:
                log.error("integrity: %s %s (run %s)", finding.code, finding.subject, run_id)
            session.add(row)
    if close_rest:
        with db.session() as session:
            for row in session.exec(select(OpenFinding).where(col(OpenFinding.closed_at).is_(None))):
                if row.fingerprint not in seen:
                    row.closed_at = now
                    session.add(row)
    return written
