"""The evidence routes' work, as it runs in an evidence worker process (:mod:`vault.evidence_work`).

Each function takes the worker's runtime and the job's deadline first, then plain arguments from the route, and
answers an :class:`~vault.evidence_work.Answer`: module-level, so that a job crosses to the worker by name.
The routes (:mod:`vault.api.evidence`, :mod:`vault.api.custody_evidence`, :mod:`vault.api.transfers`) parse
and authorise in the service, and turn the answer into the response.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from compliance.audit.trail import as_csv, audit_trail
from compliance.certificates.issuance import issue_certificate
from compliance.certificates.pdf_page import certificate_pdf
from compliance.checkpoints.freshness import SignsOnDemand, checkpoint_for_envelope
from compliance.conditions.evidence import Custodian, Policy
from compliance.conditions.policies import check_compliance
from compliance.evidence_package.build import PackageIssuer
from compliance.ledger.events import Actor
from compliance.ledger.vault_key import VaultKey
from compliance.sources import Deadline, Sources
from vault.evidence_work import Answer
from vault.public_keys import keys_document
from vault.runtime import Runtime

Receipt = Callable[[Sources, VaultKey, SignsOnDemand, Actor, str], dict[str, Any]]
Package = Callable[[Sources, PackageIssuer, Actor, str], bytes]


def policy_of(runtime: Runtime) -> Policy:
    settings = runtime.settings
    return Policy(
        Custodian(settings.evidence.custodian_name, settings.evidence.custodian_id),
        settings.s3.authoritative_bucket,
        timedelta(seconds=settings.vault.claim_grace_seconds),
    )


def compliance(
    runtime: Runtime, deadline: Deadline, actor: Actor, envelope_id: str, checkpoint: str | None, scopes: frozenset[str]
) -> Answer:
    sources = runtime.sources(deadline)
    if checkpoint == "now":
        checkpoint_for_envelope(runtime.db, runtime.checkpoint_requests(scopes), actor.org_id, envelope_id)
    verdict = check_compliance(sources, policy_of(runtime), actor, envelope_id)
    return Answer({"envelope_id": envelope_id, **verdict.as_json()})


def certificate(
    runtime: Runtime, deadline: Deadline, actor: Actor, envelope_id: str, kind: str, scopes: frozenset[str]
) -> Answer:
    checkpoints = runtime.checkpoint_requests(scopes)
    document = issue_certificate(
        runtime.sources(deadline), runtime.key, checkpoints, policy_of(runtime), actor, envelope_id
    )
    signer = runtime.document_signer
    if kind == "pdf" and signer is not None:
        pdf = certificate_pdf(document, signer, runtime.settings.vault.tsa_url or None)
        disposition = f'inline; filename="certificate-{envelope_id}.pdf"'
        return Answer(pdf, "application/pdf", {"Content-Disposition": disposition})
    return Answer(document)


def audit(runtime: Runtime, deadline: Deadline, actor: Actor, envelope_id: str, kind: str) -> Answer:
    trail = audit_trail(runtime.sources(deadline), actor.org_id, envelope_id)
    if kind == "csv":
        disposition = f'attachment; filename="audit-{envelope_id}.csv"'
        return Answer(as_csv(trail), "text/csv", {"Content-Disposition": disposition})
    return Answer(trail)


def receipt(
    runtime: Runtime, deadline: Deadline, issue: Receipt, actor: Actor, subject_id: str, scopes: frozenset[str]
) -> Answer:
    """A release or a transfer receipt (``issue`` says which), signed on a checkpoint the caller may request."""
    checkpoints = runtime.checkpoint_requests(scopes)
    return Answer(issue(runtime.sources(deadline), runtime.key, checkpoints, actor, subject_id))


def package(
    runtime: Runtime,
    deadline: Deadline,
    build: Package,
    name: str,
    actor: Actor,
    envelope_id: str,
    scopes: frozenset[str],
) -> Answer:
    """The evidence or the export package (``build`` says which), as the attachment ``{name}-{envelope_id}.zip``."""
    issuer = PackageIssuer(
        runtime.key,
        runtime.checkpoint_requests(scopes),
        policy_of(runtime),
        keys_document(runtime),
        runtime.document_signer,
        runtime.settings.vault.tsa_url or None,
    )
    built = build(runtime.sources(deadline), issuer, actor, envelope_id)
    disposition = f'attachment; filename="{name}-{envelope_id}.zip"'
    return Answer(built, "application/zip", {"Content-Disposition": disposition})
