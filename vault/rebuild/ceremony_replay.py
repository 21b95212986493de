"""Replaying the e-sign ceremony's events into its rows: the ceremony, its roster and each recipient's steps.

``envelope.sent`` fixes the document and the roster, so it gives the ceremony row (document id, name, digest,
size and page sizes, when and by which key it was sent) and one recipient row per person (id, role, order,
place in the roster, field placements, and from ``subjects`` their data subject). Each ``recipient.*`` entry
then moves its recipient on at the entry's time. What the log does not hold: the person's name and email and
what their client showed (only commitments: their data subjects come back erased), the adopted signature's name
and image, a decline's reason, and the link's nonce (a secret). A rebuilt recipient gets a new nonce, so new
links, and ``restore_pending`` until ``evault restore`` lays the backup's values over it. The staged
document's version (and, for an entry logged before size and page sizes were, those too) is read from the
staging bucket after the replay.

An ``envelope.sent`` logged before the entry named the subjects, places and placements rebuilds with a named
limitation (docs/rebuild.md): subjects pair with the ``signers`` commitments in roster order, places are the
roster order, and fields are empty until a restore brings them back.
"""

from __future__ import annotations

import secrets
from typing import Any

from compliance.ledger.events import Actor
from storage.keys import staging_key
from storage.models import Ceremony, Recipient
from vault.rebuild.rows import Entry, Rows, envelope_of, refuse, subject


def sent(rows: Rows, entry: Entry) -> None:
    data, envelope = entry.data, envelope_of(rows, entry)
    envelope.status = "sent"
    document = data["document"]
    rows.ceremonies[envelope.id] = Ceremony(
        envelope_id=envelope.id,
        org_id=entry.org_id,
        document_id=document["id"],
        filename=document["filename"],
        sha256=document["sha256"],
        size=document.get("size"),
        s3_key=staging_key(entry.org_id, envelope.id, document["id"]),
        s3_version_id=None,  # from the staging bucket, while the staged document is there
        pages=document.get("page_sizes"),
        sent_at=entry.time,
        sent_by=Actor(entry.org_id, key_id=entry.key_id).as_json(),
    )
    listed, signers = data["recipients"], data["signers"]
    # Before entries named each recipient's subject: the commitments list them in roster order, one each, unless
    # a person was erased before send (then which one is not in the log, and none is paired).
    paired = [s["subject"] for s in signers] if len(signers) == len(listed) else [""] * len(listed)
    subjects = data.get("subjects", paired)
    for position, item in enumerate(listed):
        subject_id = subjects[position]
        if subject_id:
            subject(rows, entry, subject_id)
        rows.recipients[item["recipient_id"]] = Recipient(
            id=item["recipient_id"],
            envelope_id=envelope.id,
            org_id=entry.org_id,
            subject_id=subject_id,
            role=item["role"],
            signing_order=item["order"],
            position=item.get("position", position),
            fields=item.get("placements") or [],
            status="pending",
            link_nonce=secrets.token_hex(16),  # the old one is not in the log (a secret): new links
            restore_pending=True,
        )


def _recipient(rows: Rows, entry: Entry) -> Recipient:
    """The recipient the entry names, and the data subject of what their client showed at this step."""
    envelope_of(rows, entry)
    recipient = rows.recipients.get(str(entry.data.get("recipient_id")))
    if recipient is None or recipient.envelope_id != entry.envelope_id:
        raise refuse(entry, "names a recipient the envelope's envelope.sent never listed")
    evidence: list[dict[str, Any]] = entry.data.get("evidence") or []
    for reference in evidence:
        subject(rows, entry, reference["subject"])
    return recipient


def viewed(rows: Rows, entry: Entry) -> None:
    recipient = _recipient(rows, entry)
    recipient.viewed_at = entry.time
    recipient.status = "viewed" if recipient.status == "pending" else recipient.status


def consented(rows: Rows, entry: Entry) -> None:
    recipient = _recipient(rows, entry)
    recipient.viewed_at = recipient.viewed_at or entry.time
    recipient.consented_at, recipient.status = entry.time, "consented"


def signed(rows: Rows, entry: Entry) -> None:
    recipient = _recipient(rows, entry)
    recipient.status, recipient.signed_at = "signed", entry.time
    recipient.signature = {"type": entry.data["signature_type"]}  # the adopted name and image: from a backup


def declined(rows: Rows, entry: Entry) -> None:
    recipient = _recipient(rows, entry)
    recipient.status, recipient.declined_at = "declined", entry.time  # the reason is committed: from a backup
    rows.envelopes[recipient.envelope_id].status = "declined"


def reminded(rows: Rows, entry: Entry) -> None:
    envelope = envelope_of(rows, entry)
    ceremony = rows.ceremonies.get(envelope.id)
    if ceremony is None:
        raise refuse(entry, "reminds the signers of an envelope the log never sent")
    ceremony.reminded_at = entry.time


def completed(rows: Rows, entry: Entry) -> None:
    envelope_of(rows, entry).status = "completed"
