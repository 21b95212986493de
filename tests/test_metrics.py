"""``/metrics`` after a scripted walk-through: every count goes up by exactly what was done, on both databases.

The counters are the process's (in memory here: no multiprocess directory in the test process); the gauges are
read from the database at scrape time. ``tests/test_metrics_multiprocess.py`` covers several processes and
``tests/test_json_logs.py`` the real ``evault serve``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import select

from compliance.witness.cosignature import CosignatureSigner
from storage.ids import utcnow
from storage.models import Checkpoint, LogState, VaultClaim, VerifyFinding, VerifyRun, WebhookDelivery
from storage.settings import ObservabilitySettings, Settings, SettingsError
from tests.helpers import API, create_envelope, upload
from tests.metrics_scrape import Samples, route_value, samples, value
from tests.pdf_factory import make_pdf
from tests.ports import aux_port
from vault.metrics.exposition import render, scrape_registry
from vault.metrics.instruments import failure_cause
from vault.runtime import Runtime, open_runtime
from vault.tenancy import create_organisation


def _scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_walkthrough_moves_each_count_by_what_was_done(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    before = _scrape(client)
    pdf = make_pdf(pages=2)
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, pdf).status_code == 201
    for _ in range(2):
        copy = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
        assert copy.status_code == 200, copy.text
    missing = client.get(f"{API}/envelopes/env_missing", headers=headers)
    assert missing.status_code == 404
    released = client.post(f"{API}/envelopes/{envelope_id}/vault-out", json={"reason": "payoff"}, headers=headers)
    assert released.status_code == 200, released.text
    runtime.checkpoints.checkpoint_now(org_id)
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("evault_vault_ins_total") == 1
    assert delta("evault_vaulted_bytes_total") == len(pdf)
    assert delta("evault_copies_issued_total") == 2
    assert delta("evault_releases_total") == 1
    assert delta("evault_ledger_events_total", type="vault.vaulted_in") == 1
    assert delta("evault_ledger_events_total", type="envelope.created") == 1

    def route_delta(name: str, suffix: str, **labels: str) -> float:
        return route_value(after, name, suffix, **labels) - route_value(before, name, suffix, **labels)

    assert route_delta("evault_http_requests_total", "/vault-in-upload", method="POST", status="201") == 1
    assert route_delta("evault_http_requests_total", "/vault/copy/signed-url", method="GET", status="200") == 2
    assert route_delta("evault_http_requests_total", "/vault-out", method="POST", status="200") == 1
    assert route_delta("evault_http_requests_total", "}", method="GET", status="404") == 1  # a template, not the id
    assert route_delta("evault_http_request_duration_seconds_count", "/vault/copy/signed-url", method="GET") == 2
    assert not [key for key in after if "env_missing" in str(key) or envelope_id in str(key)]

    with runtime.db.read_session() as session:
        log_size = session.get(LogState, org_id)
        latest = session.exec(select(Checkpoint).where(Checkpoint.org_id == org_id)).all()
    assert log_size is not None
    assert value(after, "evault_log_size", org=org_id) == log_size.size
    assert value(after, "evault_checkpoint_size", org=org_id) == max(c.size for c in latest) == log_size.size
    assert 0 <= value(after, "evault_checkpoint_age_seconds", org=org_id) < 60
    assert value(after, "evault_checkpoint_interval_seconds") == runtime.settings.vault.checkpoint_interval_seconds
    assert value(after, "evault_metrics_database_up") == 1


def test_an_organisation_without_a_checkpoint_ages_from_its_creation(client: Any, make_key: Any) -> None:
    org_id, _ = make_key()
    found = _scrape(client)
    assert ("evault_checkpoint_age_seconds", frozenset({("org", org_id)})) in found
    assert value(found, "evault_checkpoint_size", org=org_id) == 0
    assert value(found, "evault_log_size", org=org_id) >= 1  # org.created and key.created


def test_open_claims_and_the_last_verifier_run(client: Any, runtime: Runtime, tenant: Any) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    now = utcnow()
    with runtime.db.session() as session:
        session.add(
            VaultClaim(
                envelope_id=envelope_id,
                org_id=org_id,
                claim_id=f"clm_{uuid.uuid4().hex[:12]}",
                digests=[],
                plan={},
                claimed_at=now - timedelta(seconds=120),
                lease_until=now,
            )
        )
        for run_id, ended, findings in (("vr_old", now - timedelta(days=1), 0), ("vr_new", now, 2)):
            session.add(
                VerifyRun(
                    id=run_id,
                    started_at=ended - timedelta(seconds=42),
                    finished_at=ended,
                    status="finished",
                    scope={},
                    code_version="test",
                    counts={},
                    verdict="findings" if findings else "clean",
                )
            )
            session.flush()
            for n in range(findings):
                session.add(
                    VerifyFinding(
                        run_id=run_id,
                        fingerprint=f"{run_id}-{n}",
                        code="Object.Missing",
                        subject={},
                        message="planted",
                        details={},
                        found_at=ended,
                    )
                )
    found = _scrape(client)
    assert value(found, "evault_reconciler_open_claims") == 1
    assert 119 <= value(found, "evault_reconciler_oldest_claim_age_seconds") < 180
    assert value(found, "evault_verifier_last_run_findings") == 2
    assert value(found, "evault_verifier_last_run_duration_seconds") == 42
    assert abs(value(found, "evault_verifier_last_run_timestamp_seconds") - now.timestamp()) < 1


def test_webhook_backlog_counts_pending_deliveries_and_ages_the_oldest(
    client: Any, runtime: Runtime, tenant: Any
) -> None:
    org_id, _ = tenant
    now = utcnow()
    with runtime.db.session() as session:
        for n, (status, age) in enumerate((("pending", 7200), ("pending", 60), ("delivered", 9000), ("failed", 9500))):
            session.add(
                WebhookDelivery(
                    id=f"whd_{n}",
                    org_id=org_id,
                    webhook_id=f"msg_{n}",
                    event_type="vault.vaulted_in",
                    leaf_index=n,
                    body="{}",
                    status=status,
                    next_attempt_at=now if status == "pending" else None,
                    created_at=now - timedelta(seconds=age),
                )
            )
    found = _scrape(client)
    assert value(found, "evault_webhook_backlog") == 2
    assert 7199 <= value(found, "evault_webhook_backlog_oldest_age_seconds") < 7260


def test_a_witness_that_does_not_answer_is_counted_as_a_witness_failure(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    closed = aux_port("closed")  # nothing listens there: the witness is down
    vkey = CosignatureSigner("witness.example", Ed25519PrivateKey.generate()).verifier().vkey
    env = {**vault_env, "EVAULT_WITNESSES": f"http://127.0.0.1:{closed} {vkey}", "EVAULT_CHECKPOINT_INTERVAL": "1"}
    runtime = open_runtime(Settings.from_env(env))
    try:
        with runtime.db.session() as session:
            create_organisation(session, "Witnessed")  # its log grows: a checkpoint is due
        registry = scrape_registry(runtime.db, 1)
        before = value(samples(render(registry).decode()), "evault_checkpoint_failures_total", cause="witness")
        runtime.start_checkpointer()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = value(samples(render(registry).decode()), "evault_checkpoint_failures_total", cause="witness")
            if failed > before:
                break
            time.sleep(0.2)
        assert failed > before
    finally:
        runtime.close()
    assert [failure_cause(code) for code in ("Witness.Refused", "Timestamp.Unavailable", "Database.Unavailable")] == [
        "witness",
        "tsa",
        "other",
    ]


@pytest.mark.once
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVAULT_LOG_FORMAT": "xml"}, "EVAULT_LOG_FORMAT"),
        ({"EVAULT_METRICS_PORT": "8000", "EVAULT_PORT": "8000"}, "EVAULT_METRICS_PORT"),
        ({"EVAULT_METRICS_PORT": "70000"}, "EVAULT_METRICS_PORT"),
    ],
)
def test_a_bad_metrics_or_log_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


@pytest.mark.once
def test_metrics_and_log_settings_load() -> None:
    settings = Settings.from_env({"EVAULT_METRICS_PORT": "9464", "EVAULT_LOG_FORMAT": "JSON"})
    assert (settings.observability.metrics_port, settings.observability.log_format) == (9464, "json")
    assert Settings.from_env({}).observability == ObservabilitySettings(0, "127.0.0.1", "text")


def test_each_answer_is_logged_once_by_its_template_with_its_ids(
    client: Any, tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    org_id, headers = tenant
    caplog.set_level(logging.INFO, logger="evault.request")
    response = client.get(f"{API}/envelopes/env_missing", headers={**headers, "X-Request-Id": "trace-1"})
    assert response.status_code == 404
    (record,) = [r for r in caplog.records if r.name == "evault.request"]
    fields = record.evault  # type: ignore[attr-defined]
    assert fields["request_id"] == response.headers["x-request-id"] == response.json()["request_id"]
    assert (fields["correlation_id"], fields["org"], fields["status"]) == ("trace-1", org_id, 404)
    assert headers["X-API-Key"].startswith(fields["key_prefix"]) and fields["key_prefix"] != headers["X-API-Key"]
    assert fields["route"] == f"{API}/envelopes/{{envelope_id}}" and fields["duration_ms"] >= 0
    message = record.getMessage()
    assert message.startswith(f"GET {API}/envelopes/{{envelope_id}} 404 ") and fields["request_id"] in message
    assert "env_missing" not in message
