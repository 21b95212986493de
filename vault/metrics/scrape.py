"""Gauges read from the database when Prometheus scrapes: the state every process shares, counted once.

Each query is bounded: one row per organisation (its log size and its latest checkpoint, found by the primary
key's order, not by scanning checkpoints), the open vault-in claims (a handful), the newest verifier run, and
the pending webhook deliveries (the ``status`` index). A database that does not answer gives
``evault_metrics_database_up 0`` and no gauges, never a failed scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from storage.db import Database
from storage.ids import utcnow
from storage.models import Checkpoint, LogState, Organisation, VaultClaim, VerifyFinding, VerifyRun, WebhookDelivery

log = logging.getLogger("evault.metrics")


def _age(now: datetime, then: datetime | None) -> float | None:
    if then is None:
        return None
    return max(0.0, (now - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds())


def _logs(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    size = GaugeMetricFamily("evault_log_size", "Entries in the organisation's transparency log", labels=["org"])
    signed = GaugeMetricFamily(
        "evault_checkpoint_size", "Entries the latest checkpoint signs (0: none yet)", labels=["org"]
    )
    age = GaugeMetricFamily(
        "evault_checkpoint_age_seconds",
        "Seconds since the latest checkpoint was signed (since the organisation was created, if none yet)",
        labels=["org"],
    )
    latest = select(col(Checkpoint.size)).where(col(Checkpoint.org_id) == col(Organisation.id))
    latest = latest.order_by(col(Checkpoint.size).desc()).limit(1)
    rows = session.execute(
        select(
            col(Organisation.id),
            col(Organisation.created_at),
            col(LogState.size),
            latest.scalar_subquery(),
            latest.with_only_columns(col(Checkpoint.created_at)).scalar_subquery(),
        ).outerjoin(LogState, col(LogState.org_id) == Organisation.id)
    ).all()
    for org_id, created_at, log_size, checkpoint_size, checkpoint_at in rows:
        size.add_metric([org_id], float(log_size or 0))
        signed.add_metric([org_id], float(checkpoint_size or 0))
        age.add_metric([org_id], _age(now, checkpoint_at if checkpoint_at is not None else created_at) or 0.0)
    yield from (size, signed, age)


def _claims(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    count, oldest = session.execute(select(func.count(), func.min(VaultClaim.claimed_at))).one()
    yield GaugeMetricFamily(
        "evault_reconciler_open_claims", "Vault-in claims not yet recorded or released", value=float(count)
    )
    yield GaugeMetricFamily(
        "evault_reconciler_oldest_claim_age_seconds",
        "Age of the oldest open vault-in claim (0: none)",
        value=_age(now, oldest) or 0.0,
    )


def _verifier(session: Session) -> Iterator[GaugeMetricFamily]:
    run = session.execute(
        select(col(VerifyRun.id), col(VerifyRun.started_at), col(VerifyRun.finished_at))
        .where(col(VerifyRun.finished_at).is_not(None))
        .order_by(col(VerifyRun.finished_at).desc())
        .limit(1)
    ).first()
    if run is None:
        return
    run_id, started, finished = run
    findings = session.execute(select(func.count()).where(VerifyFinding.run_id == run_id)).scalar_one()
    at = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
    begun = started if started.tzinfo else started.replace(tzinfo=UTC)
    yield GaugeMetricFamily(
        "evault_verifier_last_run_timestamp_seconds", "When the newest verifier run ended", value=at.timestamp()
    )
    yield GaugeMetricFamily(
        "evault_verifier_last_run_duration_seconds",
        "How long the newest finished verifier run took",
        value=(at - begun).total_seconds(),
    )
    yield GaugeMetricFamily(
        "evault_verifier_last_run_findings", "Findings of the newest finished verifier run", value=float(findings)
    )


def _webhooks(session: Session, now: datetime) -> Iterator[GaugeMetricFamily]:
    """The outbox's backlog: pending deliveries (through the ``status`` index)."""
    count, oldest = session.execute(
        select(func.count(), func.min(WebhookDelivery.created_at)).where(col(WebhookDelivery.status) == "pending")
    ).one()
    yield GaugeMetricFamily("evault_webhook_backlog", "Webhook deliveries waiting to be sent", value=float(count))
    yield GaugeMetricFamily(
        "evault_webhook_backlog_oldest_age_seconds",
        "Age of the oldest webhook delivery waiting to be sent (0: none)",
        value=_age(now, oldest) or 0.0,
    )


class DatabaseCollector(Collector):
    """Reads the shared state at scrape time, in one read transaction."""

    def __init__(self, db: Database, checkpoint_interval_seconds: int) -> None:
        self.db = db
        self.interval = checkpoint_interval_seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "evault_checkpoint_interval_seconds",
            "The configured checkpoint cadence (EVAULT_CHECKPOINT_INTERVAL), for alert rules",
            value=float(self.interval),
        )
        now = utcnow()
        try:
            with self.db.read_session() as session:
                families = [*_logs(session, now), *_claims(session, now), *_verifier(session), *_webhooks(session, now)]
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", type(exc.__cause__ or exc).__name__)
            families = []
        yield GaugeMetricFamily(
            "evault_metrics_database_up", "1 when this scrape could read the database", value=float(bool(families))
        )
        yield from families
