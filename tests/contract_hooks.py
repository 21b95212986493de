"""Schemathesis hooks for the contract test: real PDFs, and the rules JSON Schema cannot state.

The document states every limit a schema can (lengths, patterns, enums, ranges, formats). What remains are rules
over several values or over the server's state, each written in the field's description and listed in
docs/api-contract.md. For *positive* cases only (those schemathesis expects the server to accept), these hooks
make a generated value obey such a rule, the way a real client does; negative cases stay as generated, so the
server's refusals are still checked:

- a PDF body is a real PDF (a signed one for vault-in-signed); ``X-Content-SHA256`` and ``sha256_<n>`` are the
  SHA-256 of the bytes sent; the bodies are signed PDFs, so no positive case stages one on an e-sign envelope
  (whose document to sign carries no signature), which the fuzzing phase finds in earlier answers;
- ``If-Match`` is ``*`` (any current ETag): an ETag is only known from a previous answer; an
  ``Idempotency-Key`` is fresh for each request (a reused key with another body is a 409);
- a ``cursor`` is only one the server issued (followed through the ``next_cursor`` link), never a made-up one;
- ``first <= second`` and ``leaf_index < tree_size``; an ``external_id`` is unique;
- free JSON (``metadata``, ``data``) is clean at every depth, at most 16 levels deep and 16 KiB encoded;
- a retention date lies in the future, at least the default retention away and at most 100 years; an envelope's
  ``expires_at`` is in the future;
- a webhook ``url`` is one whose host resolves, inside the networks the test server allows over http;
- in the stateful phase, scenarios walk the happy path (see ``_walk_the_flow``), so the links after vault-in are
  reached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import stateful

from tests.pdf_factory import make_pdf, make_signed_pdf
from vault.field_limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_TEXT

# Stateful roots: the operations that need no identifier (create, the envelope list, the log; the webhook's
# deliveries list stays empty until events are sent, so it starts nothing). Schemathesis's own guess takes
# ``external_id`` (the partner's own reference) for a foreign key to a resource nothing creates, so it never
# starts a scenario with createEnvelope, and starts many with random envelope ids that can only 404.
stateful.is_likely_root_transition = lambda operation, node, produced: (
    not (operation.path_parameters or operation.path.endswith("/deliveries"))
)

# A signed PDF: every flow takes one (vault-in-signed only those). A hook must not replace a raw body itself:
# schemathesis re-checks an edited body against ``format: binary``, finds bytes, and relabels the case negative.
PLAIN, SIGNED = make_pdf(pages=1), make_signed_pdf()
PDFS = st.just(SIGNED)
PDF_TYPES = ("application/pdf", "application/octet-stream")
for media_type in PDF_TYPES:
    schemathesis.openapi.media_type(media_type, PDFS)
ESIGN: set[str] = set()  # the e-sign envelopes the server has answered with in this run
WEBHOOK_URL = os.environ.get("EVAULT_CONTRACT_WEBHOOK_URL", "http://127.0.0.1:9/evault")


@schemathesis.serializer("application/pdf", "application/octet-stream")
def pdf_body(ctx: object, value: object) -> bytes:
    """Generated PDFs are bytes; the document's example PDF is ASCII text."""
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]


def _issued(cursor: object) -> bool:
    """A cursor as the server writes it: base64url of a JSON [time, id] pair."""
    try:
        pair = json.loads(base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(pair, list) and len(pair) == 2


def _future(value: object, *, at_least: timedelta) -> str:
    """``value`` if it is a date-time between ``at_least`` and 100 years from now, else a date that is."""
    now = datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
        if parsed.tzinfo is not None and now + at_least < parsed < now + timedelta(days=36000):
            return str(value)
    except ValueError:
        pass
    return (now + at_least + timedelta(days=30)).replace(microsecond=0).isoformat()


def _bytes(value: object) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]


def _documents(case: Any, signed: bool) -> None:
    """Real PDFs whose stated SHA-256 matches them, in a raw or a multipart body."""
    headers = case.headers or {}
    if isinstance(case.body, (bytes, str)):
        if "X-Content-SHA256" in headers:
            headers["X-Content-SHA256"] = hashlib.sha256(_bytes(case.body)).hexdigest()
    elif isinstance(case.body, dict) and "document" in case.body:
        # One part or several (schemathesis draws an array of parts as one value or as a list).
        document = case.body["document"]
        pdf = SIGNED if signed else PLAIN
        case.body["document"] = [pdf for _ in document] if isinstance(document, list) else pdf
        # A form field stating a part's hash: left out (schemathesis re-encodes a binary part on the way out).
        for name in [key for key in case.body if key.startswith("sha256_")]:
            del case.body[name]
        metadata = case.body.get("metadata")
        if isinstance(metadata, (str, bytes)) and not _json_object(metadata):
            # A positive case may carry an object-typed part as raw text (seen: an empty part, which the vault
            # rightly refuses as 400 Request.InvalidMetadata): an amendment needs its object, a vault-in none.
            if case.operation.path.endswith("/amendments"):
                metadata = case.body["metadata"] = {"type": "modification", "data": {}}
            else:
                metadata = case.body.pop("metadata")
        if isinstance(metadata, dict):
            metadata = case.body["metadata"] = _clean(metadata)
        if isinstance(metadata, dict) and isinstance(metadata.get("secured_party"), dict):
            metadata["secured_party"] = _named_only(metadata["secured_party"], ("name", "email", "role"))
        if isinstance(metadata, dict) and "retain_until" in metadata:
            metadata["retain_until"] = _future(metadata["retain_until"], at_least=timedelta(days=3650))


def _query(case: Any) -> None:
    query = case.query
    if not query:
        return
    for name in ("first", "second", "leaf_index", "tree_size"):
        if isinstance(query.get(name), str) and query[name].isdigit():
            query[name] = int(query[name])
    if "cursor" in query and not _issued(query["cursor"]):
        del query["cursor"]
    first, second = query.get("first"), query.get("second")
    # The tree size may come from a link (a checkpoint's size): the index gives way, not the size.
    if isinstance(first, int) and isinstance(second, int) and first > second:
        query["first"] = second
    leaf, size = query.get("leaf_index"), query.get("tree_size")
    if isinstance(leaf, int) and isinstance(size, int) and leaf >= size:
        query["leaf_index"] = size - 1


def _named_only(party: object, names: tuple[str, ...]) -> object:
    """A party or transferee with only its named fields: the schema leaves the others as any JSON (for the
    TypeScript generator's sake) and states their bounds in words."""
    return {key: value for key, value in party.items() if key in names} if isinstance(party, dict) else party


# What the server refuses in any kept string, key or number (vault/field_limits.py). The schema states it for the levels
# it spells out (JsonValue's first six); deeper ones it leaves as any JSON, so the hook cleans them.
_UNSAFE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)


def _json_object(text: str | bytes) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _clean(value: Any) -> Any:
    """Free JSON as the server keeps it (vault/field_limits.py's ``check_json``): clean strings and keys, safe
    numbers, at most MAX_METADATA_DEPTH levels and MAX_METADATA_BYTES encoded. The schema spells out six levels
    and leaves the rest as any JSON, so a generated value may nest deeper or grow larger than the server keeps."""
    cleaned = _clean_at(value, 1)
    while len(rfc8785.dumps(cleaned)) > MAX_METADATA_BYTES and isinstance(cleaned, dict | list) and cleaned:
        if isinstance(cleaned, dict):
            del cleaned[next(reversed(cleaned))]  # the object itself stays (a metadata part must be one)
        else:
            cleaned.pop()
    if isinstance(cleaned, str) and len(rfc8785.dumps(cleaned)) > MAX_METADATA_BYTES:
        cleaned = cleaned[: MAX_METADATA_BYTES // 8]
    return cleaned


def _clean_at(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _UNSAFE.sub("", value)
    if isinstance(value, int | float) and not isinstance(value, bool) and not -(2**53) < value < 2**53:
        return 0  # numbers strictly within +-2**53 (and finite), as every kept number
    if isinstance(value, list):
        return [_clean_at(item, depth + 1) for item in value] if depth < MAX_METADATA_DEPTH else []
    if isinstance(value, dict):
        if depth >= MAX_METADATA_DEPTH:
            return {}
        return {_clean_at(key, depth)[:MAX_TEXT]: _clean_at(item, depth + 1) for key, item in value.items()}
    return value


def _ceremony_and_custody(case: Any, body: dict[str, Any]) -> None:
    """A signature the generator can make is a typed one (a drawn one needs a real PNG); an attestation dates
    the past; free JSON is clean at every depth."""
    path = case.operation.path
    if path.endswith("/sign") and isinstance(body.get("signature"), dict):
        body["signature"] = {"type": "typed", "name": str(body["signature"].get("name") or "Ada").strip() or "Ada"}
    if path.endswith("/envelopes") and case.method == "POST":
        body.pop("min", None)  # a MIN needs the organisation's MERS Org ID, set by the operator (test_parties.py)
    if path.endswith("/paper-in-attestation") and "at" in body:
        body["at"] = "2026-01-02T03:04:05Z"
    for name in ("metadata", "data"):
        if name in body:
            body[name] = _clean(body[name])


def _json_body(case: Any) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    _ceremony_and_custody(case, body)
    if isinstance(body.get("parties"), list):
        body["parties"] = [_named_only(party, ("name", "email", "role")) for party in body["parties"]]
    for name, named in (("secured_party", ("name", "email", "role")), ("transferee", ("vault_id",))):
        if isinstance(body.get(name), dict):
            body[name] = _named_only(body[name], named)
    if "retain_until" in body:
        body["retain_until"] = _future(body["retain_until"], at_least=timedelta(days=3650))
    if body.get("expires_at") is not None:
        body["expires_at"] = _future(body["expires_at"], at_least=timedelta(days=1))
    if case.operation.path.endswith("/envelopes") and body.get("external_id") is not None:
        # Unique, as in real use (a taken external_id is a 409 that ends the scenario's links).
        body["external_id"] = f"{str(body['external_id'])[:150]}-{uuid.uuid4().hex}"
    if case.operation.path.endswith("/webhook") and body.get("url") is not None:
        body["url"] = WEBHOOK_URL


def _walk_the_flow(case: Any) -> None:
    """Stateful scenarios follow the walk-through (create -> vault-in -> copies -> vault-out): the envelope names
    its secured party (without one, every vault-in is a 409)."""
    path = case.operation.path
    if path.endswith("/envelopes") and case.method == "POST" and isinstance(case.body, dict):
        case.body["secured_party"] = case.body.get("secured_party") or {"name": "First Bank", "id": "bank-1"}
        # The walk-through is the paper flow: every PDF here is signed, and the document an e-sign ceremony
        # signs must carry no signature (400 Ceremony.DocumentSigned). The ceremony has tests of its own.
        case.body["kind"] = "paper"
        case.body.pop("recipients", None)


@schemathesis.hook
def after_call(ctx: object, case: Any, response: Any) -> None:
    """Remembers the e-sign envelopes in every answer (one envelope, or a list's items), as their creator knows
    them."""
    try:
        body = response.json()
    except ValueError:
        return
    items = body.get("items") if isinstance(body, dict) else None
    for item in items if isinstance(items, list) else [body]:
        if isinstance(item, dict) and item.get("kind") == "esign" and isinstance(item.get("id"), str):
            ESIGN.add(item["id"])


@schemathesis.hook
def filter_case(ctx: object, case: Any) -> bool:
    """In a stateful scenario a vault-in sends its PDF rather than "what was staged" (a 409 when nothing is).
    A negative case aimed at a PDF body is dropped: the PDF strategy above makes every such body a valid PDF."""
    if case.meta is None:
        return True
    if not case.meta.generation.mode.is_positive:
        body = case.meta.components.get(ParameterLocation.BODY)
        return not (body is not None and body.mode.is_negative and case.media_type in PDF_TYPES)
    staged = case.operation.path.endswith("/vault-in-upload") and case.media_type == "application/json"
    # A transfer needs a second organisation of the vault, which this one-tenant run has none of: a valid
    # initiation can only be refused (tests/test_transfers.py covers the flow).
    transfer = case.operation.path.endswith("/transfers") and case.method == "POST"
    # Every PDF body here is signed: staging one on an e-sign envelope is the client's mistake (400
    # Ceremony.DocumentSigned), not a schema-valid request (tests/test_ceremony*.py stage unsigned ones).
    to_sign = case.operation.path.endswith("/upload") and (case.path_parameters or {}).get("envelope_id") in ESIGN
    return not (case.meta.phase.name == "stateful" and staged) and not transfer and not to_sign


@schemathesis.hook
def map_case(ctx: object, case: Any) -> Any:
    """Positive cases obey the rules the schema cannot state (see the module docstring)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    if case.headers and "If-Match" in case.headers:
        case.headers["If-Match"] = "*"
    if case.headers and "Idempotency-Key" in case.headers:  # a fresh key per request, as clients make them
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    if case.meta.phase.name == "stateful":
        _walk_the_flow(case)
    _documents(case, signed=case.operation.path.endswith("/vault-in-signed"))
    _query(case)
    _json_body(case)
    return case
