"""Every string a request body names states the characters it may hold.

The server refuses control, bidirectional-formatting and line-separator characters in every text it keeps
(400 ``Request.InvalidCharacter``), so a string field with no pattern, enum or format lets a generated client,
or schemathesis, send a schema-valid value the server refuses: the contract test found a transfer rejection's
``reason`` so on 2026-12-05. Free JSON (``metadata``, an amendment's ``data``) is the exception the document
states in words (docs/api-contract.md).
"""

from __future__ import annotations

from typing import Any

OPERATIONS = ("get", "post", "put", "patch", "delete")
STATED = ("pattern", "enum", "const", "format", "contentEncoding", "contentMediaType")


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _unstated(document: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    """The string properties under ``schema`` (through $ref, anyOf/oneOf and arrays) that state nothing."""
    if "$ref" in schema:
        name = schema["$ref"]
        if name in seen:
            return []
        seen = seen | {name}
    schema = _resolve(document, schema)
    found: list[str] = []
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found += _unstated(document, option, where, seen)
    if schema.get("type") == "string" and not any(key in schema for key in STATED):
        found.append(where)
    if isinstance(schema.get("items"), dict):
        found += _unstated(document, schema["items"], f"{where}[]", seen)
    for name, prop in schema.get("properties", {}).items():
        found += _unstated(document, prop, f"{where}.{name}", seen)
    return found


def test_every_string_of_a_json_request_body_states_its_characters(client: Any) -> None:
    document = client.get("/api/v2/openapi.json").json()
    unstated: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in OPERATIONS:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                if media_type == "application/json":
                    unstated += _unstated(document, body["schema"], f"{method.upper()} {path}", set())
    assert unstated == [], "\n".join(unstated)
