"""After the last signature: seal once, keep the sealed bytes, vault them in through vault-in's own path.

1. The sealed PDF is made (:mod:`vault.ceremony.seal`) and written to the staging bucket; the ceremony row then
   names it by a conditional update, so one seal wins even if two processes race (the loser's object goes).
2. Those exact bytes go through :func:`vault.vault_in.vault_in` (``source="signed"``: claim, write-once put,
   record), as the key that sent the envelope (it held ``vault:write``): the envelope becomes vaulted.

A crash anywhere leaves a completed, not-vaulted envelope; :func:`reconcile_ceremonies` (beside the claim
reconciler) finishes it from where it stopped, re-using the recorded seal. Vault-in's claim and the
envelope's ``vault_state`` make a second vault-in impossible, so nothing is vaulted twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select

from compliance.errors import EvaultError
from compliance.ledger.events import Actor
from storage.errors import StorageError
from storage.ids import as_utc, new_id, utcnow
from storage.keys import staging_key
from storage.models import Ceremony, Envelope
from vault.ceremony.context import Ceremonies
from vault.ceremony.drawn import decode
from vault.ceremony.roster import commitments, people, roster
from vault.ceremony.seal import SignerLine, seal, stamped
from vault.vault_in import Upload, VaultInResult, vault_in

log = logging.getLogger("evault.ceremony")


class SealUnavailable(RuntimeError):
    """The seal cannot be made now (no document-signing identity, or storage failed): the reconciler retries."""


def _signer_lines(ceremonies: Ceremonies, envelope_id: str) -> list[SignerLine]:
    with ceremonies.custody.db.read_session() as session:
        rows = [r for r in roster(session, envelope_id) if r.role == "signer"]
        shown, committed = people(session, rows), commitments(session, rows)
    lines = []
    for r in rows:
        assert r.signed_at and r.consented_at and r.signature  # every signer signed: the envelope is completed
        c = committed.get(r.id)
        lines.append(
            SignerLine(
                order=r.signing_order,
                name=str(shown[r.id].get("name", "(erased)")),
                adopted=str(r.signature.get("name", "")),
                consented_at=as_utc(r.consented_at),
                signed_at=as_utc(r.signed_at),
                commitment=f"{c['subject']}:{c['commitment']}" if c else f"{r.subject_id} (erased)",
                fields=r.fields,
                # A signature rebuilt from the log alone has no image until a restore (docs/rebuild.md).
                picture=decode(r.signature["image"]) if "image" in r.signature else None,
            )
        )
    return lines


def _make_seal(ceremonies: Ceremonies, envelope: Envelope, ceremony: Ceremony) -> Ceremony:
    custody = ceremonies.custody
    if ceremonies.signer is None:
        raise SealUnavailable("no document-signing identity to seal with")
    if not (ceremony.s3_key and ceremony.s3_version_id and ceremony.sha256):
        raise SealUnavailable("the staged document is gone (a rebuild found none in the staging bucket)")
    original = custody.staging_store.read(ceremony.s3_key, ceremony.s3_version_id)
    if hashlib.sha256(original).hexdigest() != ceremony.sha256:
        raise SealUnavailable("the staged document changed since it was sent")
    lines = _signer_lines(ceremonies, envelope.id)
    sealed = seal(
        stamped(original, envelope.id, envelope.title, ceremony.sha256, lines), ceremonies.signer, ceremonies.tsa_url
    )
    digest = hashlib.sha256(sealed).hexdigest()
    stored = custody.staging_store.put_write_once(
        staging_key(envelope.org_id, envelope.id, new_id("seal")), sealed, retain_until=None
    )
    with custody.db.session() as session:
        won = session.exec(
            update(Ceremony)
            .where(col(Ceremony.envelope_id) == envelope.id, col(Ceremony.sealed_key).is_(None))
            .values(
                sealed_key=stored.key,
                sealed_version_id=stored.version_id,
                sealed_sha256=digest,
                sealed_size=len(sealed),
                sealed_at=utcnow(),
            )
        ).rowcount
        current = session.get(Ceremony, envelope.id)
    if won != 1:  # another process sealed first: its seal is the one
        custody.staging_store.delete_version(stored.key, stored.version_id)
    assert current is not None
    return current


def complete(ceremonies: Ceremonies, envelope_id: str) -> VaultInResult | None:
    """Seal (once) and vault in a completed envelope; None when there is nothing to do (not completed, or
    already vaulted). Storage and database faults propagate: the reconciler tries again."""
    custody = ceremonies.custody
    with custody.db.read_session() as session:
        envelope = session.get(Envelope, envelope_id)
        ceremony = session.get(Ceremony, envelope_id)
    if (
        envelope is None
        or ceremony is None
        or envelope.status != "completed"
        or envelope.vault_state != "not_vaulted"
        or ceremony.sent_by is None
    ):
        return None
    if ceremony.sealed_key is None:
        ceremony = _make_seal(ceremonies, envelope, ceremony)
    assert ceremony.sealed_key and ceremony.sealed_version_id and ceremony.sealed_sha256
    sealed = custody.staging_store.read(ceremony.sealed_key, ceremony.sealed_version_id)
    name = (ceremony.filename or "document.pdf").removesuffix(".pdf") + "-signed.pdf"
    actor = Actor(**(ceremony.sent_by or {}))
    result = vault_in(custody, actor, envelope_id, [Upload(name, sealed, ceremony.sealed_sha256)], source="signed")
    _drop_staged(ceremonies, ceremony)
    return result


def _drop_staged(ceremonies: Ceremonies, ceremony: Ceremony) -> None:
    """The vault holds the sealed PDF now: the staged original and seal go (best effort; they are not evidence,
    the authoritative copy and the log are)."""
    for key, version in ((ceremony.s3_key, ceremony.s3_version_id), (ceremony.sealed_key, ceremony.sealed_version_id)):
        if key and version:
            try:
                ceremonies.custody.staging_store.delete_version(key, version)
            except StorageError as exc:  # left to the staging bucket's lifecycle
                log.warning("staged %s of a vaulted ceremony not removed: %s", key, exc)


def complete_quietly(ceremonies: Ceremonies, envelope_id: str) -> None:
    """Right after the last signature, in the signer's request: a failure is logged, never the signer's
    problem (the signature is recorded); the reconciler finishes it."""
    try:
        complete(ceremonies, envelope_id)
    except (EvaultError, StorageError, SealUnavailable) as exc:
        log.warning("envelope %s completed but not yet vaulted, the reconciler will: %s", envelope_id, exc)
    except Exception:  # anything else too: the signature stands, and the reconciler retries what failed
        log.exception("envelope %s completed but its vault-in failed; the reconciler will retry", envelope_id)


def reconcile_ceremonies(ceremonies: Ceremonies, older_than: timedelta = timedelta(0)) -> list[str]:
    """Vault in every completed e-sign envelope not vaulted yet, last changed before ``older_than`` ago; the ids
    it vaulted now. A vault-in in flight answers ``Vault.InProgress`` and is left to finish; a failed one's claim
    is taken over by this retry of the same bytes."""
    custody = ceremonies.custody
    cutoff = utcnow() - older_than
    with custody.db.read_session() as session:
        due = list(
            session.exec(
                select(Envelope.id)
                .join(Ceremony, col(Ceremony.envelope_id) == col(Envelope.id))
                .where(
                    Envelope.status == "completed",
                    Envelope.vault_state == "not_vaulted",
                    col(Envelope.updated_at) <= cutoff,
                )
            )
        )
    done = []
    for envelope_id in due:
        try:
            if complete(ceremonies, envelope_id) is not None:
                done.append(envelope_id)
        except (EvaultError, StorageError, SealUnavailable) as exc:
            log.warning("completed envelope %s not vaulted now, will retry: %s", envelope_id, exc)
    return done
