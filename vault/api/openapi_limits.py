"""What the server enforces on request fields, stated in the OpenAPI document from the same constants.

A client generator or a fuzzer reads only the document, so a limit the code enforces and the document leaves out
turns a valid-looking request into a 400 nobody expected. Two kinds of rules are added here:

- **general ones**, for every request model of every route: a free-form JSON object (``dict[str, Any]``) holds
  :data:`JSON_VALUE` values (the bounds of :func:`vault.field_limits.check_json`: numbers within +-2**53,
  strings and keys without control or bidi characters); a route added later gets them without an entry here;
- **per field**: :data:`FIELD_RULES` names each field's length, pattern, format or enum, keyed by request model.

What JSON Schema cannot say (a date in the future, a cursor only the server issues, a hash that must match the
body, ``first <= second``) is in each field's description; docs/api-contract.md lists them.
"""

from __future__ import annotations

import copy
from typing import Any

from vault.ceremony.signing import MAX_REASON as MAX_DECLINE_REASON
from vault.ceremony.signing import SIGNATURE_TYPES
from vault.field_limits import (
    LINE_PATTERN,
    MAX_EXTERNAL_ID,
    MAX_FILENAME_INPUT,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_PARTIES,
    MAX_PARTY_BYTES,
    MAX_PARTY_DEPTH,
    MAX_PARTY_FIELD,
    MAX_SAFE_INTEGER,
    MAX_TEXT,
    MAX_TITLE,
    NOT_BLANK_LINE_PATTERN,
    TEXT_PATTERN,
)
from vault.paper_in import MAX_LOCATION, ORIGINAL
from vault.retention import MAX_REASON as MAX_HOLD_REASON
from vault.transfers import TYPES as TRANSFER_TYPES
from vault.void import MAX_REASON as MAX_VOID_REASON
from vault.webhooks.signing import SCHEMES
from vault.webhooks.targets import MAX_URL

JSON_VALUE = "JsonValue"
JSON_VALUE_LEVELS = 6
_JSON_REF = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
_KEYS = {"pattern": TEXT_PATTERN, "maxLength": MAX_TEXT}


def json_value() -> dict[str, Any]:
    """Any JSON value the vault keeps for good (in a database row and a ledger entry)."""
    value = _bounded_json(JSON_VALUE_LEVELS, open_end=True)
    value["description"] = (
        "Any JSON value, kept for good: numbers strictly within +-2**53; strings and keys without control "
        "characters (tab and line breaks allowed), bidi controls, U+2028/2029 or lone surrogates; keys of at "
        f"most {MAX_TEXT} characters. Metadata nests at most {MAX_METADATA_DEPTH} levels and encodes (RFC 8785) "
        f"to at most {MAX_METADATA_BYTES} bytes; a party or transferee at most 4 levels and "
        f"{MAX_PARTY_BYTES} bytes. (The schema spells out the first {JSON_VALUE_LEVELS} levels.)"
    )
    return value


def _bounded_json(levels: int, *, open_end: bool = False) -> dict[str, Any]:
    """A JSON value nesting at most ``levels`` levels (a party or transferee nests at most 4 in all); with
    ``open_end``, what lies deeper is any JSON (metadata's 16 levels, written without recursion, which client
    generators cannot follow). No ``type``: each keyword binds its own type, and generators read it as any JSON."""
    if levels < 1:
        return {}
    value: dict[str, Any] = {
        "exclusiveMinimum": -MAX_SAFE_INTEGER,
        "exclusiveMaximum": MAX_SAFE_INTEGER,
        "pattern": TEXT_PATTERN,
        "propertyNames": _KEYS,
    }
    if levels > 1 or open_end:
        inner = _bounded_json(levels - 1, open_end=open_end)
        value.update(items=inner, additionalProperties=inner)
    else:  # the deepest level: containers, if any, are empty
        value.update(maxItems=0, maxProperties=0)
    return value


def _line(limit: int, *, not_blank: bool = False) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit, "pattern": NOT_BLANK_LINE_PATTERN if not_blank else LINE_PATTERN}


def _free_object(levels: int | None = None, **properties: dict[str, Any]) -> dict[str, Any]:
    """An object of named ``properties`` and other JSON values. Beside named properties the others stay any JSON
    in the schema (a typed one makes openapi-typescript's index signature clash with the named ones); their
    bounds are in the description (at most ``levels`` levels in all)."""
    if not properties:
        return {"type": "object", "additionalProperties": _JSON_REF, "propertyNames": _KEYS}
    bounds = f"; nesting at most {levels} levels" if levels is not None else ""
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": {"description": f"any JSON value as JsonValue describes{bounds}"},
        "propertyNames": _KEYS,
    }


def _party() -> dict[str, Any]:
    party = _free_object(
        MAX_PARTY_DEPTH,
        name=_line(MAX_PARTY_FIELD, not_blank=True),
        email=_line(MAX_PARTY_FIELD),
        role=_line(MAX_PARTY_FIELD),
    )
    party["required"] = ["name"]
    return party


# An identifier the vault issued (env_..., rcp_...): as storage/keys.py checks them.
_IDENTIFIER = {"type": "string", "pattern": "^[a-z]{2,4}_[A-Za-z0-9]{8,40}$"}

# The secret of a v1 webhook: whsec_ and the standard base64 (padded) of 24 to 64 bytes.
_B64 = "[A-Za-z0-9+/]"
_BASE64 = f"(?:{_B64}{{4}})*(?:{_B64}{{2}}==|{_B64}{{3}}=)?"  # standard, padded base64 of any length
WEBHOOK_SECRET = rf"^whsec_(?:(?:{_B64}{{4}}){{8,21}}(?:{_B64}{{2}}==)?|(?:{_B64}{{4}}){{8,20}}{_B64}{{3}}=)$"

# Per request model (its component name), per field: what the document adds to the field's schema.
FIELD_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "NewEnvelope": {
        "title": _line(MAX_TITLE, not_blank=True),
        "external_id": _line(MAX_EXTERNAL_ID, not_blank=True),
        "parties": {"type": "array", "maxItems": MAX_PARTIES, "items": _party()},
        "secured_party": _party(),
        "metadata": {**_free_object(), "description": "your own JSON object, kept with the envelope"},
        "expires_at": {"description": "a future date-time with its UTC offset"},
        "min": {
            "type": "string",
            "pattern": "^[0-9]{18}$",
            "description": "a MERS MIN: the organisation's 7-digit Org ID, a 10-digit sequence and a Mod 10 Weight 2 "
            "check digit; never used before in this vault",
        },
    },
    "VoidIn": {
        # Trimmed, 1-500 characters, no NUL (vault/void.py).
        "reason": {"minLength": 1, "maxLength": MAX_VOID_REASON, "pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"},
    },
    "VaultOutIn": {
        "transferee": {
            **_free_object(MAX_PARTY_DEPTH, vault_id=_line(MAX_EXTERNAL_ID)),
            "description": "the receiving vault",
        },
        "note": {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN},
    },
    "RetentionIn": {
        "retain_until": {
            "format": "date-time",
            "description": "RFC 3339 with its offset, later than the current retention and at most 100 years away",
        },
    },
    "LegalHoldIn": {"reason": _line(MAX_HOLD_REASON, not_blank=True)},
    "EmbedTokenRequest": {"envelope_id": _IDENTIFIER, "recipient_id": _IDENTIFIER},
    "TransferIn": {
        "to_organisation": _IDENTIFIER,
        "type": {"type": "string", "enum": list(TRANSFER_TYPES)},
        "note": {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN},
        "expires_at": {"description": "a future date-time with its UTC offset"},
    },
    "RejectIn": {"reason": {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN}},
    "SignatureIn": {
        "type": {"type": "string", "enum": list(SIGNATURE_TYPES)},
        "name": _line(MAX_PARTY_FIELD, not_blank=True),
        "image": {
            "type": "string",
            "pattern": rf"^data:image/png;base64,{_BASE64}$",
            "description": "drawn only: an 8-bit, non-interlaced PNG as a canvas gives it, at most 256 KiB",
        },
    },
    "DeclineIn": {"reason": _line(MAX_DECLINE_REASON, not_blank=True)},
    "AccessCodeIn": {"code": {"type": "string", "pattern": "^[0-9]{6}$", "description": "the image's six digits"}},
    "CountersignIn": {
        "key_id": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "signature": {"type": "string", "maxLength": 100, "pattern": f"^{_BASE64}$"},
    },
    "Attestation": {
        "original": {"type": "string", "enum": list(ORIGINAL)},
        "attested_by": _line(MAX_PARTY_FIELD, not_blank=True),
        "location": _line(MAX_LOCATION),
        "at": {"description": "a date-time with its UTC offset, not in the future"},
    },
    "WebhookChange": {
        "url": {
            "type": "string",
            "format": "uri",
            "maxLength": MAX_URL,
            "pattern": r"^https?://[^\s]+$",
            "description": "an http(s) URL without credentials or fragment whose host resolves; http only inside "
            "EVAULT_WEBHOOK_ALLOW_NETWORKS",
        },
        "secret": {"type": "string", "pattern": WEBHOOK_SECRET},
        "scheme": {"type": "string", "enum": list(SCHEMES)},
    },
}
# Cross-field rules of a request model, as JSON Schema conditionals.
MODEL_RULES: dict[str, list[dict[str, Any]]] = {
    # Only an e-sign envelope has recipients (400 Recipient.Invalid otherwise).
    "NewEnvelope": [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"not": {"const": "esign"}}}},
            "then": {"properties": {"recipients": {"oneOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}}},
        }
    ],
    # A v1a key is generated by the vault: no secret with it.
    "WebhookChange": [
        {
            "if": {"required": ["scheme"], "properties": {"scheme": {"const": "v1a"}}},
            "then": {"properties": {"secret": {"type": "null"}}},
        }
    ],
}
# Query parameters the server checks, per path (relative to the partner prefix) and name.
QUERY_RULES: dict[str, dict[str, Any]] = {
    "filename": {
        "maxLength": MAX_FILENAME_INPUT,
        "pattern": LINE_PATTERN,
        "description": "the raw body's filename (a multipart part names its own)",
    },
    "cursor": {
        "minLength": 1,
        "pattern": "^[A-Za-z0-9_-]+$",
        "description": "the next_cursor of the previous page, as given (only the server issues cursors)",
    },
}


def _free_form(schema: dict[str, Any]) -> bool:
    extra = schema.get("additionalProperties")
    return schema.get("type") == "object" and (extra == {} or extra is True) and not schema.get("properties")


def _bound_free_json(schema: Any) -> None:
    """Every free-form object under ``schema`` holds JSON values the vault can keep."""
    if isinstance(schema, dict):
        if _free_form(schema):
            schema["additionalProperties"] = _JSON_REF
            schema["propertyNames"] = _KEYS
        for value in schema.values():
            _bound_free_json(value)
    elif isinstance(schema, list):
        for item in schema:
            _bound_free_json(item)


def _apply(field: dict[str, Any], rule: dict[str, Any]) -> None:
    """The rule goes on the non-null branch of an optional field, or on the field itself (a copy: the rules
    are shared by every app the process builds)."""
    target = next((branch for branch in field.get("oneOf", []) if branch.get("type") != "null"), field)
    target.update(copy.deepcopy(rule))


def amendment_data() -> dict[str, Any]:
    """An amendment's ``data``: a JSON object the vault keeps for good (in its ledger entry)."""
    data = _free_object()
    data["description"] = "the amendment's terms, a JSON object kept in the ledger entry"
    return data


def vault_in_metadata() -> dict[str, Any]:
    """The multipart ``metadata`` part of a vault-in: a JSON object, with the two keys the vault reads."""
    metadata = _free_object(
        secured_party=_party(),
        retain_until={"type": "string", "format": "date-time", "description": "a longer retention than the default"},
    )
    metadata["description"] = "vault-in metadata as a JSON object (e.g. the secured party)"
    return metadata


def state_request_limits(models: dict[str, Any], request_models: set[str]) -> None:
    """Add every rule above to the request models."""
    if not request_models & models.keys():
        return
    models[JSON_VALUE] = json_value()
    # A model nested in a request body (a sign request's signature) takes its rules as well.
    for name in (request_models | FIELD_RULES.keys()) & models.keys():
        model = models[name]
        for field_name, rule in FIELD_RULES.get(name, {}).items():
            if field_name in model.get("properties", {}):
                _apply(model["properties"][field_name], rule)
        if name in MODEL_RULES:
            model.setdefault("allOf", []).extend(MODEL_RULES[name])
        _bound_free_json(model)


def state_query_limits(operation: dict[str, Any]) -> None:
    for param in operation.get("parameters", []):
        rule = QUERY_RULES.get(param.get("name", "")) if param.get("in") == "query" else None
        if rule is not None:
            _non_null_update(param, rule)


def _non_null_update(param: dict[str, Any], rule: dict[str, Any]) -> None:
    description = rule.get("description")
    if description:
        param["description"] = description
    constraint = {key: value for key, value in rule.items() if key != "description"}
    for branch in param["schema"].get("oneOf", []):
        if branch.get("type") != "null":
            branch.update(constraint)
            return
    param["schema"].update(constraint)
