"""The organisation's transparency log: checkpoints, proofs, envelope bundles, and the vault's public keys."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from compliance.bundles.proof_bundle import build_bundle
from compliance.checkpoints.freshness import checkpoint_for_envelope
from compliance.checkpoints.publisher import tree_for
from compliance.errors import Conflict, InvalidInput, NotFound
from compliance.ledger.events import envelope_events, log_size
from storage.models import Checkpoint as CheckpointRow
from vault.api.conventions import Hook, Outcome, mutate, raw_digest
from vault.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    CheckpointView,
    ConsistencyProofView,
    InclusionProofView,
    ProofBundleView,
    answers,
)
from vault.checkpoint_requests import WRITE_SCOPE
from vault.envelopes import get_envelope
from vault.public_keys import keys_document
from vault.runtime import Runtime
from vault.tenancy import Principal


def _checkpoint_view(row: CheckpointRow) -> dict[str, Any]:
    return {
        "size": row.size,
        "root_hash": row.root_hash,
        "note": row.note,
        "worm_key": row.s3_key,
        "worm_version_id": row.s3_version_id,
    }


def _reached(tree_size: int, size: int) -> None:
    """A well-formed request for a tree the log has not grown to yet: a conflict with its state, not bad input
    (a replica behind the primary answers it until it catches up)."""
    if tree_size > size:
        raise Conflict("Log.SizeNotReached", f"the log has {size} entries, not {tree_size} yet", log_size=size)


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


class LogController(Controller):
    path = "/log"
    tags = ["Transparency log"]
    opt = {"scope": "compliance:read"}

    @get("/checkpoint", sync_to_thread=True, responses=answers(200, CheckpointView, READ_ERRORS, "The checkpoint"))
    def checkpoint(self, runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
        """The latest signed checkpoint (C2SP tlog-checkpoint note) of your organisation's log.

        With entries pending, a key holding ``vault:write`` gets a new one (within the organisation's quota,
        ``EVAULT_RATE_LIMIT_CHECKPOINTS``); any other key gets the latest, which covers its ``size`` entries.
        """
        return _checkpoint_view(runtime.checkpoint_requests(principal.scopes).latest_or_new(principal.org_id))

    @post(
        "/checkpoint",
        status_code=200,
        opt={"scope": WRITE_SCOPE},
        responses=answers(200, CheckpointView, WRITE_ERRORS, "The checkpoint"),
    )
    async def checkpoint_now(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> Response[Any]:
        """Sign a checkpoint of the log's current head now, if it has grown (``EVAULT_RATE_LIMIT_CHECKPOINTS``
        per organisation: 429 ``Checkpoint.RateLimited``); else the latest one."""

        def call(_: Hook) -> Outcome:
            checkpoint = runtime.checkpoint_requests(principal.scopes).covering(principal.org_id)
            return Outcome(200, _checkpoint_view(checkpoint))

        digest = raw_digest(hashlib.sha256(await request.body()).hexdigest())
        return await mutate(request, runtime, principal.org_id, digest, 200, call)

    @get(
        "/proof/inclusion",
        sync_to_thread=True,
        responses=answers(200, InclusionProofView, (*READ_ERRORS, 409), "RFC 9162 inclusion proof"),
    )
    def inclusion(
        self,
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        leaf_index: FromQuery[int],
        tree_size: FromQuery[int],
    ) -> dict[str, Any]:
        """Inclusion proof of one leaf in the tree of a given size (RFC 9162 §2.1.3)."""
        with runtime.db.read_session() as session:
            size = log_size(session, principal.org_id)
            if not 0 <= leaf_index < tree_size:
                raise InvalidInput("Log.OutOfRange", "need 0 <= leaf_index < tree_size", log_size=size)
            _reached(tree_size, size)
            proof = tree_for(session, principal.org_id, size).inclusion_proof(leaf_index, tree_size)
        return {"leaf_index": leaf_index, "tree_size": tree_size, "hashes": _b64(proof)}

    @get(
        "/proof/consistency",
        sync_to_thread=True,
        responses=answers(200, ConsistencyProofView, (*READ_ERRORS, 409), "RFC 9162 consistency proof"),
    )
    def consistency(
        self,
        runtime: NamedDependency[Runtime],
        principal: NamedDependency[Principal],
        first: FromQuery[int],
        second: FromQuery[int],
    ) -> dict[str, Any]:
        """Consistency proof between two tree sizes (RFC 9162 §2.1.4)."""
        with runtime.db.read_session() as session:
            size = log_size(session, principal.org_id)
            if not 0 <= first <= second:
                raise InvalidInput("Log.OutOfRange", "need 0 <= first <= second", log_size=size)
            _reached(second, size)
            proof = tree_for(session, principal.org_id, size).consistency_proof(first, second)
        return {"first": first, "second": second, "hashes": _b64(proof)}


class EnvelopeProofController(Controller):
    path = "/envelopes/{envelope_id:str}/proof"
    tags = ["Transparency log"]

    @get(
        "/",
        opt={"scope": "compliance:read"},
        sync_to_thread=True,
        responses=answers(200, ProofBundleView, READ_ERRORS, "Proof bundle evault-proof-bundle/v2 (v3 across logs)"),
    )
    def bundle(
        self, runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], envelope_id: FromPath[str]
    ) -> dict[str, Any]:
        """Self-contained bundle: the envelope's events, each with its inclusion proof, the checkpoint, the key."""
        with runtime.db.read_session() as session:
            events = envelope_events(session, envelope_id)
            try:
                get_envelope(session, principal.org_id, envelope_id)
                until = None
            except NotFound:  # a transferor proves its part: the chain up to its hand-off, in its own log
                if not any(e.org_id == principal.org_id for e in events):
                    raise
                until = principal.org_id
        if not events:
            raise NotFound("Envelope.NotFound", "no such envelope", envelope_id=envelope_id)
        requests = runtime.checkpoint_requests(principal.scopes)
        checkpoint = checkpoint_for_envelope(runtime.db, requests, principal.org_id, envelope_id, until)
        with runtime.db.read_session() as session:
            return build_bundle(session, runtime.key, envelope_id, checkpoint)


@get("/.well-known/evault/keys", tags=["Transparency log"], sync_to_thread=True)
def public_keys(runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    """The vault's public keys, for offline verification of checkpoints, bundles and certificates: every generation
    of the signing key (current first) with its validity, and the signed statements that chain them."""
    return Response(keys_document(runtime), headers={"Cache-Control": "public, max-age=300"})
