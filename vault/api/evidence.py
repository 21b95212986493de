"""Evidence of the present: the §9-105 compliance check, the signed certificate (JSON or PDF), the audit trail.

Each route parses and authorises here, then runs one job of :mod:`vault.evidence_jobs` in the evidence pool
(:mod:`vault.evidence_work`: worker processes, capped per organisation and in all, with a deadline, and
cancelled when the client disconnects), and shapes its answer; ``?format=`` overrides the ``Accept`` header
(``pdf`` for the certificate, ``csv`` for the trail). A job names its :class:`Subject`, which the pool's two
doors (:func:`in_pool`, :func:`apart`) look up before taking a slot, so no route can forget to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from anyio import to_thread
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from sqlmodel import Session

from compliance.errors import InvalidInput
from compliance.ledger.events import Actor
from compliance.sources import Deadline
from vault import evidence_jobs
from vault.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    AuditTrailView,
    ComplianceView,
    SignedCertificate,
    answers,
)
from vault.envelopes import get_envelope
from vault.evidence_work import Answer, Call, Joining
from vault.runtime import Runtime
from vault.tenancy import Principal

T = TypeVar("T")


def _wants(request: Request[Any, Any, Any], chosen: str | None, kinds: dict[str, str]) -> str:
    """The representation asked for: ``?format=`` first, then the Accept header, else JSON."""
    if chosen is not None:
        if chosen not in kinds:
            raise InvalidInput("Request.InvalidFormat", f"format must be one of {sorted(kinds)}", field="format")
        return chosen
    accept = request.headers.get("accept", "")
    return next((name for name, media in kinds.items() if media in accept), "json")


def _disconnected(request: Request[Any, Any, Any]) -> Callable[[], Awaitable[None]]:
    """Returns once the client has gone (ASGI ``http.disconnect``); the request's body was read at the edge."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


@dataclass(frozen=True)
class Subject:
    """What an evidence route reads: ``find`` (``get_envelope``, ``visible_transfer``) shows it to an organisation
    or raises 404."""

    find: Callable[[Session, str, str], object]
    id: str


async def _require_visible(runtime: Runtime, actor: Actor, subject: Subject) -> None:
    """404 unless the subject is the actor's organisation's to see, asked before the route takes its
    organisation's slot in the evidence pool: the job looks it up again, but a request for something that is
    not there must not take (or be refused for want of) the one slot an organisation has by default."""

    def look() -> None:
        with runtime.db.read_session() as session:
            subject.find(session, actor.org_id, subject.id)

    await to_thread.run_sync(look)


async def in_pool(
    request: Request[Any, Any, Any], runtime: Runtime, actor: Actor, subject: Subject, job: Callable[[Deadline], T]
) -> T:
    """``job`` on a thread of the evidence pool, once ``subject`` is visible: for work whose heavy part already
    runs in a process of its own."""
    await _require_visible(runtime, actor, subject)
    return await runtime.evidence_work.run(actor.org_id, job, _disconnected(request))


async def apart(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    actor: Actor,
    subject: Subject,
    function: Callable[..., Answer],
    *args: Any,
) -> Answer:
    """``function(runtime, deadline, *args)`` in an evidence worker process, once ``subject`` is visible."""
    if runtime.s3_endpoint is None:
        raise RuntimeError("the runtime was not opened by open_runtime: evidence workers cannot join it")
    await _require_visible(runtime, actor, subject)
    joining = Joining(runtime.settings, runtime.s3_endpoint, runtime.key.note_verifier.vkey)
    return await runtime.evidence_work.run_apart(actor.org_id, joining, Call(function, args), _disconnected(request))


def response(answer: Answer) -> Response[Any]:
    return Response(answer.content, media_type=answer.media_type, headers=answer.headers)


async def receipt_answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    actor: Actor,
    principal: Principal,
    issue: evidence_jobs.Receipt,
    subject: Subject,
) -> Response[Any]:
    """A release and a transfer receipt are issued alike: signed in the evidence pool, on a checkpoint the caller
    may have to request, and answered as JSON."""
    return response(
        await apart(request, runtime, actor, subject, evidence_jobs.receipt, issue, actor, subject.id, principal.scopes)
    )


class EvidenceController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Compliance"]

    @get(
        "/compliance",
        opt={"scope": "compliance:read"},
        responses=answers(
            200, ComplianceView, READ_ERRORS, "Each §9-105 condition's result with evidence, and the verdict"
        ),
    )
    async def compliance(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
        checkpoint: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """The six conditions of UCC §9-105(b), checked now against live storage and the ledger.

        ``?checkpoint=now`` makes sure a checkpoint covers every event first, so that none is left pending:
        the latest one when it does, else a new one, which needs ``vault:write`` (403
        ``Checkpoint.WriteScopeRequired``) and the organisation's quota (429 ``Checkpoint.RateLimited``).
        """
        if checkpoint not in (None, "now"):
            raise InvalidInput("Request.Invalid", "checkpoint may only be 'now'", field="checkpoint")
        envelope = Subject(get_envelope, envelope_id)
        answer = await apart(
            request,
            runtime,
            actor,
            envelope,
            evidence_jobs.compliance,
            actor,
            envelope_id,
            checkpoint,
            principal.scopes,
        )
        content: dict[str, Any] = answer.content
        return content

    @get(
        "/vault/certificate",
        opt={"scope": "compliance:read"},
        responses=answers(
            200, SignedCertificate, WRITE_ERRORS, "evault-certificate/v1 (JSON), or the signed one-page PDF"
        ),
    )
    async def certificate(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
        format: FromQuery[str | None] = None,
    ) -> Response[Any]:
        """The signed ``evault-certificate/v1`` (JSON), or a one-page PAdES-signed PDF of it for people.

        It rests on a checkpoint covering every event: the latest when fresh, else one signed on request
        (``vault:write`` and the organisation's quota, as for ``?checkpoint=now``)."""
        kind = _wants(request, format, {"json": "application/json", "pdf": "application/pdf"})
        envelope = Subject(get_envelope, envelope_id)
        return response(
            await apart(
                request, runtime, actor, envelope, evidence_jobs.certificate, actor, envelope_id, kind, principal.scopes
            )
        )

    @get(
        "/audit",
        opt={"scope": "compliance:read"},
        responses=answers(200, AuditTrailView, READ_ERRORS, "Every event with its exact entry bytes (JSON), or CSV"),
    )
    async def audit(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
        format: FromQuery[str | None] = None,
    ) -> Response[Any]:
        """Every event of the envelope: actor, time, type, data, chain hashes and exact entry bytes (JSON);
        ``text/csv`` for people."""
        kind = _wants(request, format, {"json": "application/json", "csv": "text/csv"})
        envelope = Subject(get_envelope, envelope_id)
        return response(await apart(request, runtime, actor, envelope, evidence_jobs.audit, actor, envelope_id, kind))
