"""Evidence of the present: the §9-105 compliance check, the signed certificate (JSON or PDF), the audit trail.

Each route parses, calls one compliance service with the runtime's sources, key and settings, and shapes the
answer; ``?format=`` overrides the ``Accept`` header (``pdf`` for the certificate, ``csv`` for the trail). The
service call runs in the evidence pool (:mod:`vault.evidence_work`): capped per organisation and in all, with a
deadline, and cancelled when the client disconnects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from compliance.audit.trail import as_csv, audit_trail
from compliance.certificates.issuance import issue_certificate
from compliance.certificates.pdf_page import certificate_pdf
from compliance.checkpoints.freshness import SignsOnDemand, checkpoint_for_envelope
from compliance.conditions.evidence import Custodian, Policy
from compliance.conditions.policies import check_compliance
from compliance.errors import InvalidInput
from compliance.ledger.events import Actor
from compliance.ledger.vault_key import VaultKey
from compliance.sources import Deadline, Sources
from vault.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    AuditTrailView,
    ComplianceView,
    SignedCertificate,
    answers,
)
from vault.runtime import Runtime
from vault.tenancy import Principal

T = TypeVar("T")


def policy_of(runtime: Runtime) -> Policy:
    evidence = runtime.settings.evidence
    return Policy(Custodian(evidence.custodian_name, evidence.custodian_id), runtime.settings.s3.authoritative_bucket)


def document_signing_keys(runtime: Runtime) -> list[dict[str, Any]]:
    """The published half of the document-signing identity, for ``/.well-known/evault/keys``."""
    signer = runtime.document_signer
    if signer is None:
        return []
    return [{"use": "document-signing", "algorithm": "ECDSA-P256", "pem": signer.certificate_pem()}]


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


async def in_pool(request: Request[Any, Any, Any], runtime: Runtime, actor: Actor, job: Callable[[Deadline], T]) -> T:
    return await runtime.evidence_work.run(actor.org_id, job, _disconnected(request))


async def receipt_answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    actor: Actor,
    principal: Principal,
    receipt: Callable[[Sources, VaultKey, SignsOnDemand, Actor, str], dict[str, Any]],
    subject_id: str,
) -> Response[Any]:
    """A release and a transfer receipt are issued alike: signed in the evidence pool, on a checkpoint the caller
    may have to request, and answered as JSON."""
    checkpoints = runtime.checkpoint_requests(principal.scopes)

    def job(deadline: Deadline) -> Response[Any]:
        document = receipt(runtime.sources(deadline), runtime.key, checkpoints, actor, subject_id)
        return Response(document, media_type="application/json")

    return await in_pool(request, runtime, actor, job)


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
        checkpoints = runtime.checkpoint_requests(principal.scopes)

        def job(deadline: Deadline) -> dict[str, Any]:
            sources = runtime.sources(deadline)
            if checkpoint == "now":
                checkpoint_for_envelope(runtime.db, checkpoints, actor.org_id, envelope_id)
            verdict = check_compliance(sources, policy_of(runtime), actor, envelope_id)
            return {"envelope_id": envelope_id, **verdict.as_json()}

        return await in_pool(request, runtime, actor, job)

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
        signer = runtime.document_signer
        checkpoints = runtime.checkpoint_requests(principal.scopes)

        def job(deadline: Deadline) -> Response[Any]:
            sources = runtime.sources(deadline)
            document = issue_certificate(sources, runtime.key, checkpoints, policy_of(runtime), actor, envelope_id)
            if kind == "pdf" and signer is not None:
                pdf = certificate_pdf(document, signer, runtime.settings.vault.tsa_url or None)
                disposition = f'inline; filename="certificate-{envelope_id}.pdf"'
                return Response(pdf, media_type="application/pdf", headers={"Content-Disposition": disposition})
            return Response(document, media_type="application/json")

        return await in_pool(request, runtime, actor, job)

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

        def job(deadline: Deadline) -> Response[Any]:
            trail = audit_trail(runtime.sources(deadline), actor.org_id, envelope_id)
            if kind == "csv":
                disposition = f'attachment; filename="audit-{envelope_id}.csv"'
                return Response(as_csv(trail), media_type="text/csv", headers={"Content-Disposition": disposition})
            return Response(trail, media_type="application/json")

        return await in_pool(request, runtime, actor, job)
