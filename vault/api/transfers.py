"""Transfers between organisations: ``POST /envelopes/:id/transfers``, ``GET /transfers[/:id]`` and the
receiver's and initiator's steps (``accept``, ``reject``, ``cancel``, ``confirm``); see docs/transfers.md.

Each step runs like every mutation (Idempotency-Key, one transaction with its ledger event); its answer is the
transfer as it now is. The services are :mod:`vault.transfers` and :mod:`vault.transfer_reads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlmodel import Session

from compliance.ledger.events import Actor
from compliance.receipts.transfer import transfer_receipt
from storage.models import ReceiptCountersignature, Transfer
from vault.api.conventions import API_PREFIX, Hook, Outcome, json_digest, mutate
from vault.api.evidence import Subject, receipt_answer
from vault.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    CountersignatureView,
    SignedReceipt,
    TransferPage,
    TransferView,
    answers,
)
from vault.countersign import countersign, countersignature_view
from vault.listing import DEFAULT_LIMIT
from vault.runtime import Runtime
from vault.tenancy import Principal
from vault.transfer_reads import list_transfers, show_transfer, transfer_view
from vault.transfers import initiate, respond, visible_transfer


@dataclass
class TransferIn:
    to_organisation: str
    type: str  # control | location | control_and_location
    note: str | None = None
    expires_at: datetime | None = None  # RFC 3339 with its offset; a pending transfer then expires
    confirm_required: bool = False  # three steps: control moves only when the initiator confirms


@dataclass
class RejectIn:
    reason: str | None = None


@dataclass
class CountersignIn:
    key_id: str  # sha256:<hex> of a key registered for your organisation (evault org add-signing-key)
    signature: str  # base64 Ed25519 signature over the receipt's statement (docs/receipts.md)


def _countersigned(_session: Session, row: ReceiptCountersignature, status: int) -> Outcome:
    return Outcome(status, countersignature_view(row))


def transfer_outcome(_session: Session, transfer: Transfer, status: int) -> Outcome:
    headers = {"Location": f"{API_PREFIX}/transfers/{transfer.id}"} if status == 201 else {}
    return Outcome(status, transfer_view(transfer), headers)


async def _step(
    request: Request[Any, Any, Any], runtime: Runtime, actor: Actor, transfer_id: str, action: str, reason: str | None
) -> Response[Any]:
    def call(hook: Hook) -> None:
        respond(runtime.custody(), actor, transfer_id, action, reason, on_commit=hook)

    digest = json_digest(await request.body())
    return await mutate(request, runtime, actor.org_id, digest, 200, call, shape=transfer_outcome)


STEP_ANSWERS = answers(200, TransferView, WRITE_ERRORS, "The transfer after this step")


class EnvelopeTransferController(Controller):
    path = "/envelopes/{envelope_id:str}/transfers"
    tags = ["Transfers"]

    @post("/", opt={"scope": "vault:release"}, responses=answers(201, TransferView, WRITE_ERRORS, "Initiated"))
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[TransferIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        envelope_id: FromPath[str],
    ) -> Response[Any]:
        """Offer control and/or location of a vaulted record to another organisation; escrow until it ends."""

        def call(hook: Hook) -> None:
            initiate(
                runtime.custody(),
                actor,
                envelope_id,
                data.to_organisation,
                data.type,
                note=data.note,
                expires_at=data.expires_at,
                confirm_required=data.confirm_required,
                on_commit=hook,
            )

        digest = json_digest(await request.body())
        return await mutate(request, runtime, actor.org_id, digest, 201, call, shape=transfer_outcome)


class TransferController(Controller):
    path = "/transfers"
    tags = ["Transfers"]

    @get(
        "/",
        opt={"scope": "vault:read"},
        sync_to_thread=True,
        responses=answers(200, TransferPage, READ_ERRORS, "One page of the organisation's transfers"),
    )
    def list(
        self,
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        direction: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Incoming and outgoing transfers (``direction``), by ``status``, oldest first, paged by ``cursor``."""
        return list_transfers(runtime.custody(), principal.org_id, direction, status, cursor, limit)

    @get(
        "/{transfer_id:str}",
        opt={"scope": "vault:read"},
        sync_to_thread=True,
        responses=answers(200, TransferView, READ_ERRORS, "The transfer"),
    )
    def show(
        self, runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], transfer_id: FromPath[str]
    ) -> dict[str, Any]:
        """One transfer, for either party (also after the record left one of them)."""
        return show_transfer(runtime.custody(), principal.org_id, transfer_id)

    @post("/{transfer_id:str}/accept", opt={"scope": "vault:release"}, status_code=200, responses=STEP_ANSWERS)
    async def accept(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """The receiver accepts; control moves now, or at the initiator's confirmation."""
        return await _step(request, runtime, actor, transfer_id, "accept", None)

    @post("/{transfer_id:str}/cancel", opt={"scope": "vault:release"}, status_code=200, responses=STEP_ANSWERS)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """The initiator withdraws a pending transfer; control stays."""
        return await _step(request, runtime, actor, transfer_id, "cancel", None)

    @post("/{transfer_id:str}/confirm", opt={"scope": "vault:release"}, status_code=200, responses=STEP_ANSWERS)
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """The initiator confirms an accepted transfer that required it; control moves."""
        return await _step(request, runtime, actor, transfer_id, "confirm", None)

    @get(
        "/{transfer_id:str}/receipt",
        opt={"scope": "vault:read"},
        responses=answers(200, SignedReceipt, WRITE_ERRORS, "evault-receipt/v1 of kind transfer, signed by the vault"),
    )
    async def receipt(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        principal: NamedDependency[Principal],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """The signed receipt of a completed transfer, for either party: the envelope, both organisations, the
        type, the document hashes, the accept time, and the initiate, accept and complete events with their log
        positions and inclusion proofs. 409 ``Receipt.NotCompleted`` before it completed. Check it offline with
        ``evault receipt verify``."""
        transfer = Subject(visible_transfer, transfer_id)
        return await receipt_answer(request, runtime, actor, principal, transfer_receipt, transfer)

    @post("/{transfer_id:str}/reject", opt={"scope": "vault:release"}, status_code=200, responses=STEP_ANSWERS)
    async def reject(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RejectIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """The receiver refuses, with a reason; control stays."""
        return await _step(request, runtime, actor, transfer_id, "reject", data.reason)

    @post(
        "/{transfer_id:str}/countersign",
        opt={"scope": "vault:release"},
        status_code=201,
        responses=answers(201, CountersignatureView, WRITE_ERRORS, "The countersignature, recorded"),
    )
    async def countersign(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CountersignIn],
        runtime: NamedDependency[Runtime],
        actor: NamedDependency[Actor],
        transfer_id: FromPath[str],
    ) -> Response[Any]:
        """A party countersigns the completed transfer's receipt: an Ed25519 signature, with a key registered for
        its organisation, over the receipt's statement (RFC 8785 of ``{"format": "evault-receipt-statement/v1",
        "kind", "envelope_id", "fields"}``). Every receipt of the transfer carries it from then on, and
        ``evault receipt verify`` checks it. 409 ``Receipt.NotCompleted`` before completion,
        ``Countersign.AlreadySigned`` the second time."""

        def call(hook: Hook) -> None:
            countersign(runtime.custody(), actor, transfer_id, data.key_id, data.signature, on_commit=hook)

        digest = json_digest(await request.body())
        return await mutate(request, runtime, actor.org_id, digest, 201, call, shape=_countersigned)
