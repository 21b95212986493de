"""Countersigned receipts: an organisation registers its Ed25519 public key, then countersigns the statement of a
completed transfer it was a party to; every receipt of that transfer carries the countersignatures from then on
(compliance/receipts/countersign.py, docs/receipts.md).

Both steps are ledger events of the organisation's own log (``org.signing_key_added``,
``transfer.countersigned``), committed with their rows; a party countersigns once (the primary key decides a race).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from compliance.certificates.issuance import key_id_of
from compliance.errors import Conflict, InvalidInput
from compliance.ledger.event_catalogue import ORG_SIGNING_KEY_ADDED, TRANSFER_COUNTERSIGNED
from compliance.ledger.events import Actor, append_event
from compliance.receipts.countersign import ed25519_key, signature_holds, statement_sha256
from compliance.receipts.transfer import transfer_statement
from storage.ids import iso, utcnow
from storage.models import OrgSigningKey, ReceiptCountersignature
from vault.custody import Custody
from vault.org_settings import lock_organisation
from vault.transfers import visible_transfer

OnCountersign = Callable[[Session, ReceiptCountersignature], None]


def add_signing_key(session: Session, org_id: str, pem: str) -> OrgSigningKey:
    """Register one Ed25519 public key of the organisation's; another key type, or one registered already, is
    refused."""
    try:
        key_id = key_id_of(ed25519_key(pem))
    except ValueError:
        raise InvalidInput("Org.InvalidSigningKey", "the key is not an Ed25519 public key in PEM") from None
    org = lock_organisation(session, org_id)
    if session.get(OrgSigningKey, key_id) is not None:
        raise Conflict("Org.SigningKeyExists", "this key is registered already", key_id=key_id)
    row = OrgSigningKey(key_id=key_id, org_id=org.id, public_pem=pem.strip() + "\n", created_at=utcnow())
    session.add(row)
    append_event(
        session,
        actor=Actor(org.id),
        event_type=ORG_SIGNING_KEY_ADDED,
        occurred_at=row.created_at,
        data={"key_id": key_id, "public_key": row.public_pem},
    )
    return row


def countersignature_view(row: ReceiptCountersignature) -> dict[str, Any]:
    return {
        "transfer_id": row.transfer_id,
        "org_id": row.org_id,
        "key_id": row.key_id,
        "value": row.value,
        "created_at": iso(row.created_at),
    }


def _already_signed() -> Conflict:
    return Conflict("Countersign.AlreadySigned", "your organisation countersigned this receipt already")


def countersign(
    custody: Custody,
    actor: Actor,
    transfer_id: str,
    key_id: Any,
    value: Any,
    on_commit: OnCountersign | None = None,
) -> ReceiptCountersignature:
    """Record a party's signature over the completed transfer's statement, made with its registered key."""
    if not isinstance(key_id, str) or not isinstance(value, str) or len(value) > 100:
        raise InvalidInput("Countersign.Invalid", "key_id and signature (base64) are required", field="signature")
    try:
        base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise InvalidInput("Countersign.Invalid", "signature is not base64", field="signature") from None
    with custody.db.session() as session:
        transfer = visible_transfer(session, actor.org_id, transfer_id)  # anyone else's transfer is 404
        data = transfer_statement(session, transfer)  # 409 Receipt.NotCompleted before control moved
        key = session.get(OrgSigningKey, key_id)
        if key is None or key.org_id != actor.org_id:
            raise InvalidInput(
                "Countersign.UnknownKey", "the key is not registered for your organisation", field="key_id"
            )
        if not signature_holds(key.public_pem, value, data):
            raise InvalidInput("Countersign.BadSignature", "the signature does not verify over the receipt's statement")
        if session.get(ReceiptCountersignature, (transfer.id, actor.org_id)) is not None:
            raise _already_signed()
        row = ReceiptCountersignature(
            transfer_id=transfer.id, org_id=actor.org_id, key_id=key.key_id, value=value, created_at=utcnow()
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # two countersignatures of one party at once: the primary key decides
            raise Conflict(
                "Countersign.AlreadySigned", "your organisation countersigned this receipt already"
            ) from None
        append_event(
            session,
            actor=actor,
            event_type=TRANSFER_COUNTERSIGNED,
            occurred_at=row.created_at,
            data={
                "transfer_id": transfer.id,
                "envelope_id": transfer.envelope_id,
                "key_id": key.key_id,
                "statement_sha256": statement_sha256(data),
                "signature": value,
            },
        )
        if on_commit is not None:
            on_commit(session, row)
    return row
