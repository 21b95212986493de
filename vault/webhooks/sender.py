"""The background sender: claims due deliveries from the outbox and sends them, one sender across processes.

Each round with anything due it takes (or renews) the lease, claims due deliveries up to its free workers, at
most ``EVAULT_WEBHOOK_PER_ORG`` in flight per organisation (chosen per organisation in SQL, so one receiver's
backlog cannot crowd the others out of the round), and hands each to a worker; an idle round only reads. A
claim moves the delivery's ``next_attempt_at`` past the attempt's deadline, so a sender that dies mid-attempt
leaves it due again for the next tenure. Every attempt re-resolves and re-checks
the target, is signed afresh with its own ``webhook-timestamp`` under the same ``webhook-id``, and is recorded.

A ``410 Gone`` ends its delivery and disables the webhook, as the Standard Webhooks specification asks ("the
server is no longer interested in receiving webhooks from this source"), unless the organisation moved it to
another URL meanwhile. Deliveries of a disabled webhook wait, pending, until it is enabled again.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, func, select

from compliance.errors import InvalidInput, Unavailable
from storage.db import Database
from storage.ids import as_utc, utcnow
from storage.leases import Tenure, give_up, holds, new_holder, take_lease
from storage.models import WebhookAttempt, WebhookConfig, WebhookDelivery
from storage.settings import WebhookSettings
from vault.webhooks.outbox import WAKE
from vault.webhooks.secret_box import SecretBox
from vault.webhooks.signing import sign
from vault.webhooks.targets import Resolver, resolve
from vault.webhooks.transport import Answer, post

log = logging.getLogger("evault.webhooks")
POLL_SECONDS = 1.0
LEASE = "webhook-sender"
LEASE_SECONDS = 30
CLAIM_MARGIN_SECONDS = 5
MAX_RETRY_AFTER_SECONDS = 86400
GONE = 410
GONE_REASON = "the endpoint answered 410 Gone"
# The organisations whose webhook is disabled: their deliveries are neither claimed nor counted as due.
_DISABLED = select(col(WebhookConfig.org_id)).where(col(WebhookConfig.disabled_at).is_not(None))


def keys_in_force(config: WebhookConfig, box: SecretBox) -> list[str]:
    """The current key, and the previous one while its rotation's grace lasts, opened."""
    keys = [box.open(config.org_id, config.secret)]
    if config.previous_secret and config.previous_until and as_utc(config.previous_until) > utcnow():
        keys.append(box.open(config.org_id, config.previous_secret))
    return keys


class Sender:
    def __init__(
        self, db: Database, settings: WebhookSettings, box: SecretBox, resolver: Resolver = socket.getaddrinfo
    ) -> None:
        self.db = db
        self.settings = settings
        self.box = box
        self.resolver = resolver
        self.holder = new_holder()
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="evault-webhook")
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: a round, then wait for a commit that queued something or the next poll."""
        try:
            while not stop.is_set():
                try:
                    self.round()
                except Exception as exc:  # keep going after a passing database fault
                    log.warning("webhook sender round failed, will retry: %s", exc)
                WAKE.wait(POLL_SECONDS)
                WAKE.clear()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            try:
                give_up(self.db, LEASE, self.holder)
            except Exception as exc:  # the next sender waits out the lease instead
                log.warning("could not give up the webhook lease: %s", exc)

    def round(self) -> int:
        """Take the lease and start every due delivery there is a worker for; the number started."""
        if not self._anything_due():
            return 0  # an idle sender only reads: no lease renewal, no write transaction
        tenure = take_lease(self.db, LEASE, self.holder, timedelta(seconds=LEASE_SECONDS))
        if tenure is None:
            return 0
        claimed = self._claim(tenure)
        for delivery_id, org_id in claimed:
            self._pool.submit(self._attempt, delivery_id, org_id, tenure.token)
        return len(claimed)

    def _anything_due(self) -> bool:
        query = select(col(WebhookDelivery.id)).where(
            col(WebhookDelivery.status) == "pending",
            col(WebhookDelivery.next_attempt_at) <= utcnow(),
            col(WebhookDelivery.org_id).not_in(_DISABLED),
        )
        with self.db.read_session() as session:
            return session.exec(query.limit(1)).first() is not None

    def _claim(self, tenure: Tenure) -> list[tuple[str, str]]:
        with self._lock:
            free = self.settings.concurrency - sum(self._in_flight.values())
            busy = dict(self._in_flight)
        if free <= 0:
            return []
        now = utcnow()
        claimed: list[tuple[str, str]] = []
        with self.db.session() as session:
            if not holds(session, tenure):
                return []
            taken: Counter[str] = Counter(busy)
            for row in session.exec(self._due(now, free, busy)):
                if len(claimed) == free:
                    break
                if taken[row.org_id] >= self.settings.per_org:
                    continue
                taken[row.org_id] += 1
                row.claimed_by = tenure.token
                row.next_attempt_at = now + timedelta(seconds=self.settings.timeout_seconds + CLAIM_MARGIN_SECONDS)
                session.add(row)
                claimed.append((row.id, row.org_id))
        with self._lock:
            self._in_flight.update(org_id for _, org_id in claimed)
        return claimed

    def _due(self, now: datetime, free: int, busy: dict[str, int]) -> Any:
        """The due deliveries to lock, oldest first, at most ``per_org`` of each organisation, none of one that is
        at its cap already: one organisation's backlog cannot fill the window and starve the others."""
        due = (
            (col(WebhookDelivery.status) == "pending")
            & (col(WebhookDelivery.next_attempt_at) <= now)
            & col(WebhookDelivery.org_id).not_in(_DISABLED)
        )
        capped = [org for org, count in busy.items() if count >= self.settings.per_org]
        if capped:
            due = due & col(WebhookDelivery.org_id).not_in(capped)
        rank = func.row_number().over(
            partition_by=col(WebhookDelivery.org_id),
            order_by=(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id)),
        )
        ranked = select(col(WebhookDelivery.id), col(WebhookDelivery.next_attempt_at), rank.label("rank")).where(due)
        window = ranked.subquery()
        ids = (
            select(window.c.id)
            .where(window.c.rank <= self.settings.per_org)
            .order_by(window.c.next_attempt_at, window.c.id)
            .limit(free)
        )
        return (
            select(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(ids), due)  # locked rows are checked again: still pending, still due
            .order_by(col(WebhookDelivery.next_attempt_at))
            .with_for_update(skip_locked=True)
        )

    def _attempt(self, delivery_id: str, org_id: str, token: int) -> None:
        try:
            self._send(delivery_id, token)
        except Exception as exc:
            log.warning("webhook delivery %s failed unexpectedly, will retry: %s", delivery_id, exc)
        finally:
            with self._lock:
                self._in_flight[org_id] -= 1
                if self._in_flight[org_id] <= 0:
                    del self._in_flight[org_id]
            WAKE.set()  # a worker is free: claim what is due without waiting for the next poll

    def _send(self, delivery_id: str, token: int) -> None:
        with self.db.read_session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            config = session.get(WebhookConfig, delivery.org_id) if delivery is not None else None
        if delivery is None or delivery.claimed_by != token:
            return
        if config is not None and config.disabled_at is not None:  # disabled since the claim: wait, unsent
            self._release(delivery_id, token)
            return
        attempted_at = utcnow()
        if config is None:
            answer = Answer("refused", None, "no webhook is configured", 0)
        else:
            try:
                target = resolve(config.url, self.settings.allow_networks, self.resolver)
                keys = keys_in_force(config, self.box)
            except (InvalidInput, Unavailable) as exc:
                answer = Answer("refused", None, f"{exc.code}: {exc.message}", 0)
            else:
                body = delivery.body.encode()
                timestamp = int(time.time())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "evault-webhooks/1",
                    "webhook-id": delivery.webhook_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(keys, delivery.webhook_id, timestamp, body),
                }
                answer = post(target, body, headers, self.settings.timeout_seconds)
        self._record(delivery_id, token, attempted_at, answer, config.url if config is not None else None)

    def _release(self, delivery_id: str, token: int) -> None:
        """Give the claim back untried: the delivery stays pending, due as soon as its webhook is enabled."""
        with self.db.session() as session:
            delivery = session.exec(
                select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
            ).first()
            if delivery is not None and delivery.claimed_by == token:
                delivery.claimed_by, delivery.next_attempt_at = None, utcnow()
                session.add(delivery)

    def _record(self, delivery_id: str, token: int, attempted_at: datetime, answer: Answer, url: str | None) -> None:
        now = utcnow()
        schedule = self.settings.retry_schedule
        with self.db.session() as session:
            delivery = session.exec(
                select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
            ).first()
            if delivery is None or delivery.claimed_by != token:
                return  # another tenure took it over meanwhile: its own attempt will be recorded
            session.add(
                WebhookAttempt(
                    delivery_id=delivery_id,
                    attempted_at=attempted_at,
                    outcome=answer.outcome,
                    http_status=answer.http_status,
                    error=answer.error,
                    duration_ms=answer.duration_ms,
                )
            )
            delivery.attempts += 1
            delivery.last_attempt_at = attempted_at
            delivery.claimed_by = None
            if answer.outcome == "delivered":
                delivery.status, delivery.next_attempt_at = "delivered", None
            elif answer.http_status == GONE:
                delivery.status, delivery.next_attempt_at = "failed", None
                _disable_gone(session, delivery.org_id, url, now)
            elif delivery.retry_step < len(schedule):
                delay = schedule[delivery.retry_step] * (1 + secrets.randbelow(101) / 1000)  # up to 10 % jitter
                if answer.retry_after is not None:  # the receiver's Retry-After, up to a day
                    delay = max(delay, min(answer.retry_after, MAX_RETRY_AFTER_SECONDS))
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                delivery.retry_step += 1
            else:
                delivery.status, delivery.next_attempt_at = "failed", None
            session.add(delivery)


def _disable_gone(session: Any, org_id: str, url: str | None, now: datetime) -> None:
    """Disable the organisation's webhook after a 410 from ``url``; not if it has moved to another URL since."""
    config = session.exec(select(WebhookConfig).where(WebhookConfig.org_id == org_id).with_for_update()).first()
    if config is None or config.url != url or config.disabled_at is not None:
        return
    config.disabled_at, config.disabled_reason = now, GONE_REASON
    session.add(config)
    log.warning("webhook of organisation %s disabled: %s", org_id, GONE_REASON)  # not its URL: it may hold a token
