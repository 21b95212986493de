"""No downgrade: a certificate whose bundle was cut, stripped of its head map and relabelled v1 is refused by
``evault cert verify`` even when the vault's own key signs it (``evault log verify`` is in test_ledger.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from compliance.certificates.issuance import sign_certificate
from tests.helpers import API
from tests.test_certificate import _cert_verify, _certificate, _public_pem, _vaulted_with_copy
from vault.runtime import Runtime


def test_cert_verify_refuses_a_downgraded_bundle_even_when_signed(
    client: Any, runtime: Runtime, tenant: Any, tmp_path: Path
) -> None:
    _, headers = tenant
    envelope_id = _vaulted_with_copy(client, headers)
    released = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert released.status_code == 200, released.text
    document = _certificate(client, headers, envelope_id)
    body = copy.deepcopy(document["certificate"])
    bundle = body["ledger"]["bundle"]
    assert bundle["format"] == "evault-proof-bundle/v2" and body["vault_out"] is not None
    bundle["events"].pop()  # vault.released cut off
    del bundle["map"]
    bundle["format"] = "evault-proof-bundle/v1"
    body["vault_out"] = None
    last = bundle["events"][-1]
    body["ledger"]["chain_head"] = {**body["ledger"]["chain_head"], "seq": len(bundle["events"]) - 1}
    body["ledger"]["chain_head"]["leaf_index"] = last["leaf_index"]
    pem = _public_pem(client)
    assert _cert_verify(tmp_path, document, pem).returncode == 0  # the honest one verifies
    done = _cert_verify(tmp_path, sign_certificate(body, runtime.key), pem)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Certificate.Inconsistent" in done.stderr and "completeness is not proven" in done.stderr
