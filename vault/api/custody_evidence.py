"""Evidence a custodian hands over about one envelope: its release receipt (and, further down, what a court takes).

Each route parses, calls one compliance service in the evidence pool (capped, on a deadline) and shapes the
answer. A receipt rests on a checkpoint covering its events: the latest when fresh, else one signed on request
(``vault:write`` and the organisation's quota, as for the certificate).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from compliance.ledger.events import Actor
from compliance.receipts.release import release_receipt
from compliance.sources import Deadline
from vault.api.evidence import in_pool
from vault.api.schemas import WRITE_ERRORS, SignedReceipt, answers
from vault.runtime import Runtime
from vault.tenancy import Principal


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
        checkpoints = runtime.checkpoint_requests(principal.scopes)

        def job(deadline: Deadline) -> Response[Any]:
            document = release_receipt(runtime.sources(deadline), runtime.key, checkpoints, actor, envelope_id)
            return Response(document, media_type="application/json")

        return await in_pool(request, runtime, actor, job)
