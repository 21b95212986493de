"""Small request helpers shared by the API tests."""

from __future__ import annotations

import hashlib
import socket
import uuid
from typing import Any

API = "/api/v2/partner"


def create_envelope(client: Any, headers: dict[str, str], kind: str = "paper", **extra: Any) -> str:
    body = {
        "kind": kind,
        "title": "Loan 1001",
        "external_id": f"loan-{uuid.uuid4().hex[:12]}",
        "parties": [{"name": "Ada Borrower", "email": "ada@example.com"}],
        "secured_party": {"name": "First Bank", "id": "bank-1"},
        **extra,
    }
    response = client.post(f"{API}/envelopes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    envelope_id: str = response.json()["id"]
    return envelope_id


def upload(
    client: Any,
    headers: dict[str, str],
    envelope_id: str,
    data: bytes,
    *,
    flow: str = "upload",
    sha256: str | None = None,
) -> Any:
    extra = {"Content-Type": "application/pdf", "X-Content-SHA256": sha256 or hashlib.sha256(data).hexdigest()}
    return client.post(f"{API}/envelopes/{envelope_id}/vault-in-{flow}", content=data, headers={**headers, **extra})


def free_port(first: int, last: int) -> int:
    """A loopback port in [first, last) that nothing listens on now (tests keep to their own ranges)."""
    for port in range(first, last):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last - 1}")
