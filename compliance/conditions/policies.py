"""The six conditions of UCC §9-105(b), each a policy object that answers with its status and its evidence.

Modelled on sigstore-python's ``verify/policy.py``: a condition has ``verify(evidence)``; :class:`AllOf`
composes them, and a conjunction of none fails rather than passes. A result is graded: ``pass``, ``fail``,
``pending`` (events not yet covered by a signed checkpoint are pending, not unauthorised) or ``released``
(condition 3 of a record released by vault-out: no longer maintained, and the result says why, to whom and
when). The verdict is ``fail`` if any condition fails, else ``pending`` if any is pending, else ``released`` if
any says so, else ``pass``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlmodel import Session, col, select

from compliance.conditions.evidence import Evidence, LogProof, Policy, as_dict, entry_digest, gather
from compliance.conditions.projection import TRANSFER_STEPS, control_claim, release_claim
from compliance.errors import Unavailable
from compliance.headmap.sparse_tree import map_key, tree_id_for, verify_map_proof
from compliance.ledger.chain import parse_entry, verify_chain
from compliance.ledger.checkpoint_format import verify_checkpoint
from compliance.ledger.event_catalogue import (
    ASSIGNEE_CHANGED,
    CHECK_FAILED,
    RELEASED,
    TRANSFER_ACCEPTED,
    TRANSFER_ARRIVED,
    TRANSFER_CANCELLED,
    TRANSFER_COMPLETED,
    TRANSFER_INITIATED,
    TRANSFER_REJECTED,
    Role,
    declared,
    with_role,
)
from compliance.ledger.events import Actor, append_event
from compliance.ledger.log_error import LogError
from compliance.ledger.merkle import leaf_hash, verify_inclusion
from compliance.sources import Deadline, Sources
from storage.db import Database
from storage.errors import StorageError, StorageUnavailable
from storage.ids import as_utc, iso, utcnow
from storage.keys import authoritative_prefix
from storage.models import CopyRecord, Envelope, Event

Status = Literal["pass", "fail", "pending", "released"]
# Who may cause which event (condition 4): releasing and moving control is the controller's alone; answering
# a transfer is its receiver's; everything else either the controller or the custodian may do.
CONTROLLER_ONLY = frozenset(e.name for e in (RELEASED, ASSIGNEE_CHANGED, TRANSFER_INITIATED, TRANSFER_CANCELLED))
RECEIVER_ONLY = frozenset(e.name for e in (TRANSFER_ACCEPTED, TRANSFER_REJECTED))


@dataclass(frozen=True)
class ConditionResult:
    condition: str
    title: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "title": self.title,
            "status": self.status,
            "reasons": self.reasons,
            "evidence": self.evidence,
        }


def overall(statuses: Sequence[str]) -> Status:
    """One verdict: no result at all fails, any failure fails, then pending, then released, else pass."""
    if not statuses or "fail" in statuses:
        return "fail"
    for status in ("pending", "released"):
        if status in statuses:
            return status
    return "pass"


@dataclass(frozen=True)
class Verdict:
    status: Status
    results: list[ConditionResult]

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.status, "conditions": [r.as_json() for r in self.results]}


class Condition(Protocol):
    key: str
    title: str

    def verify(self, evidence: Evidence) -> ConditionResult: ...


class _Base:
    key = ""
    title = ""

    def result(self, failures: list[str], evidence: dict[str, Any], pending: Sequence[str] = ()) -> ConditionResult:
        status: Status = "fail" if failures else ("pending" if pending else "pass")
        return ConditionResult(self.key, self.title, status, failures or list(pending), evidence)


def _read_sha256(store: Any, key: str, version_id: str, deadline: Deadline) -> str:
    digest = hashlib.sha256()
    for chunk in store.iter_read(key, version_id):
        deadline.check()
        digest.update(chunk)
    return digest.hexdigest()


class SingleAuthoritativeCopy(_Base):
    key, title = "1", "a single authoritative copy exists, unique, identifiable and unalterable"

    def verify(self, evidence: Evidence) -> ConditionResult:
        if evidence.record is None or not evidence.documents:
            return self.result(["no authoritative copy: the envelope is not vaulted"], {})
        ledger = {d.get("id"): d for d in (evidence.vaulted_in() or {}).get("documents", []) if isinstance(d, dict)}
        failures: list[str] = []
        documents = []
        store = evidence.sources.authoritative
        prefix = authoritative_prefix(evidence.envelope.org_id, evidence.envelope.id)
        try:  # unique is what the bucket holds: every version and delete marker under the envelope's prefix
            in_bucket = list(store.list_entries(prefix))
        except StorageUnavailable as exc:
            raise Unavailable("Storage.Unavailable", "object storage could not be read; retry") from exc
        except StorageError as exc:
            return self.result([f"the envelope's authoritative prefix cannot be listed: {exc}"], {"prefix": prefix})
        for doc in evidence.documents:
            seen: dict[str, Any] = {"id": doc.id, "sha256": doc.sha256, "version_id": doc.s3_version_id}
            documents.append(seen)
            vaulted = ledger.get(doc.id)
            if vaulted is None or (vaulted.get("sha256"), vaulted.get("version_id")) != (doc.sha256, doc.s3_version_id):
                failures.append(f"document {doc.id}: the record differs from the vaulted_in entry")
            seen["versions"] = [e.version_id for e in in_bucket if e.key == doc.s3_key and not e.delete_marker]
            try:
                info = store.head(doc.s3_key, doc.s3_version_id)
                seen["sha256_read"] = _read_sha256(store, doc.s3_key, doc.s3_version_id, evidence.sources.deadline)
            except StorageUnavailable as exc:
                raise Unavailable("Storage.Unavailable", "object storage could not be read; retry") from exc
            except StorageError as exc:
                failures.append(f"document {doc.id}: the object cannot be read: {exc}")
                continue
            seen.update(lock_mode=info.lock_mode, retain_until=iso(info.retain_until) if info.retain_until else None)
            if seen["sha256_read"] != doc.sha256:
                failures.append(f"document {doc.id}: the stored bytes hash differently from the vaulted SHA-256")
            if info.lock_mode != "COMPLIANCE" or info.retain_until is None:
                failures.append(f"document {doc.id}: the object is not under a COMPLIANCE lock")
            elif info.retain_until < as_utc(evidence.record.retain_until).replace(microsecond=0):
                failures.append(f"document {doc.id}: the lock ends before the record's retention")
            if seen["versions"] != [doc.s3_version_id]:
                failures.append(f"document {doc.id}: other version(s) exist under its key")
        recorded = {(doc.s3_key, doc.s3_version_id) for doc in evidence.documents}
        extra = [e for e in in_bucket if (e.key, e.version_id) not in recorded]
        failures += [
            f"not unique: {'a delete marker' if e.delete_marker else 'an object'} at {e.key} (version {e.version_id}) "
            "under the envelope's authoritative prefix is not the recorded copy"
            for e in extra
        ]
        evidence_seen = {
            "authoritative_copy_id": evidence.record.id,
            "documents": documents,
            "prefix": prefix,
            "unrecorded": [{"key": e.key, "version_id": e.version_id, "delete_marker": e.delete_marker} for e in extra],
        }
        return self.result(failures, evidence_seen)


def assignee_history(evidence: Evidence) -> list[dict[str, Any]]:
    """The assignee of record as the ledger tells it: set at vault-in, then each recorded change."""
    history = []
    for event, value in evidence.ledger_events(Role.VAULT_IN, Role.ASSIGNEE_CHANGE):
        data = as_dict(value.get("data"))
        history.append(
            {
                "seq": event.chain_seq,
                "type": event.event_type,
                "time": value.get("time"),
                "secured_party": data.get("secured_party"),
            }
        )
    return history


class IdentifiesAssignee(_Base):
    key, title = "2", "the authoritative copy identifies the secured party as the assignee of record"

    def verify(self, evidence: Evidence) -> ConditionResult:
        history = assignee_history(evidence)
        current = history[-1]["secured_party"] if history else None
        failures = []
        if not history:
            failures.append("the ledger records no vault-in, so no assignee of record")
        elif not isinstance(current, dict) or not current.get("name"):
            failures.append("the ledger names no secured party as assignee of record")
        elif evidence.envelope.secured_party != current:
            failures.append("the envelope's secured party differs from the assignee of record in the ledger")
        row = evidence.envelope.secured_party
        return self.result(failures, {"assignee_of_record": current, "history": history, "envelope_row": row})


def _checkpoint_signer(evidence: Evidence) -> str | None:
    note = evidence.checkpoint.note if evidence.checkpoint else ""
    lines = [line for line in note.split("\n\n", 1)[-1].splitlines() if line.startswith("— ")]
    return lines[0].split(" ")[1] if lines else None


class MaintainedByCustodian(_Base):
    key, title = "3", "the authoritative copy is maintained by the secured party or its designated custodian"

    def verify(self, evidence: Evidence) -> ConditionResult:
        policy = evidence.policy
        buckets = sorted({doc.s3_bucket for doc in evidence.documents})
        signer = _checkpoint_signer(evidence)
        failures = []
        if not buckets:
            failures.append("no authoritative copy is maintained: the envelope is not vaulted")
        elif buckets != [policy.authoritative_bucket]:
            failures.append(f"the copy is kept in {buckets}, not the custodian's bucket {policy.authoritative_bucket}")
        if signer is not None and signer != policy.custodian.id:
            failures.append(
                f"the custodian named in settings ({policy.custodian.id}) is not the key ({signer}) "
                "that signs this envelope's log"
            )
        chain = evidence.chain()
        release = release_claim(chain)
        seen: dict[str, Any] = {
            "custodian": policy.custodian.as_json(),
            "buckets": buckets,
            "log_signer": signer,
            "authoritative_bucket": policy.authoritative_bucket,
            "control": control_claim(chain, evidence.envelope.org_id),
            "released": release,
        }
        if release is None or failures:
            return self.result(failures, seen)
        # Released: the copy is kept (locked), but nobody maintains it as authoritative any more.
        to = release["details"].get("transferee")
        why = f"released by vault-out ({release['reason']}) at {release['at']}" + (f" to {to}" if to else "")
        return ConditionResult(self.key, self.title, "released", [why], seen)


@dataclass
class _Control:
    """Who may act on the envelope at one point of its chain, as its transfers so far leave it."""

    home: str
    controller: str
    custodian: str
    open: dict[str, dict[str, Any]] = field(default_factory=dict)  # transfer id -> its initiated data (+ accepted)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def allowed(self, kind: str, data: dict[str, Any]) -> set[str]:
        """The organisations whose keys may cause ``kind`` now."""
        transfer = self.open.get(str(data.get("transfer_id")), {})
        if kind in CONTROLLER_ONLY:
            return {self.controller}
        if kind in RECEIVER_ONLY:
            return {str(transfer.get("to_org"))}
        if kind == TRANSFER_COMPLETED.name:
            return {self.controller if transfer.get("confirm_required") else str(transfer.get("to_org"))}
        return {self.controller, self.custodian}

    def step(self, kind: str, data: dict[str, Any], org: Any, where: str) -> list[str]:
        """Fold one transfer entry in; what it says that its predecessors do not support."""
        tid = str(data.get("transfer_id"))
        if kind == TRANSFER_INITIATED.name:
            if data.get("from_org") != self.controller or self.open:
                return [f"{where}: a transfer not offered by the organisation in control, or beside an open one"]
            self.open[tid] = dict(data)
            return []
        transfer = self.open.get(tid)
        if transfer is None or any(transfer.get(k) != data.get(k) for k in ("from_org", "to_org", "type")):
            return [f"{where}: a step of a transfer that is not open, or that names other parties"]
        if kind == TRANSFER_ACCEPTED.name:
            transfer["accepted_by"] = org
        elif kind == TRANSFER_COMPLETED.name:
            return self._complete(tid, transfer, data, where)
        else:
            del self.open[tid]
        return []

    def _complete(self, tid: str, transfer: dict[str, Any], data: dict[str, Any], where: str) -> list[str]:
        del self.open[tid]
        if transfer.get("accepted_by") != transfer.get("to_org"):
            return [f"{where}: control moved without the receiver's acceptance"]
        kind = str(transfer.get("type"))
        controller = str(transfer["to_org"]) if "control" in kind else self.controller
        custodian = str(transfer["to_org"]) if "location" in kind else self.custodian
        if (data.get("controller"), data.get("custodian")) != (controller, custodian):
            return [f"{where}: the completion names another controller or custodian than its transfer implies"]
        self.controller, self.custodian = controller, custodian
        self.changes.append({"transfer_id": tid, "type": kind, "from_org": transfer["from_org"], "to_org": controller})
        return []


class ChangesNeedControllingParty(_Base):
    """Every event by a key of an organisation that could cause it then: the one in control or its custodian,
    and for a transfer the party whose step it is. Control itself moves only by a completed transfer that the
    organisation in control initiated and the receiver accepted, each with a key of its own."""

    key, title = "4", "changes of the assignee happen only with the participation of the party in control"

    def verify(self, evidence: Evidence) -> ConditionResult:
        failures, checked = [], []
        home = evidence.envelope.org_id
        control = _Control(home, home, home)
        for event in evidence.events:
            value = evidence.parsed(event)
            if value is None:
                continue  # an entry that is no longer canonical JSON: condition 6 reports it
            actor = as_dict(value.get("actor"))
            kind, key_id, data = str(value.get("type")), actor.get("key_id"), as_dict(value.get("data"))
            declared_as = declared(kind)
            scope = declared_as.scope if declared_as else None
            prefix = actor.get("key_prefix")
            checked.append({"seq": event.chain_seq, "type": kind, "key_prefix": prefix, "scope": scope})
            where = f"event {event.chain_seq} ({kind})"
            key = evidence.keys.get(key_id) if isinstance(key_id, str) else None
            if declared_as is None or not declared_as.envelope:
                failures.append(f"{where}: not an envelope event the catalogue declares")
            elif scope is None:  # keyless by declaration: the organisation itself, never a key
                owner = control.controller if kind == TRANSFER_ARRIVED.name else home  # the receiver's log takes over
                if key_id is not None or actor.get("org_id") != owner:
                    failures.append(f"{where}: a keyless event, caused by a key or another organisation")
            elif key is None:
                failures.append(f"{where}: caused by no known key of the organisation")
            elif key.org_id != actor.get("org_id") or key.org_id not in control.allowed(kind, data):
                failures.append(f"{where}: caused by a key of an organisation that could not cause it then")
            elif scope not in key.scopes:
                failures.append(f"{where}: key {key.prefix} does not hold {scope}")
            elif as_utc(key.created_at) > datetime.fromisoformat(str(value.get("time")).replace("Z", "+00:00")):
                failures.append(f"{where}: key {key.prefix} did not exist yet")
            if kind in TRANSFER_STEPS:
                failures += control.step(kind, data, actor.get("org_id"), where)
        seen = {
            "organisation": home,
            "controller": control.controller,
            "custodian": control.custodian,
            "scope": "vault:release",
            "changes": control.changes,
        }
        return self.result(failures, {"control": seen, "events": checked})


def _copy_failures(copy: CopyRecord, logged: dict[str, Any] | None, originals: set[str]) -> list[str]:
    """What the register and the ledger say of one copy: in the ledger with the same hash, its mark verified
    when it was issued (the bytes were checked then; they are not read again here), not an original."""
    failures = []
    if copy.sha256 in originals:
        failures.append(f"copy {copy.id}: its registered bytes are the original's")
    if logged is None:
        return [*failures, f"copy {copy.id}: registered but not in the ledger"]
    if logged.get("sha256") != copy.sha256:
        failures.append(f"copy {copy.id}: the register's SHA-256 is not the one the ledger recorded at issuance")
    if copy.mark_verified_at is None or not logged.get("mark_verified_at"):
        failures.append(f"copy {copy.id}: its mark was not verified when it was issued")
    return failures


class CopiesIdentifiable(_Base):
    """Each registered copy had its mark found on every page when it was issued (the register row and the
    ``vault.copy_issued`` entry say so, with the same hash), and its registered version is still in the store
    with its registered size; nothing else sits under the envelope's copy prefix but copies in flight (a copy
    claim names the key: put, its register not yet committed, or left by a request that died, which the
    reconciler deletes after the grace period). One version listing of the prefix shows all of that (one request
    per thousand copies).

    The copies' bytes are not read again: that made each check cost every copy ever issued. A version's bytes
    cannot change in place without a new version (which shows here as unregistered); whether the stored bytes
    still hash to what was stored is the nightly verifier's question (it reads every copy whole).
    """

    key, title = "5", "every copy is readily identifiable as a copy that is not the authoritative copy"

    def verify(self, evidence: Evidence) -> ConditionResult:
        originals = {doc.sha256 for doc in evidence.documents}
        logged: dict[Any, dict[str, Any]] = {}
        for _, value in evidence.ledger_events(Role.COPY):
            data = as_dict(value.get("data"))
            logged[data.get("copy_id")] = data
        try:
            listed = {
                (entry.key, entry.version_id): entry
                for entry in evidence.sources.copies.list_entries(evidence.copy_prefix())
                if not entry.delete_marker
            }
        except StorageUnavailable as exc:
            raise Unavailable("Storage.Unavailable", "object storage could not be read; retry") from exc
        except StorageError as exc:
            return self.result([f"the copy prefix cannot be listed: {exc}"], {"copy_prefix": evidence.copy_prefix()})
        failures, copies = [], []
        for copy in evidence.copies:
            evidence.sources.deadline.check()
            verified = iso(copy.mark_verified_at) if copy.mark_verified_at else None
            stored = listed.get((copy.s3_key, copy.s3_version_id))
            copies.append(
                {
                    "id": copy.id,
                    "sha256": copy.sha256,
                    "mark_verified_at": verified,
                    "stored_size": stored.size if stored else None,
                }
            )
            failures += _copy_failures(copy, logged.get(copy.id), originals)
            if stored is None:
                failures.append(f"copy {copy.id}: its registered version is not in the store")
            elif stored.size != copy.size:
                failures.append(f"copy {copy.id}: the stored version's size is not the registered copy's")
        registered = {(c.s3_key, c.s3_version_id) for c in evidence.copies}
        unnamed = sorted(k for k in listed if k not in registered)
        in_flight = [k for k in unnamed if k[0] in evidence.claimed_copies]  # put, its register not yet committed
        stray = [k for k in unnamed if k[0] not in evidence.claimed_copies]
        for key, version in stray:
            why = ": its copy claim is past the grace period, a request that died (the reconciler deletes the object)"
            stale = why if key in evidence.stale_claims else ""
            failures.append(f"unregistered object {key} (version {version}) under the copy prefix{stale}")
        missing = set(logged) - {c.id for c in evidence.copies}
        failures += [f"copy {cid} is in the ledger but not registered" for cid in sorted(map(str, missing))]
        found = {"copies": copies, "copy_prefix": evidence.copy_prefix(), "unregistered": stray, "in_flight": in_flight}
        return self.result(failures, found)


class RevisionsIdentifiable(_Base):
    key, title = "6", "every revision is readily identifiable as authorised or unauthorised"

    def verify(self, evidence: Evidence) -> ConditionResult:
        env_id, failures = evidence.envelope.id, []
        checkpoint = evidence.checkpoint
        info: dict[str, Any] = {"events": len(evidence.events), "checkpoint_size": checkpoint and checkpoint.size}
        try:
            verify_chain(env_id, [e.entry for e in evidence.events])
        except LogError as exc:
            failures.append(f"the envelope's chain is broken ({exc.code}): {exc.message}")
        for event in evidence.events:
            value = evidence.parsed(event) or {}
            if entry_digest(event) != event.entry_hash or (value.get("index"), value.get("seq")) != (
                event.leaf_index,
                event.chain_seq,
            ):
                failures.append(f"event {event.chain_seq}: the row no longer matches its entry")
        # A row the chain does not support is a revision nobody authorised: named by its finding code.
        failures += [mismatch.reason() for mismatch in evidence.unsupported]
        info["unsupported_rows"] = [mismatch.as_json() for mismatch in evidence.unsupported]
        if checkpoint is None:
            return self.result(failures, info, ["no signed checkpoint covers the envelope's events yet"])
        covered: list[Any] = []
        pending: list[str] = []
        for log in evidence.logs.values():
            failures += self._log(evidence, log, covered, pending)
        info.update(covered=len(covered), pending=len(pending))
        return self.result(failures, info, pending)

    def _log(self, evidence: Evidence, log: LogProof, covered: list[Any], pending: list[str]) -> list[str]:
        """One log's part: its checkpoint, the inclusion of the chain's entries there, and its head map."""
        events = [e for e in evidence.events if e.org_id == log.org_id]
        if log.checkpoint is None:
            pending += [
                f"event {e.chain_seq} ({e.event_type}) is not yet covered by a signed checkpoint" for e in events
            ]
            return []
        try:
            signed = verify_checkpoint(
                log.checkpoint.note,
                evidence.sources.checkpoint_verifier_for(log.checkpoint.note),
                evidence.sources.origin(log.org_id),
            )
        except LogError as exc:
            return [f"the checkpoint of {log.org_id} does not verify ({exc.code})"]
        failures = []
        here = [e for e in events if e.leaf_index < signed.size]
        for event in here:
            evidence.sources.deadline.check()
            try:
                proof = log.inclusion[event.leaf_index]
                verify_inclusion(leaf_hash(event.entry), event.leaf_index, signed.size, proof, signed.root_hash)
            except (KeyError, LogError):
                failures.append(
                    f"event {event.chain_seq}: not the entry the signed checkpoint includes at leaf {event.leaf_index}"
                )
        failures += self._map(evidence, log, signed.size, signed.root_hash, here)
        covered += here
        pending += [
            f"event {e.chain_seq} ({e.event_type}) is not yet covered by a signed checkpoint"
            for e in events
            if e.leaf_index >= signed.size
        ]
        return failures

    def _map(self, evidence: Evidence, log: LogProof, size: int, root: bytes, covered: list[Any]) -> list[str]:
        """The head the signed map commits in this log must be the chain's last covered event there: a deleted
        tail shows here (in an earlier log, the hand-off)."""
        entry, proof = log.map_entry, log.map_proof
        if entry is None or proof is None:
            return []
        try:
            verify_inclusion(leaf_hash(entry.entry), entry.leaf_index, size, log.inclusion[entry.leaf_index], root)
            data = (evidence.parsed(entry) or {}).get("data") or {}
            head = verify_map_proof(
                tree_id_for(log.org_id),
                map_key(evidence.envelope.id),
                proof,
                bytes.fromhex(str(data.get("map_root"))),
            )
        except (KeyError, LogError, ValueError):
            return ["the head map committed by the checkpoint does not verify"]
        mapped = [e for e in covered if e.leaf_index < int(data.get("version", -1))]
        last = mapped[-1] if mapped else None
        named = None if head is None else (head.seq, head.entry_hash.hex())
        if named != (None if last is None else (last.chain_seq, entry_digest(last))):
            return ["the signed head map names another head than the envelope's chain: events were removed or added"]
        return []


SECTION_9_105 = (
    SingleAuthoritativeCopy(),
    IdentifiesAssignee(),
    MaintainedByCustodian(),
    ChangesNeedControllingParty(),
    CopiesIdentifiable(),
    RevisionsIdentifiable(),
)


@dataclass(frozen=True)
class AllOf:
    """Every condition must hold; a conjunction of none fails."""

    conditions: Sequence[Condition] = SECTION_9_105

    def verify(self, evidence: Evidence) -> Verdict:
        results = []
        for condition in self.conditions:
            evidence.sources.deadline.check()
            results.append(condition.verify(evidence))
        return Verdict(overall([r.status for r in results]), results)


def _last_record(session: Session, envelope_id: str) -> Any:
    """The data of the envelope's latest recorded failed check, or None."""
    event = session.exec(
        select(Event)
        .where(Event.envelope_id == envelope_id, col(Event.event_type).in_(with_role(Role.CHECK_RECORD)))
        .order_by(col(Event.chain_seq).desc())
        .limit(1)
    ).first()
    try:
        return None if event is None else parse_entry(event.entry).get("data")
    except LogError:
        return None  # an edited record: condition 6 reports it, and a fresh record is due


def record_failure(db: Database, actor: Actor, envelope_id: str, verdict: Verdict) -> bool:
    """A failed check is itself evidence: recorded in the envelope's chain, under the envelope's row lock.

    Recorded once for each distinct set of failures: when the latest record names the same failures, nothing
    is appended, so reading a failing envelope again and again does not grow its chain (nor call for another
    checkpoint). Returns whether a record was appended.
    """
    data = {
        "verdict": verdict.status,
        "failed": [{"condition": r.condition, "reasons": r.reasons} for r in verdict.results if r.status == "fail"],
    }
    with db.session() as session:
        session.exec(select(Envelope).where(Envelope.id == envelope_id).with_for_update()).one()
        if _last_record(session, envelope_id) == data:
            return False
        append_event(
            session, actor=actor, envelope_id=envelope_id, event_type=CHECK_FAILED, occurred_at=utcnow(), data=data
        )
    return True


def check_compliance(sources: Sources, policy: Policy, actor: Actor, envelope_id: str) -> Verdict:
    """Run the six conditions against live storage and the ledger; record a new set of failures in the chain."""
    verdict = AllOf().verify(gather(sources, policy, actor.org_id, envelope_id))
    sources.deadline.check()
    if verdict.status == "fail":
        record_failure(sources.db, actor, envelope_id, verdict)
    return verdict
