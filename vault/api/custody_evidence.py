"""Evidence a custodian hands over about one envelope: its release receipt (and, further down, what a court takes).

Each route parses, calls one compliance service in the evidence pool (capped, on a deadline) and shapes the
answer. A receipt rests on a checkpoint covering its events: the latest when fresh, else one signed on request
(``vault:write`` and the organisation's quota, as for the certificate).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery

from compliance.errors import Unavailable
from compliance.evidence_package.build import build_package
from compliance.evidence_package.export import build_export
from compliance.ledger.events import Actor
from compliance.receipts.release import release_receipt
from compliance.sources import Deadline
from vault import evidence_jobs
from vault.api.evidence import Subject, apart, in_pool, receipt_answer, response
from vault.api.schemas import WRITE_ERRORS, SignedReceipt, answers
from vault.certified_copy import issue_certified_copy
from vault.envelopes import get_envelope
from vault.runtime import Runtime
from vault.tenancy import Principal


def binary_answer(media_type: str, description: str) -> dict[int, ResponseSpec]:
    """A 200 whose body is a file of ``media_type``, and every error the route may give."""
    specs = answers(200, None, (*WRITE_ERRORS, 409), description)
    specs[200] = ResponseSpec(data_container=bytes, media_type=media_type, description=description)
    return specs


async def _package_answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    actor: Actor,
    principal: Principal,
    envelope_id: str,
    build: evidence_jobs.Package,
    name: str,
) -> Response[bytes]:
    """The evidence and the export package are issued alike: built in the evidence pool on a checkpoint the
    caller may have to request, and answered as the attachment ``{name}-{envelope_id}.zip``."""
    envelope = Subject(get_envelope, envelope_id)
    return response(
        await apart(
            request, runtime, actor, envelope, evidence_jobs.package, build, name, actor, envelope_id, principal.scopes
        )
    )


class CustodyEvidenceController(Controller):
    path = "/envelopes/{envelope_id:str}"
    tags = ["Compliance"]

    @get(
        "/release-receipt",
        opt={"scope": "vault:read"},
        responses=answers(200, SignedReceipt, WRITE_ERRORS, "evault-receipt/v1 of kind release, signed by the vault"),
    )
    async def release_receipt(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """The signed receipt of the envelope's vault-out: why, to whom, when, the documents' hashes, and the
        release and vault-in events with their log positions and inclusion proofs. 409 ``Receipt.NotReleased``
        before the vault-out. Check it offline with ``evault receipt verify``."""
        envelope = Subject(get_envelope, envelope_id)
        return await receipt_answer(request, runtime, actor, principal, release_receipt, envelope)

    @get(
        "/certified-copy",
        opt={"scope": "vault:read", "rate_policy": "copies"},
        responses=binary_answer("application/pdf", "The certified copy: marked pages, history, affidavit, signed"),
    )
    async def certified_copy(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
        document_id: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        """A certified copy of one document (the first unless ``document_id`` names another): every page marked
        as a certified, non-authoritative copy, then the record's history and the custodian's affidavit, PAdES-
        signed by the vault. It is registered as a copy (``vault.copy_issued`` with ``certified``); its id and
        hash are in the ``X-Evault-Copy-Id`` and ``X-Evault-Copy-SHA256`` headers."""
        checkpoints = runtime.checkpoint_requests(principal.scopes)
        signer = runtime.document_signer
        if signer is None:
            raise Unavailable("Evidence.NoDocumentSigner", "the vault has no document-signing identity")

        def job(deadline: Deadline) -> Response[bytes]:
            made = issue_certified_copy(
                runtime.custody(),
                signer,
                checkpoints,
                evidence_jobs.policy_of(runtime).custodian,
                actor,
                envelope_id,
                document_id,
                runtime.settings.vault.tsa_url or None,
            )
            headers = {
                "Content-Disposition": f'attachment; filename="certified-copy-{made.copy_id}.pdf"',
                "X-Evault-Copy-Id": made.copy_id,
                "X-Evault-Copy-SHA256": made.sha256,
            }
            return Response(made.pdf, media_type="application/pdf", headers=headers)

        return await in_pool(request, runtime, actor, Subject(get_envelope, envelope_id), job)

    @get(
        "/evidence",
        opt={"scope": "vault:read"},
        responses=binary_answer("application/zip", "evault-evidence-package/v1: one zip, checkable offline"),
    )
    async def evidence_package(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
    ) -> Response[bytes]:
        """Everything about the envelope in one zip: the authoritative PDFs and the copy register, the signed
        certificate (JSON and PDF), the audit trail, the proof bundle with its checkpoint (and any witness
        cosignatures and timestamp), the receipts, the vault's public keys, and a signed manifest of SHA-256
        sums (docs/evidence-package.md). Check it offline with ``evault evidence verify``."""
        return await _package_answer(request, runtime, actor, principal, envelope_id, build_package, "evidence")

    @get(
        "/export-package",
        opt={"scope": "vault:read"},
        responses=binary_answer("application/zip", "The export package another vault imports: an evidence package"),
    )
    async def export_package(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        envelope_id: FromPath[str],
    ) -> Response[bytes]:
        """After a vault-out of reason ``transfer``, for the organisation that released the record: the evidence
        package (PDFs, certificate, the whole history as a proof bundle with its checkpoint, the release receipt,
        public keys, signed manifest) with the transfer receipt of every transfer of control it went through
        here. The receiving vault imports it with ``evault import`` (docs/vault-transfer.md). 409
        ``Export.NotReleased``, ``Export.NotTransfer`` or ``Export.NotReleaser`` otherwise."""
        return await _package_answer(request, runtime, actor, principal, envelope_id, build_export, "export")
