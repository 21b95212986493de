"""Countersigned transfer receipts: each party registers an Ed25519 key and countersigns the receipt's statement;
every receipt then carries both countersignatures, which the offline check verifies (docs/receipts.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator
from sqlmodel import col, select

from compliance.certificates.issuance import key_id_of
from compliance.errors import EvaultError
from compliance.receipts.offline_check import verify_receipt
from storage.models import Event
from tests.helpers import API, create_envelope, together, upload
from tests.pdf_factory import make_pdf
from vault.runtime import Runtime


def _pem(client: Any) -> bytes:
    keys = client.get("/.well-known/evault/keys").json()["keys"]
    return str(next(k["pem"] for k in keys if k["use"] == "checkpoint")).encode()


def _completed(client: Any, giver: dict[str, str], receiver: str, receiver_headers: dict[str, str]) -> str:
    envelope_id = create_envelope(client, giver)
    assert upload(client, giver, envelope_id, make_pdf(pages=1)).status_code == 201
    offer = {"to_organisation": receiver, "type": "control"}
    transfer = client.post(f"{API}/envelopes/{envelope_id}/transfers", json=offer, headers=giver)
    assert transfer.status_code == 201, transfer.text
    transfer_id: str = transfer.json()["id"]
    assert client.post(f"{API}/transfers/{transfer_id}/accept", json={}, headers=receiver_headers).status_code == 200
    return transfer_id


def _statement(receipt: dict[str, Any]) -> bytes:
    """As docs/receipts.md tells a party to compute it from any issue of the receipt."""
    body = receipt["receipt"]
    shown = {"format": "evault-receipt-statement/v1", "kind": body["kind"], "envelope_id": body["envelope_id"]}
    return rfc8785.dumps({**shown, "fields": body["fields"]})


def _registered(evault: Callable[..., tuple[int, str, str]], tmp_path: Path, org_id: str) -> tuple[Any, str]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / f"{org_id}.pem"
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    code, out, err = evault("org", "add-signing-key", "--org", org_id, str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["key_id"] == key_id_of(key.public_key())
    return key, key_id_of(key.public_key())


def _sign(client: Any, headers: dict[str, str], transfer_id: str, key_id: str, signature: bytes) -> Any:
    body = {"key_id": key_id, "signature": base64.b64encode(signature).decode()}
    return client.post(f"{API}/transfers/{transfer_id}/countersign", json=body, headers=headers)


def test_both_parties_countersign_and_the_receipt_carries_it(
    client: Any, runtime: Runtime, make_key: Any, evault: Any, tmp_path: Path
) -> None:
    (a, a_raw), (b, b_raw), (_, c_raw) = make_key(), make_key(), make_key()
    ah, bh, ch = ({"X-API-Key": raw} for raw in (a_raw, b_raw, c_raw))
    a_key, a_id = _registered(evault, tmp_path, a)
    b_key, b_id = _registered(evault, tmp_path, b)
    code, _, err = evault("org", "add-signing-key", "--org", b, str(tmp_path / f"{b}.pem"))
    assert code == 1 and "Org.SigningKeyExists" in err

    envelope_id = create_envelope(client, ah)
    assert upload(client, ah, envelope_id, make_pdf(pages=1)).status_code == 201
    open_offer = client.post(
        f"{API}/envelopes/{envelope_id}/transfers", json={"to_organisation": b, "type": "control"}, headers=ah
    ).json()["id"]
    pending = _sign(client, ah, open_offer, a_id, a_key.sign(b"anything"))
    assert (pending.status_code, pending.json()["code"]) == (409, "Receipt.NotCompleted")

    transfer_id = _completed(client, ah, b, bh)
    receipt = client.get(f"{API}/transfers/{transfer_id}/receipt", headers=ah).json()
    data = _statement(receipt)
    refusals = [
        (_sign(client, ch, transfer_id, a_id, a_key.sign(data)), (404, "Transfer.NotFound")),
        (_sign(client, ah, transfer_id, b_id, b_key.sign(data)), (400, "Countersign.UnknownKey")),
        (_sign(client, ah, transfer_id, a_id, b_key.sign(data)), (400, "Countersign.BadSignature")),
        (_sign(client, ah, transfer_id, a_id, a_key.sign(data + b" ")), (400, "Countersign.BadSignature")),
    ]
    for malformed in ("\u0084", "not base64!", "QQ"):  # outside ASCII, outside the alphabet, unpadded
        body = {"key_id": a_id, "signature": malformed}
        answer = client.post(f"{API}/transfers/{transfer_id}/countersign", json=body, headers=ah)
        refusals.append((answer, (400, "Countersign.Invalid")))
    for response, expected in refusals:
        assert (response.status_code, response.json()["code"]) == expected, response.text
    signed = _sign(client, ah, transfer_id, a_id, a_key.sign(data))
    assert signed.status_code == 201, signed.text
    assert signed.json()["org_id"] == a and signed.json()["key_id"] == a_id
    document = client.get("/api/v2/openapi.json").json()
    operation = document["paths"][f"{API}/transfers/{{transfer_id}}/countersign"]["post"]
    schema = operation["responses"]["201"]["content"]["application/json"]["schema"]
    errors = list(Draft202012Validator({**schema, "components": document["components"]}).iter_errors(signed.json()))
    assert errors == [] and operation["operationId"] == "countersignTransferReceipt"
    again = _sign(client, ah, transfer_id, a_id, a_key.sign(data))
    assert (again.status_code, again.json()["code"]) == (409, "Countersign.AlreadySigned")
    assert _sign(client, bh, transfer_id, b_id, b_key.sign(data)).status_code == 201

    later = client.get(f"{API}/transfers/{transfer_id}/receipt", headers=bh).json()
    assert _statement(later) == data  # a new issue, the same statement
    verified = verify_receipt(json.dumps(later), _pem(client))
    assert verified.countersigned_by == tuple(sorted([a, b]))
    (tmp_path / "receipt.json").write_text(json.dumps(later))
    (tmp_path / "vault.pem").write_bytes(_pem(client))
    code, out, err = evault(
        "receipt", "verify", str(tmp_path / "receipt.json"), "--public-key", str(tmp_path / "vault.pem")
    )
    assert code == 0, err
    assert f"countersigned by {a}" in out and f"countersigned by {b}" in out

    with runtime.db.read_session() as session:
        rows = session.exec(select(Event).where(col(Event.org_id).in_([a, b])).order_by(col(Event.id)))
        logged = [
            (e.org_id, e.event_type) for e in rows if e.event_type.startswith(("org.signing", "transfer.counter"))
        ]
    assert logged == [
        (a, "org.signing_key_added"),
        (b, "org.signing_key_added"),
        (a, "transfer.countersigned"),
        (b, "transfer.countersigned"),
    ]

    # A vault that alters a countersignature, or adds one by a stranger, and signs the receipt again is caught.
    for change in ("value", "stranger"):
        forged = json.loads(json.dumps(later))
        item = forged["receipt"]["countersignatures"][0]
        if change == "value":
            item["value"] = base64.b64encode(a_key.sign(data + b"x")).decode()
        else:
            item["org_id"] = "org_" + "z" * 20
        value = runtime.key.sign(rfc8785.dumps(forged["receipt"]))
        forged["signature"]["value"] = base64.b64encode(value).decode()
        try:
            verify_receipt(json.dumps(forged), _pem(client))
        except EvaultError as exc:
            assert exc.code == "Receipt.BadCountersignature", change
        else:
            raise AssertionError(f"a forged countersignature ({change}) verified")


def test_two_countersignatures_of_one_party_at_once_have_one_winner(
    client: Any, make_key: Any, evault: Any, tmp_path: Path
) -> None:
    (_, a_raw), (b, b_raw) = make_key(), make_key()
    ah, bh = {"X-API-Key": a_raw}, {"X-API-Key": b_raw}
    key, key_id = _registered(evault, tmp_path, b)
    for _ in range(3):
        transfer_id = _completed(client, ah, b, bh)
        data = _statement(client.get(f"{API}/transfers/{transfer_id}/receipt", headers=bh).json())
        answers = together(
            lambda t=transfer_id, d=data: _sign(client, bh, t, key_id, key.sign(d)),
            lambda t=transfer_id, d=data: _sign(client, bh, t, key_id, key.sign(d)),
        )
        assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
        receipt = client.get(f"{API}/transfers/{transfer_id}/receipt", headers=ah).json()
        assert [c["org_id"] for c in receipt["receipt"]["countersignatures"]] == [b]
