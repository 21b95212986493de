"""Import claims as the log states them: an ``envelope_import`` row is what its ``envelope.imported`` entry says.

``evault import`` records the claim and appends the entry in one transaction (docs/vault-transfer.md), and the
entry names everything the row holds but the moment it was claimed: the envelope it became, the receiving
organisation (the log the entry is in), the origin's log, envelope, release leaf index, signing key and release
receipt hash (``data.origin``), the lock date (``data.retain_until``) and when it was recorded (its time). A row
edited or planted in SQL would make the vault refuse, or let through, a later import of some release: so the
row is re-derived from the entry, and a difference is a finding, not a new truth. ``Import.Unlogged``: a
recorded claim that no entry records, or a claim naming an envelope whose chain has no ``envelope.imported``;
``Import.Edited``: a row whose fields differ from its entry; ``Import.Deleted``: an entry with no row. A claim
not yet recorded and naming no envelope is an import in flight (or one that died before its record, which the
next import of the same package takes over): it has no entry by design and is no finding here (older than the
grace period, the verifier's objects pass names it ``Import.ClaimUnfinished``: compliance/verifier/claims.py).
"""

from __future__ import annotations

from typing import Any

from compliance.conditions.projection import Mismatch, Projection, changed_pairs
from storage.ids import iso
from storage.models import EnvelopeImport


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def logged_import(imported: dict[str, Any]) -> dict[str, Any]:
    """The claim row an ``envelope.imported`` entry (as :class:`Projection` keeps it) implies, field by field."""
    data = _mapping(imported.get("data"))
    origin = _mapping(data.get("origin"))
    release = _mapping(origin.get("release"))
    return {
        "org_id": imported.get("log"),
        "origin_log": origin.get("log_origin"),
        "origin_envelope_id": origin.get("envelope_id"),
        "release_leaf_index": release.get("leaf_index"),
        "origin_key_id": origin.get("key_id"),
        "release_receipt_sha256": origin.get("release_receipt_sha256"),
        "retain_until": data.get("retain_until"),
        "recorded_at": imported.get("time"),
    }


def claim_fields(row: EnvelopeImport) -> dict[str, Any]:
    """The same fields as the row holds them, dates in the log's notation."""
    return {
        "org_id": row.org_id,
        "origin_log": row.origin_log,
        "origin_envelope_id": row.origin_envelope_id,
        "release_leaf_index": row.release_leaf_index,
        "origin_key_id": row.origin_key_id,
        "release_receipt_sha256": row.release_receipt_sha256,
        "retain_until": iso(row.retain_until),
        "recorded_at": iso(row.recorded_at) if row.recorded_at is not None else None,
    }


def compare_import(chain: Projection, row: EnvelopeImport | None) -> list[Mismatch]:
    """The envelope's claim row against its chain's ``envelope.imported`` entry (either may be missing)."""
    if row is None:
        if chain.imported is None:
            return []
        where = {"org_id": chain.imported.get("log"), "envelope_id": chain.envelope_id}
        return [Mismatch("Import.Deleted", "the chain records an import but no import claim row exists", where)]
    return unsupported_claim(row) if chain.imported is None else _edited(row, chain.imported)


def unsupported_claim(row: EnvelopeImport) -> list[Mismatch]:
    """A claim with no ``envelope.imported`` entry: a finding once recorded (or naming an existing envelope)."""
    where = {
        "org_id": row.org_id,
        "envelope_id": row.envelope_id,
        "origin_log": row.origin_log,
        "release_leaf_index": row.release_leaf_index,
    }
    return [Mismatch("Import.Unlogged", "an import claim row that no envelope.imported entry records", where)]


def _edited(row: EnvelopeImport, imported: dict[str, Any]) -> list[Mismatch]:
    logged, held = logged_import(imported), claim_fields(row)
    changed = changed_pairs({name: (value, logged[name]) for name, value in held.items()})
    if not changed:
        return []
    where = {"org_id": row.org_id, "envelope_id": row.envelope_id, "changed": changed}
    return [Mismatch("Import.Edited", f"the import claim row differs from its entry in {sorted(changed)}", where)]
