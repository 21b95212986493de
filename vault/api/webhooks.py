"""``/webhook``: configure the organisation's webhook, and inspect and redeliver its deliveries.

Each handler parses, calls one service of :mod:`vault.webhooks` and answers with its JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from vault.api.schemas import READ_ERRORS, WRITE_ERRORS, answers
from vault.runtime import Runtime
from vault.tenancy import Principal
from vault.webhooks.config import WebhookChange, configure_webhook, show_webhook
from vault.webhooks.deliveries import DEFAULT_LIMIT, list_deliveries, redeliver


@dataclass
class WebhookView:
    """``secret`` only in the answer that generated it (v1); ``public_key`` (``whpk_``) for v1a. ``enabled`` is
    false after a ``410 Gone`` from the receiver or ``"enabled": false``; ``disabled_reason`` says which."""

    url: str
    scheme: str
    public_key: str | None
    rotation_ends_at: str | None
    created_at: str
    updated_at: str
    enabled: bool
    disabled_at: str | None
    disabled_reason: str | None
    secret: str | None = None


@dataclass
class AttemptView:
    attempted_at: str
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int


@dataclass
class DeliveryView:
    id: str
    webhook_id: str
    event_type: str
    envelope_id: str | None
    log_index: int
    status: str
    attempt_count: int
    attempts: list[AttemptView]
    next_attempt_at: str | None
    in_flight: bool
    created_at: str


@dataclass
class DeliveryPage:
    items: list[DeliveryView]
    next_cursor: str | None


class WebhookController(Controller):
    path = "/webhook"
    tags = ["Webhooks"]

    @patch(
        "/",
        opt={"scope": "envelopes:write"},
        sync_to_thread=True,
        responses=answers(200, WebhookView, (*READ_ERRORS, 408, 409), "The configuration"),
    )
    def configure(
        self, data: JSONBody[WebhookChange], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> dict[str, Any]:
        """Set the URL, choose the scheme (v1 HMAC, v1a Ed25519), rotate the key, or disable or enable sending; a
        generated secret is shown once."""
        return configure_webhook(runtime.db, runtime.settings.webhooks, runtime.webhook_box, principal.org_id, data)

    @get(
        "/",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, WebhookView, READ_ERRORS, "The configuration, without its secret"),
    )
    def show(self, runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
        """The webhook's URL, scheme, public key (v1a) and rotation; 404 ``Webhook.NotConfigured`` when none."""
        return show_webhook(runtime.db, runtime.webhook_box, principal.org_id)

    @get(
        "/deliveries",
        opt={"scope": "envelopes:read"},
        sync_to_thread=True,
        responses=answers(200, DeliveryPage, READ_ERRORS, "One page of deliveries, newest first"),
    )
    def deliveries(
        self,
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Every event sent or to be sent to your webhook, newest first, with its latest attempts."""
        return list_deliveries(runtime.db, principal.org_id, cursor, limit)

    @post(
        "/deliveries/{delivery_id:str}/redeliver",
        opt={"scope": "envelopes:write"},
        status_code=202,
        sync_to_thread=True,
        responses=answers(202, DeliveryView, WRITE_ERRORS, "Due again now, under the same webhook-id"),
    )
    def redeliver(
        self, delivery_id: FromPath[str], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> dict[str, Any]:
        """Send the delivery again (same ``webhook-id``, fresh retry schedule); 409 while an attempt is in flight or
        the webhook is disabled."""
        return redeliver(runtime.db, principal.org_id, delivery_id)
