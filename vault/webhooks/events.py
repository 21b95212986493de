"""Which ledger events leave as webhooks, under which name, with which fields: one table the ceremony extends.

A webhook body is thin (Standard Webhooks' "thin payload"): the event's type and time, the envelope it is
about, its position in the organisation's log (so a receiver can fetch the entry and its proof), and a few
fields of the entry's data that say what happened. Nothing personal: the entry holds no clear personal data,
and only the fields named here leave.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from compliance.ledger.event_catalogue import (
    AMENDED,
    CHECK_FAILED,
    COPY_ISSUED,
    ENVELOPE_COMPLETED,
    ENVELOPE_CREATED,
    ENVELOPE_EXPIRED,
    ENVELOPE_IMPORTED,
    ENVELOPE_REMINDED,
    ENVELOPE_SENT,
    ENVELOPE_VOIDED,
    INTEGRITY_FAILED,
    PAPER_IN_ATTESTED,
    RECIPIENT_CONSENTED,
    RECIPIENT_DECLINED,
    RECIPIENT_SIGNED,
    RECIPIENT_VIEWED,
    RELEASED,
    TRANSFER_ACCEPTED,
    TRANSFER_CANCELLED,
    TRANSFER_COMPLETED,
    TRANSFER_EXPIRED,
    TRANSFER_INITIATED,
    TRANSFER_REJECTED,
    VAULTED_IN,
    EventType,
)
from storage.ids import iso
from storage.models import Envelope, Event


@dataclass(frozen=True)
class WebhookEvent:
    name: str  # the webhook's "type"
    fields: tuple[str, ...] = ()  # keys of the ledger entry's data copied into the webhook's data


def _leaving(event: EventType, *fields: str) -> tuple[str, WebhookEvent]:
    """A ledger event that leaves as a webhook of the same name, carrying keys its catalogue schema declares
    (never its personal-data commitments)."""
    declared = event.required.keys() | event.optional.keys()
    if not set(fields) <= declared - set(event.commitments):
        raise ValueError(f"webhook {event.name}: {sorted(set(fields) - declared)} are not fields it may carry")
    return event.name, WebhookEvent(event.name, fields)


# ledger event type -> webhook event.
WEBHOOK_EVENTS: dict[str, WebhookEvent] = dict(
    [
        _leaving(ENVELOPE_CREATED, "kind", "external_id"),
        _leaving(ENVELOPE_VOIDED),
        _leaving(ENVELOPE_EXPIRED, "expires_at"),
        _leaving(VAULTED_IN, "authoritative_copy_id", "source"),
        _leaving(ENVELOPE_IMPORTED, "authoritative_copy_id", "kind"),
        _leaving(COPY_ISSUED, "copy_id", "document_id", "authoritative_copy_id"),
        _leaving(RELEASED, "authoritative_copy_id", "reason"),
        _leaving(CHECK_FAILED, "verdict", "failed"),
        _leaving(INTEGRITY_FAILED, "code", "run_id"),
        _leaving(AMENDED, "amendment_id", "type"),
        _leaving(PAPER_IN_ATTESTED, "attestation_id", "original"),
        *(
            _leaving(step, "transfer_id", "from_org", "to_org", "type")
            for step in (
                TRANSFER_INITIATED,
                TRANSFER_ACCEPTED,
                TRANSFER_REJECTED,
                TRANSFER_CANCELLED,
                TRANSFER_EXPIRED,
                TRANSFER_COMPLETED,
            )
        ),
        _leaving(ENVELOPE_SENT, "recipients"),
        _leaving(RECIPIENT_VIEWED, "recipient_id"),
        _leaving(RECIPIENT_CONSENTED, "recipient_id"),
        _leaving(RECIPIENT_SIGNED, "recipient_id", "order"),
        _leaving(RECIPIENT_DECLINED, "recipient_id"),
        _leaving(ENVELOPE_REMINDED, "recipients"),
        _leaving(ENVELOPE_COMPLETED, "recipients", "document_sha256"),
    ]
)
TRANSFER_PARTIES = ("from_org", "to_org")  # a transfer's events reach both parties


def recipients(event: Event, envelope: Envelope | None) -> list[str]:
    """Who hears of a ledger event: an envelope's event goes to the organisations holding it now (after a
    transfer, not to the one that gave it away), a transfer's also to both parties; any other to its log's."""
    if envelope is None:
        return [event.org_id]
    orgs = {envelope.controller, envelope.custodian}
    if event.event_type.startswith("transfer."):
        data = json.loads(event.entry).get("data") or {}
        orgs |= {data[k] for k in TRANSFER_PARTIES if isinstance(data.get(k), str)}
    return sorted(orgs)


def webhook_body(event: Event, spec: WebhookEvent) -> str:
    """The exact JSON every attempt sends: ``{"type", "timestamp", "data": {"envelope_id", "log_index", ...}}``."""
    entry = json.loads(event.entry)
    data: dict[str, Any] = entry.get("data") or {}
    envelope_id = event.envelope_id
    subject = data.get("subject")
    if envelope_id is None and isinstance(subject, dict) and isinstance(subject.get("envelope_id"), str):
        envelope_id = subject["envelope_id"]  # a verifier finding about one envelope
    payload = {
        "type": spec.name,
        "timestamp": iso(event.occurred_at),
        "data": {
            "envelope_id": envelope_id,
            "log_index": event.leaf_index,
            **{key: data[key] for key in spec.fields if key in data},
        },
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
