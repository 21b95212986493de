"""Generated clients name their methods after operationIds: each is readable, short, unique and grouped by a tag."""

from __future__ import annotations

import re
from typing import Any

CAMEL = re.compile(r"[a-z][A-Za-z0-9]{2,39}")
OPERATIONS = ("get", "post", "put", "patch", "delete")


def test_every_operation_has_a_readable_unique_id_and_a_tag(client: Any) -> None:
    document = client.get("/api/v2/openapi.json").json()
    seen: dict[str, str] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in OPERATIONS:
                continue
            name = operation.get("operationId", "")
            where = f"{method.upper()} {path}"
            assert CAMEL.fullmatch(name), f"{where}: {name!r} is not a camelCase id of at most 40 characters"
            assert name not in seen, f"{where} and {seen.get(name)} share {name!r}"
            seen[name] = where
            assert operation.get("tags"), f"{where} has no tag"
    assert {"createEnvelope", "vaultInUpload", "getCertificate", "listEnvelopes"} <= seen.keys()
