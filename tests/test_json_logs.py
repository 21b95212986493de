"""A real ``evault serve`` with JSON logs, walked through by a client: the log parses and keeps no secrets.

The service runs as operators run it (its own process, the session's S3 store with fresh buckets, the database
under test), with ``EVAULT_LOG_FORMAT=json`` and ``/metrics`` on a port of its own. After a walk-through
(a bootstrap key, an envelope with named parties, a vault-in, copies, URLs, a certificate, a refused key), the
whole log is searched for every key, URL signature, secret, name and email address the run used: none may
appear. Every line is one JSON object, and every request's line names its ids, caller, route, status and time.
The metrics port answers with the run's counts, summed from the multiprocess directory under the data dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.helpers import API, bootstrap_key
from tests.metrics_scrape import route_value, samples, value
from tests.pdf_factory import make_pdf
from tests.ports import aux_port

ROOT = Path(__file__).resolve().parents[1]
REQUEST_FIELDS = {"time", "level", "request_id", "correlation_id", "org", "key_prefix", "route", "status"}
PARTIES = [
    {"name": "Zelda Quintessa Okonkwo", "email": "zelda.okonkwo@borrower.example"},
    {"name": "Bartholomew Ferreira-Lindqvist", "email": "b.lindqvist@cosigner.example"},
]
SECURED_PARTY = "Ophelia Marchetti Lending Trust"
CORRELATION = "caller-trace-7f3a"
WEBHOOK_TOKEN = "hooktoken-5d81e0c4a9"  # a receiver's credential in its URL, as some receivers take it


def _start(vault_env: dict[str, str], data_dir: Path, log_file: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port = aux_port("json_logs")
    metrics_port = aux_port("json_logs_metrics")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAULT_", "PROMETHEUS_"))}
    env.update(
        vault_env,
        PYTHONPATH=str(ROOT),
        EVAULT_DATA_DIR=str(data_dir),
        EVAULT_PORT=str(port),
        EVAULT_METRICS_PORT=str(metrics_port),
        EVAULT_LOG_FORMAT="json",
        EVAULT_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",  # the receiver below is on loopback (and down)
    )
    with log_file.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vault.cli.main", "serve"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return proc, port, metrics_port


def _wait_for_key(proc: subprocess.Popen[bytes], port: int, log_file: Path) -> str | None:
    """The bootstrap key once the service is ready; None when a port was taken after we chose it (retry)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = log_file.read_text()
            assert "Address already in use" in log, log[-3000:]
            return None
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        keys = [k for k in map(bootstrap_key, log_file.read_text().splitlines()) if k]
        if ready and keys:
            return keys[0]
        time.sleep(0.5)
    raise AssertionError("evault serve did not become ready: " + log_file.read_text()[-3000:])


Started = tuple[subprocess.Popen[bytes], int, int, str]


def _started(vault_env: dict[str, str], data_dir: Path, log_file: Path) -> Started:
    """A running service and its bootstrap key; a port some other process took meanwhile is chosen again."""
    for _ in range(3):
        proc, port, metrics_port = _start(vault_env, data_dir, log_file)
        raw_key = _wait_for_key(proc, port, log_file)
        if raw_key is not None:
            return proc, port, metrics_port, raw_key
    raise AssertionError("no free ports in three tries")


WEBHOOK_URL = f"http://127.0.0.1:{aux_port('closed')}/evault?token={WEBHOOK_TOKEN}"


def _walk_through(base: str, raw_key: str) -> tuple[str, list[str]]:
    """Configure a webhook; create, vault, copy, retrieve and certify one envelope; return the envelope's id and
    the secrets seen (the webhook's signing secret and the URL signatures)."""
    headers = {"X-API-Key": raw_key, "X-Request-Id": CORRELATION}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        hook = client.patch(f"{API}/webhook", json={"url": WEBHOOK_URL})
        assert hook.status_code == 200, hook.text
        webhook_secret = hook.json()["secret"]
        created = client.post(
            f"{API}/envelopes",
            json={"kind": "paper", "title": "Loan 4471", "parties": PARTIES, "secured_party": {"name": SECURED_PARTY}},
        )
        assert created.status_code == 201, created.text
        envelope_id: str = created.json()["id"]
        pdf = make_pdf(pages=2)
        vaulted = client.post(
            f"{API}/envelopes/{envelope_id}/vault-in-upload",
            content=pdf,
            headers={"Content-Type": "application/pdf", "X-Content-SHA256": hashlib.sha256(pdf).hexdigest()},
        )
        assert vaulted.status_code == 201, vaulted.text
        urls = [d["url"] for d in client.get(f"{API}/envelopes/{envelope_id}/vault/signed-url").json()["documents"]]
        copy = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url")
        assert copy.status_code == 200, copy.text
        urls += [c["url"] for c in copy.json()["copies"]]
        certificate = client.get(f"{API}/envelopes/{envelope_id}/vault/certificate")
        assert certificate.status_code == 200, certificate.text
        refused = client.get(f"{API}/envelopes", headers={"X-API-Key": "evk_thisisnotakey0123456789abcdef"})
        assert refused.status_code == 401
        deadline = time.monotonic() + 30  # the sender has tried the (down) receiver at least once
        while not any(d["attempt_count"] for d in client.get(f"{API}/webhook/deliveries").json()["items"]):
            assert time.monotonic() < deadline, "no webhook delivery was attempted"
            time.sleep(0.5)
    signatures = [parse_qs(urlsplit(url).query)["X-Amz-Signature"][0] for url in urls]
    assert len(signatures) == 2 and webhook_secret.startswith("whsec_")
    return envelope_id, [webhook_secret, webhook_secret.removeprefix("whsec_"), *signatures]


def test_json_log_of_a_real_run_keeps_no_secrets_and_every_request_line_parses(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir, log_file = tmp_path / "vault", tmp_path / "serve.log"
    proc, port, metrics_port, raw_key = _started(vault_env, data_dir, log_file)
    try:
        envelope_id, signatures = _walk_through(f"http://127.0.0.1:{port}", raw_key)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404  # only on its own port
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
        assert scrape.status_code == 200
        found = samples(scrape.text)
        # Multiprocess mode, under the data dir: files of the serving process only. The copy's stamper processes
        # (one per copy) never import the library, so they leave no files behind to pile up.
        files = list((data_dir / "prometheus").glob("*.db"))
        assert files and {f.stem.rsplit("_", 1)[1] for f in files} == {str(proc.pid)}, files
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = log_file.read_text()
    assert code == 0, log[-3000:]

    assert value(found, "evault_vault_ins_total") == 1
    assert value(found, "evault_copies_issued_total") == 1
    assert route_value(found, "evault_http_requests_total", "/envelopes", method="POST", status="201") == 1
    assert route_value(found, "evault_http_requests_total", "/envelopes", method="GET", status="401") == 1

    secrets = [raw_key, "evk_thisisnotakey0123456789abcdef", *signatures, vault_env["EVAULT_S3_SECRET_KEY"]]
    secrets.append(WEBHOOK_TOKEN)
    personal = [SECURED_PARTY, *(p["name"] for p in PARTIES), *(p["email"] for p in PARTIES)]
    for needle in secrets + personal + [n.split()[0] for n in personal if "@" not in n]:
        assert needle not in log, f"the log contains {needle!r}"
    assert "%PDF" not in log

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON object
    requests = [line for line in lines if line["logger"] == "evault.request"]
    for line in requests:
        assert REQUEST_FIELDS <= line.keys() and isinstance(line["duration_ms"], float), line
        assert "{" in line["route"] or envelope_id not in line["route"], line
    created = [r for r in requests if r["route"] == f"{API}/envelopes" and r["status"] == 201]
    assert len(created) == 1
    (line,) = created
    assert line["correlation_id"] == CORRELATION and line["request_id"].startswith("req_")
    assert line["org"].startswith("org_") and raw_key.startswith(line["key_prefix"]) and line["level"] == "INFO"
    assert any("key is in" in line["message"] for line in lines)  # the bootstrap key's file is named, not the key
    assert envelope_id not in " ".join(r["route"] for r in requests)
