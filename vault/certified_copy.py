"""Certified copies: what a custodian hands a court for a paper-out or a dispute.

One PDF: the authoritative document with every page marked as a certified (and still non-authoritative) copy,
then the record's history and the custodian's affidavit (who holds it and since when, its hash, the log's
signed checkpoint, the transfers), each of those pages marked too, all PAdES-signed by the vault's
document-signing identity over the whole file. What the pages state is read from the envelope's chain (the
ledger is the truth), as of a checkpoint that covers every event so far.

A certified copy is a copy: it is stored in the copies bucket and registered like any other (its
``vault.copy_issued`` entry says ``"certified": true``), so condition 5 and the verifier account for it, and
the register's hash is the hash of the signed file. The document's pages pass the same mark check as other
copies (in the stamper's child); the vault's own pages are stamped here, from text the vault wrote.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader, PdfWriter

from compliance.checkpoints.freshness import SignsOnDemand, checkpoint_for_envelope
from compliance.conditions.copy_mark import CopyMark
from compliance.conditions.evidence import Custodian
from compliance.conditions.projection import Projection, fold, release_claim
from compliance.errors import Conflict, NotFound
from compliance.ledger.chain import parse_entry
from compliance.ledger.checkpoint_format import Checkpoint
from compliance.ledger.events import Actor, envelope_events
from compliance.pdf_bytes import PdfBytes
from compliance.signatures.document_identity import DocumentSigner
from compliance.signatures.pades import sign_pades
from storage.ids import iso, new_id, utcnow
from storage.models import VaultedDocument
from vault.copy_stamp import stamp_copy
from vault.custody import Custody
from vault.envelopes import get_envelope, vault_record, vaulted_documents
from vault.retrieval import read_verified, store_copy
from vault.slot_leases import stamping_slot
from vault.stamp_worker import stamp_for_copy
from vault.text_pages import Line, text_pdf

SIGNATURE_FIELD = "EvaultCertifiedCopy"


@dataclass(frozen=True)
class CertifiedCopy:
    copy_id: str
    document_id: str
    sha256: str
    pdf: bytes


@dataclass(frozen=True)
class _Facts:
    """What the pages say, read from the chain and the checkpoint."""

    events: list[dict[str, Any]]
    chain: Projection
    checkpoint: Checkpoint
    note: str


def _history(facts: _Facts) -> list[Line]:
    lines: list[Line] = [(14, "History of the record"), (9, "")]
    lines.append((8, "seq  time (UTC)             log leaf  event  [key]"))
    for value in facts.events:
        actor = value.get("actor") or {}
        who = actor.get("key_prefix") or actor.get("source") or ""
        lines.append(
            (8, f"{value['seq']:>3}  {value['time']}  {value['log']} {value['index']}  {value['type']}  {who}")
        )
    return lines


def _transfers(facts: _Facts) -> list[Line]:
    moves = [v for v in facts.events if "transfer" in str(v.get("type"))]
    if not moves:
        return [(9, "Transfers of control or location: none recorded.")]
    lines: list[Line] = [(9, "Transfers of control or location, as the log records them:")]
    for value in moves:
        data = value.get("data") or {}
        parties = ", ".join(f"{k} {data[k]}" for k in sorted(data) if k.endswith("organisation") or k == "type")
        lines.append((8, f"    {value['time']}  {value['type']}  {parties}"))
    return lines


def _since(facts: _Facts, org_id: str) -> str:
    """When the holder's custody began: the vault-in, or the first event in the holder's own log if later."""
    vaulted = facts.chain.vaulted["time"] if facts.chain.vaulted else ""
    own = next((str(v["time"]) for v in facts.events if v.get("log") == org_id), vaulted)
    return max(vaulted, own)


def _affidavit(
    facts: _Facts, custodian: Custodian, org_id: str, doc: VaultedDocument, copy_id: str, issued: str
) -> list[Line]:
    created = facts.chain.created or {}
    released = release_claim(facts.chain)
    cp = facts.checkpoint
    head = facts.events[-1]
    assignee = facts.chain.secured_party if isinstance(facts.chain.secured_party, dict) else {}
    named = str(assignee.get("name", "(none named)")) + (f" ({assignee['id']})" if assignee.get("id") else "")
    state = (
        f"It was released from this vault's control (vault-out) on {released['at']}, reason {released['reason']}."
        if released
        else "It is held in this vault as the authoritative copy; it has not been released."
    )
    lines: list[Line] = [
        (14, "Custodian's affidavit"),
        (9, ""),
        (9, f"I, {custodian.name} ({custodian.id}), custodian of the electronic record described here, certify:"),
        (9, ""),
        (
            9,
            f"1. The pages before the history are a true copy of document {doc.filename} (id {doc.id}, "
            f'{doc.page_count} pages) of envelope {facts.chain.envelope_id}, "{created.get("title")}", made from '
            f"the authoritative copy, whose SHA-256 is {doc.sha256}, stored as version {doc.s3_version_id} under "
            f"a compliance-mode retention lock until {facts.chain.retain_until}.",
        ),
        (
            9,
            f"2. The record is held for organisation {org_id} since {_since(facts, org_id)}; the assignee of "
            f"record is {named}.",
        ),
        (9, f"3. {state}"),
        (
            9,
            f"4. Its history, on the preceding page(s), is as recorded in the vault's transparency log "
            f"{cp.origin}: {len(facts.events)} events, the last at seq {head['seq']}, leaf {head['index']}. "
            f"The vault's signed checkpoint of that log covers them: size {cp.size}, root hash "
            f"{base64.b64encode(cp.root_hash).decode()}.",
        ),
        *[(9, "5. " + text) if n == 0 else (size, text) for n, (size, text) in enumerate(_transfers(facts))],
        (
            9,
            f"6. This certified copy is copy {copy_id}, issued {issued}. It is not the authoritative copy; it is "
            "registered in the vault's copy register and recorded in the log (vault.copy_issued).",
        ),
        (9, ""),
        (8, "The signed checkpoint (C2SP signed note; check it with the vault's key at /.well-known/evault/keys):"),
        *[(7, "    " + line) for line in facts.note.splitlines()],
        (9, ""),
        (8, "This file is signed by the vault's document-signing identity (PAdES) over every byte; any change"),
        (8, "breaks the signature. The envelope's proof bundle and evidence package prove the history offline."),
    ]
    return lines


def _facts(custody: Custody, checkpoints: SignsOnDemand, org_id: str, envelope_id: str) -> _Facts:
    row = checkpoint_for_envelope(custody.db, checkpoints, org_id, envelope_id)
    with custody.db.read_session() as session:
        events = [parse_entry(e.entry) for e in envelope_events(session, envelope_id) if e.leaf_index < row.size]
    text = row.note.split("\n\n", 1)[0] + "\n"
    return _Facts(events, fold(envelope_id, events), Checkpoint.parse(text), row.note)


def _document(custody: Custody, org_id: str, envelope_id: str, document_id: str | None) -> Any:
    with custody.db.read_session() as session:
        envelope = get_envelope(session, org_id, envelope_id)
        record = vault_record(session, envelope.id)
        if record is None:
            raise Conflict("Vault.NotVaulted", "this envelope has no authoritative copy yet", envelope_id=envelope_id)
        if record.disposed_at is not None:
            raise Conflict("Retention.Disposed", "the authoritative copy was disposed of after its retention")
        documents = vaulted_documents(session, record.id)
    chosen = [d for d in documents if document_id in (None, d.id)][:1]
    if not chosen:
        raise NotFound("Document.NotFound", "no such document in this envelope", document_id=document_id)
    return envelope, record, chosen[0]


def _joined(*parts: bytes) -> bytes:
    writer = PdfWriter()
    for part in parts:
        writer.append(PdfReader(PdfBytes(part)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def issue_certified_copy(
    custody: Custody,
    signer: DocumentSigner,
    checkpoints: SignsOnDemand,
    custodian: Custodian,
    actor: Actor,
    envelope_id: str,
    document_id: str | None = None,
    tsa_url: str | None = None,
) -> CertifiedCopy:
    """Make, sign, store and register one certified copy of a document (the first one unless named)."""
    envelope, record, doc = _document(custody, actor.org_id, envelope_id, document_id)
    facts = _facts(custody, checkpoints, actor.org_id, envelope.id)
    copy_id, now = new_id("cp"), utcnow()
    mark = CopyMark(copy_id, envelope.id, doc.sha256, now, certified=True)
    source = read_verified(custody, doc)
    with stamping_slot(custody.db, custody.pdf, envelope.org_id):  # the org's share across processes
        marked = stamp_for_copy(custody.pdf, envelope.org_id, source, mark)
    verified_at = utcnow()
    pages = [*_history(facts), (9, ""), *_affidavit(facts, custodian, envelope.org_id, doc, copy_id, iso(now))]
    own_pages = stamp_copy(text_pdf(pages, f"Certified copy {copy_id}"), mark)
    signed = sign_pades(_joined(marked, own_pages), signer, SIGNATURE_FIELD, "Certified copy by the custodian", tsa_url)
    copy = store_copy(custody, actor, record, envelope, doc, copy_id, signed, now, verified_at, certified=True)
    return CertifiedCopy(copy_id, doc.id, copy.sha256, signed)
