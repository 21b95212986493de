"""What each kind of receipt must attest: the events it rests on (by role) and the fields bound to them.

A receipt of a declared kind that lacks one of these is refused by the offline check, so a receipt cannot
drop the part of the evidence that makes it worth having. A new kind (a transfer's, say) is one more entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReceiptKind:
    name: str
    roles: frozenset[str]  # the attested events, each exactly once
    bound: frozenset[str]  # fields whose values must be read from an attested entry (``bindings``)


RELEASE = ReceiptKind(
    "release",
    frozenset({"vault_in", "release"}),
    frozenset(
        {
            "organisation",
            "released_at",
            "released_by",
            "reason",
            "transferee",
            "note",
            "authoritative_copy_id",
            "vaulted_at",
            "documents",
        }
    ),
)

KINDS: dict[str, ReceiptKind] = {kind.name: kind for kind in (RELEASE,)}
