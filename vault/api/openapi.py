"""What Litestar's generated OpenAPI document cannot say by itself, added once at start-up.

Litestar builds operations from the handlers (typed answers come from :mod:`vault.api.schemas`); this adds the
raw and multipart PDF request bodies (read by hand, so invisible to Litestar), the convention headers
(Idempotency-Key, If-Match, If-None-Match, ETag, Location, RateLimit, Retry-After), each operation's required
scope (``x-required-scope``), realistic examples (a small valid PDF among them) and OpenAPI ``links`` from every
answer that names an envelope to the operations on it, so stateful testing can follow create → upload →
vault-in → copies → vault-out.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from vault.api.openapi_limits import amendment_data, state_query_limits, state_request_limits, vault_in_metadata
from vault.api.schemas import MEANING
from vault.envelopes import KINDS
from vault.field_limits import MAX_EXTERNAL_ID
from vault.idempotency import HEADER_VALUE, MAX_KEY
from vault.lifecycle import STATUSES, VAULT_STATES
from vault.listing import MAX_LIMIT
from vault.vault_out import REASONS

PDF_OPS = ("vault-in-signed", "vault-in-upload", "upload")
ENVELOPE_OPS_WITH_ETAG = ("/envelopes/{envelope_id}", "/envelopes/{envelope_id}/status")
_STRING = {"type": "string"}


def sample_pdf() -> str:
    """A one-page PDF in plain ASCII (so it survives being a JSON string), with a correct xref table."""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        "<< /Length 0 >>\nstream\n\nendstream",
    ]
    out = "%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n"
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out


def _header(name: str, description: str, example: str | None = None, pattern: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "header", "required": False, "description": description}
    param["schema"] = {"type": "string", "maxLength": MAX_KEY, "pattern": pattern or f"^{HEADER_VALUE.pattern}$"}
    if example is not None:
        param["example"] = example
    return param


# vault-in-upload's explicit form of "vault what was staged", for clients that cannot send an empty body.
STAGED_BODY = {
    "type": "object",
    "required": ["staged"],
    "properties": {"staged": {"const": True}},
    "additionalProperties": False,
}


def _pdf_body(optional: bool) -> dict[str, Any]:
    """Multipart first (the shape every client generator supports), then the raw PDF under both media types:
    ``application/octet-stream`` is what generators send a raw file as, ``application/pdf`` what curl users do."""
    binary = {"type": "string", "format": "binary"}
    raw = {"schema": binary, "example": sample_pdf()}
    return {
        "required": not optional,
        "description": "Several PDFs as multipart `document` parts, or one PDF as the raw body"
        + ('; no body at all, or {"staged": true}, vaults what was staged by POST .../upload' if optional else ""),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["document"],
                    "properties": {
                        "document": {"type": "array", "items": binary, "minItems": 1, "maxItems": 20},
                        "metadata": vault_in_metadata(),
                        "sha256_0": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "of document 0"},
                    },
                },
                "encoding": {
                    "document": {"contentType": "application/pdf"},
                    "metadata": {"contentType": "application/json"},
                },
            },
            "application/octet-stream": raw,
            "application/pdf": raw,
            **({"application/json": {"schema": STAGED_BODY}} if optional else {}),
        },
    }


AMENDMENT = {
    "type": "object",
    "required": ["type", "data"],
    "properties": {"type": {"enum": ["modification", "assumption"]}, "data": amendment_data()},
}


def _amendment_body() -> dict[str, Any]:
    """JSON alone, or multipart with the same object as the ``metadata`` part and signed PDFs as ``document``."""
    binary = {"type": "string", "format": "binary"}
    return {
        "required": True,
        "description": 'The amendment as JSON, or multipart: a `metadata` part holding {"type", "data"} and '
        "one or more `document` PDF parts",
        "content": {
            "application/json": {"schema": AMENDMENT, "example": {"type": "modification", "data": {"rate": "5.25%"}}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "document"],
                    "properties": {
                        "metadata": AMENDMENT,
                        "document": {"type": "array", "items": binary, "minItems": 1, "maxItems": 20},
                    },
                },
                "encoding": {
                    "document": {"contentType": "application/pdf"},
                    "metadata": {"contentType": "application/json"},
                },
            },
        },
    }


# Readable operation ids (what a generated client names its methods), one per partner operation; the test
# tests/test_openapi_names.py fails on an operation missing here, so a new route cannot ship with Litestar's
# path-derived name.
OPERATION_IDS = {
    ("/envelopes", "post"): "createEnvelope",
    ("/envelopes", "get"): "listEnvelopes",
    ("/envelopes/{envelope_id}", "get"): "getEnvelope",
    ("/envelopes/{envelope_id}/status", "get"): "getEnvelopeStatus",
    ("/envelopes/{envelope_id}/upload", "post"): "uploadDocument",
    ("/envelopes/{envelope_id}/void", "post"): "voidEnvelope",
    ("/envelopes/{envelope_id}/send", "post"): "sendEnvelope",
    ("/envelopes/{envelope_id}/signing-links", "get"): "getSigningLinks",
    ("/envelopes/{envelope_id}/remind", "post"): "remindSigners",
    ("/envelopes/{envelope_id}/vault-in-signed", "post"): "vaultInSigned",
    ("/envelopes/{envelope_id}/vault-in-upload", "post"): "vaultInUpload",
    ("/envelopes/{envelope_id}/vault/signed-url", "get"): "getAuthoritativeUrl",
    ("/envelopes/{envelope_id}/vault/copy/signed-url", "get"): "issueCopy",
    ("/envelopes/{envelope_id}/vault-out", "post"): "vaultOut",
    ("/envelopes/{envelope_id}/retention", "post"): "extendRetention",
    ("/envelopes/{envelope_id}/legal-hold", "post"): "setLegalHold",
    ("/envelopes/{envelope_id}/legal-hold", "delete"): "clearLegalHold",
    ("/envelopes/{envelope_id}/amendments", "post"): "recordAmendment",
    ("/envelopes/{envelope_id}/amendments", "get"): "listAmendments",
    ("/envelopes/{envelope_id}/paper-in-attestation", "post"): "attestPaperIn",
    ("/envelopes/{envelope_id}/compliance", "get"): "checkCompliance",
    ("/envelopes/{envelope_id}/vault/certificate", "get"): "getCertificate",
    ("/envelopes/{envelope_id}/audit", "get"): "getAuditTrail",
    ("/envelopes/{envelope_id}/release-receipt", "get"): "getReleaseReceipt",
    ("/envelopes/{envelope_id}/certified-copy", "get"): "getCertifiedCopy",
    ("/envelopes/{envelope_id}/evidence", "get"): "getEvidencePackage",
    ("/envelopes/{envelope_id}/export-package", "get"): "getExportPackage",
    ("/envelopes/{envelope_id}/proof", "get"): "getProofBundle",
    ("/log/checkpoint", "get"): "getCheckpoint",
    ("/log/checkpoint", "post"): "signCheckpoint",
    ("/log/proof/inclusion", "get"): "getInclusionProof",
    ("/log/proof/consistency", "get"): "getConsistencyProof",
    ("/log/tlog/checkpoint", "get"): "getTlogCheckpoint",
    ("/log/tlog/tile/{tile}", "get"): "getTlogTile",
    ("/webhook", "patch"): "configureWebhook",
    ("/webhook", "get"): "getWebhook",
    ("/webhook/deliveries", "get"): "listWebhookDeliveries",
    ("/webhook/deliveries/{delivery_id}/redeliver", "post"): "redeliverWebhook",
    ("/envelopes/{envelope_id}/transfers", "post"): "initiateTransfer",
    ("/transfers", "get"): "listTransfers",
    ("/transfers/{transfer_id}", "get"): "getTransfer",
    ("/transfers/{transfer_id}/accept", "post"): "acceptTransfer",
    ("/transfers/{transfer_id}/reject", "post"): "rejectTransfer",
    ("/transfers/{transfer_id}/cancel", "post"): "cancelTransfer",
    ("/transfers/{transfer_id}/confirm", "post"): "confirmTransfer",
    ("/transfers/{transfer_id}/receipt", "get"): "getTransferReceipt",
    ("/transfers/{transfer_id}/countersign", "post"): "countersignTransferReceipt",
    ("/embed/token", "post"): "createEmbedToken",
}
OUTSIDE_IDS = {
    ("/health", "get"): "getHealth",
    ("/ready", "get"): "getReadiness",
    ("/.well-known/evault/keys", "get"): "getPublicKeys",
    ("/sign/{token}/state", "get"): "getSigningState",
    ("/sign/{token}/consent", "post"): "giveSigningConsent",
    ("/sign/{token}/document", "get"): "getSigningDocument",
    ("/sign/{token}/sign", "post"): "signAsRecipient",
    ("/sign/{token}/decline", "post"): "declineAsRecipient",
    ("/sign/{token}", "get"): "getSigningPage",
    ("/sign/{token}/pages/{number}", "get"): "getSigningPageImage",
    ("/sign/{token}/access-check.png", "get"): "getAccessCheckImage",
    ("/sign/{token}/access-check", "post"): "checkSigningAccess",
}

# POSTs that do not take an Idempotency-Key (a redelivery is itself a deliberate repeat), so none is advertised.
WITHOUT_IDEMPOTENCY = {("/webhook/deliveries/{delivery_id}/redeliver", "post")}
NOT_BLANK = "\\S"  # the server strips and refuses an empty string
QUERY_CONSTRAINTS: dict[tuple[str, str], dict[str, Any]] = {
    ("/envelopes", "kind"): {"enum": list(KINDS)},
    ("/envelopes", "status"): {"enum": list(STATUSES)},
    ("/envelopes", "vault_state"): {"enum": list(VAULT_STATES)},
    ("/envelopes", "limit"): {"minimum": 1, "maximum": MAX_LIMIT},
    ("/envelopes", "external_id"): {"maxLength": MAX_EXTERNAL_ID, "pattern": "^[^\\x00]*$"},  # vault/listing.py
    ("/envelopes/{envelope_id}/compliance", "checkpoint"): {"enum": ["now"]},
    ("/envelopes/{envelope_id}/vault/certificate", "format"): {"enum": ["json", "pdf"]},
    ("/envelopes/{envelope_id}/audit", "format"): {"enum": ["json", "csv"]},
    ("/log/proof/inclusion", "leaf_index"): {"minimum": 0},
    ("/log/proof/inclusion", "tree_size"): {"minimum": 1},
    ("/log/proof/consistency", "first"): {"minimum": 0},
    ("/log/proof/consistency", "second"): {"minimum": 0},
    ("/webhook/deliveries", "limit"): {"minimum": 1, "maximum": MAX_LIMIT},
    ("/transfers", "direction"): {"enum": ["incoming", "outgoing"]},
    ("/transfers", "status"): {"enum": ["pending", "accepted", "completed", "rejected", "cancelled", "expired"]},
    ("/transfers", "limit"): {"minimum": 1, "maximum": MAX_LIMIT},
}

# The other representations a 200 may take (``?format=`` or ``Accept``), beside the JSON one Litestar documents.
ALTERNATIVE_ANSWERS = {
    ("/envelopes/{envelope_id}/vault/certificate", "get"): {
        "application/pdf": {"schema": {"type": "string", "format": "binary"}}
    },
    ("/envelopes/{envelope_id}/audit", "get"): {"text/csv": {"schema": {"type": "string"}}},
    # Files only: the binary schema replaces the bare string Litestar documents for a bytes answer.
    ("/envelopes/{envelope_id}/certified-copy", "get"): {
        "application/pdf": {"schema": {"type": "string", "format": "binary"}}
    },
    ("/envelopes/{envelope_id}/evidence", "get"): {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}
    },
    ("/envelopes/{envelope_id}/export-package", "get"): {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}
    },
}

_EXAMPLES = {
    ("/envelopes", "post"): {
        "kind": "paper",
        "title": "Loan 1001",
        "external_id": "loan-1001",
        "parties": [{"name": "Ada Borrower", "email": "ada@example.com"}],
        "secured_party": {"name": "First Bank", "id": "bank-1"},
    },
    ("/envelopes/{envelope_id}/void", "post"): {"reason": "withdrawn by the borrower"},
    ("/envelopes/{envelope_id}/vault-out", "post"): {"reason": "payoff"},
}


def _scopes(app: Litestar, prefix: str) -> dict[tuple[str, str], str | None]:
    found: dict[tuple[str, str], str | None] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in route.route_handlers:
            if isinstance(handler, HTTPRouteHandler):
                for method in handler.http_methods:
                    found[(path.removeprefix(prefix), method.lower())] = handler.opt.get("scope")
    return found


# Answers that are the envelope itself: they carry its ETag (and, when 201, its Location).
ENVELOPE_ANSWERS = {"EnvelopeView", "VaultInView", "EnvelopeStatus"}
# What an integrator does next with the envelope an operation answered, for the stateful test and for readers
# of the document. An operation on an envelope that no step names is linked from createEnvelope, so a route
# added later has a link too.
NEXT_STEPS = {
    "createEnvelope": (
        "uploadDocument",
        "vaultInSigned",
        "vaultInUpload",
        "getEnvelope",
        "getEnvelopeStatus",
        "voidEnvelope",
    ),
    "uploadDocument": ("vaultInUpload", "getEnvelope"),
    "vaultInUpload": (
        "getAuthoritativeUrl",
        "issueCopy",
        "getCertificate",
        "checkCompliance",
        "getAuditTrail",
        "getProofBundle",
        "extendRetention",
        "setLegalHold",
        "vaultOut",
    ),
    "setLegalHold": ("clearLegalHold",),
    "clearLegalHold": ("vaultOut",),
    "vaultOut": ("getAuditTrail", "getCertificate"),
    "voidEnvelope": ("getEnvelopeStatus",),
}
# The same record after either vault-in; the signed flow links the three steps that differ in what they show.
NEXT_STEPS["vaultInSigned"] = ("getAuthoritativeUrl", "getCertificate", "vaultOut")
# Links that carry something other than the envelope id: (source, target, parameter, where in the answer).
OTHER_LINKS: tuple[tuple[str, str, str, str], ...] = (
    ("listEnvelopes", "getEnvelope", "path.envelope_id", "$response.body#/items/0/id"),
    ("listWebhookDeliveries", "redeliverWebhook", "path.delivery_id", "$response.body#/items/0/id"),
    ("getCheckpoint", "getInclusionProof", "query.tree_size", "$response.body#/size"),
    ("getCheckpoint", "getConsistencyProof", "query.second", "$response.body#/size"),
    ("getAuditTrail", "getInclusionProof", "query.leaf_index", "$response.body#/events/0/leaf_index"),
)


def _first_success(operation: dict[str, Any]) -> str | None:
    """The answer links hang on: 201 where an operation creates (its 200 is a replay), else its lowest 2xx."""
    successes = sorted(status for status in operation.get("responses", {}) if status.startswith("2"))
    return "201" if "201" in successes else next(iter(successes), None)


def _operation_ids(paths: dict[str, Any], prefix: str) -> dict[str, str]:
    """operationId -> path, for the partner operations."""
    found = {}
    for path, item in paths.items():
        for operation in item.values():
            if path.startswith(prefix) and isinstance(operation, dict) and "operationId" in operation:
                found[operation["operationId"]] = path
    return found


def _links(paths: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """Each source operation's OpenAPI links (by operationId), added to its success answer."""
    ids = _operation_ids(paths, prefix)
    on_envelope = [name for name, path in ids.items() if path.startswith(f"{prefix}/envelopes/{{envelope_id}}")]
    steps = {name: [target for target in targets if target in ids] for name, targets in NEXT_STEPS.items()}
    named = {target for targets in NEXT_STEPS.values() for target in targets}
    steps["createEnvelope"] += [name for name in on_envelope if name not in named]
    links: dict[str, dict[str, Any]] = {}
    for source, targets in steps.items():
        for target in targets:
            parameters = {"path.envelope_id": "$response.body#/id"}
            links.setdefault(source, {})[target] = {"operationId": target, "parameters": parameters}
    for source, target, parameter, expression in OTHER_LINKS:
        if source in ids and target in ids:
            links.setdefault(source, {})[target] = {"operationId": target, "parameters": {parameter: expression}}
    return links


def _name_operations(paths: dict[str, Any], prefix: str) -> None:
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict):
                key = (path.removeprefix(prefix), method)
                name = OPERATION_IDS.get(key) if path.startswith(prefix) else OUTSIDE_IDS.get((path, method))
                if name is not None:
                    operation["operationId"] = name


def _request_models(paths: dict[str, Any]) -> set[str]:
    refs = set()
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict):
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    refs.add(str(media.get("schema", {}).get("$ref", "")).rsplit("/", 1)[-1])
    return refs


def _constrain(paths: dict[str, Any], models: dict[str, Any], prefix: str) -> None:
    """What the server enforces in code, said in the document too (from the same constants, so they agree)."""
    requests = _request_models(paths)
    for name, model in models.items():
        if name not in requests and model.get("type") == "object" and "properties" in model:
            model.setdefault("additionalProperties", False)  # an answer is exactly its model (free-form JSON aside)
    if "NewEnvelope" in models:
        models["NewEnvelope"]["properties"]["kind"]["enum"] = list(KINDS)
    state_request_limits(models, requests)
    if "VaultOutIn" in models:
        models["VaultOutIn"]["properties"]["reason"]["enum"] = list(REASONS)
        # A transfer names the receiving vault; "other" says why (vault/vault_out.py).
        models["VaultOutIn"]["allOf"] = [
            {
                "if": {"properties": {"reason": {"const": "transfer"}}},
                "then": {
                    "required": ["transferee"],
                    "properties": {
                        "transferee": {
                            "type": "object",
                            "required": ["vault_id"],
                            "properties": {"vault_id": {"type": "string", "pattern": NOT_BLANK}},
                        }
                    },
                },
            },
            {
                "if": {"properties": {"reason": {"const": "other"}}},
                "then": {"required": ["note"], "properties": {"note": {"type": "string", "pattern": NOT_BLANK}}},
            },
        ]
    for (path, name), constraint in QUERY_CONSTRAINTS.items():
        for operation in paths.get(prefix + path, {}).values():
            for param in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if param.get("in") == "query" and param.get("name") == name:
                    _narrow(param["schema"], constraint)


def _narrow(schema: dict[str, Any], constraint: dict[str, Any]) -> None:
    """Put the constraint on the non-null branch of an optional parameter, or on the schema itself."""
    for branch in schema.get("oneOf", []):
        if branch.get("type") != "null":
            branch.update(constraint)
            return
    schema.update(constraint)


def complete(app: Litestar, schema: dict[str, Any], prefix: str = "/api/v2/partner") -> None:
    """Add to the generated document in place (it is the one Litestar serves)."""
    scopes = _scopes(app, "")
    paths: dict[str, Any] = schema.get("paths", {})
    _name_operations(paths, prefix)
    _constrain(paths, schema.get("components", {}).get("schemas", {}), prefix)
    links = _links(paths, prefix)
    rate_headers = {
        "RateLimit-Policy": {
            "description": 'e.g. "default";q=100;w=60, "org";q=300;w=60 (draft-ietf-httpapi-ratelimit-headers-08+): '
            "the key's policies, then its organisation's (all its keys together)",
            "schema": _STRING,
        },
        "RateLimit": {"description": 'e.g. "default";r=42;t=17, "org";r=250;t=17', "schema": _STRING},
    }
    too_large = {
        "description": MEANING[413],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path, item in paths.items():
        relative = path.removeprefix(prefix)
        for method, operation in item.items():
            if not isinstance(operation, dict) or not path.startswith(prefix):
                continue
            scope = scopes.get((path, method))
            operation["x-required-scope"] = scope
            operation["description"] = f"{operation.get('description') or ''}\n\nRequired scope: `{scope}`.".strip()
            params = operation.setdefault("parameters", [])
            if method == "post" and (relative, method) not in WITHOUT_IDEMPOTENCY:
                params.append(_header("Idempotency-Key", "replays the first answer for 24 h (docs/api.md)", "key-1"))
                if relative.startswith("/envelopes/"):
                    params.append(_header("If-Match", "the ETag you read; 412 when the envelope changed since"))
            if relative in ENVELOPE_OPS_WITH_ETAG and method == "get":
                params.append(_header("If-None-Match", "the ETag you hold; 304 when unchanged"))
            if relative.rsplit("/", 1)[-1] in PDF_OPS:
                params.append(
                    _header("X-Content-SHA256", "SHA-256 (hex) of the raw PDF body", pattern="^[0-9a-fA-F]{64}$")
                )
                params.append({"name": "filename", "in": "query", "required": False, "schema": dict(_STRING)})
                operation["requestBody"] = _pdf_body(optional=relative.endswith("vault-in-upload"))
            state_query_limits(operation)
            if (relative, method) == ("/envelopes/{envelope_id}/amendments", "post"):
                operation["requestBody"] = _amendment_body()
            example = _EXAMPLES.get((relative, method))
            if example is not None:
                operation["requestBody"]["content"]["application/json"]["example"] = example
            if (relative, method) in ALTERNATIVE_ANSWERS:
                operation["responses"]["200"]["content"].update(ALTERNATIVE_ANSWERS[(relative, method)])
            if "requestBody" in operation:  # every body is bounded (EVAULT_MAX_JSON_BYTES, EVAULT_MAX_UPLOAD_BYTES)
                operation["responses"].setdefault("413", too_large)
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.update(rate_headers)
                if status == "429":
                    headers["Retry-After"] = {
                        "description": "seconds until the window resets",
                        "schema": {"type": "integer"},
                    }
                body = response.get("content", {}).get("application/json", {}).get("schema", {})
                answer = body.get("$ref", "").rsplit("/", 1)[-1]
                if answer in ENVELOPE_ANSWERS or status == "304":
                    headers["ETag"] = {"description": "the envelope's revision", "schema": _STRING}
                if status == "201" and answer in ENVELOPE_ANSWERS:
                    headers["Location"] = {"description": "the envelope's URL", "schema": _STRING}
                if status == _first_success(operation) and operation.get("operationId") in links:
                    response["links"] = links[operation["operationId"]]


class CompletedJsonRenderPlugin(JsonRenderPlugin):
    """Serves ``openapi.json`` completed by :func:`complete` (once: Litestar hands it the same cached dict)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if id(openapi_schema) != self._completed:
            complete(request.app, openapi_schema)
            self._completed = id(openapi_schema)
        return super().render(request, openapi_schema)

    _completed: int = 0
