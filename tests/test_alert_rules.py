"""The example alert file is valid Prometheus, fires when it should (promtool's rule unit tests), and reads only
metrics the service exports, each documented in docs/operations-metrics.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vault.metrics.instruments import PROCESS

pytestmark = pytest.mark.once  # no database involved

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docker" / "prometheus" / "evault-alerts.yaml"
RULE_TESTS = ROOT / "docker" / "prometheus" / "evault-alerts.test.yaml"
CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yaml"
DOC = ROOT / "docs" / "operations-metrics.md"


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test.sh installs it (Debian package prometheus)"
    done = subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_rules_and_the_example_configuration() -> None:
    assert "SUCCESS: 6 rules found" in _promtool("check", "rules", str(RULES))
    _promtool("check", "config", str(CONFIG))


def test_the_alerts_fire_on_the_series_that_should_fire_them_and_only_those() -> None:
    assert "SUCCESS" in _promtool("test", "rules", str(RULE_TESTS))


def _exported() -> set[str]:
    """Every metric name the service exports: the process instruments, and the database collector's gauges."""
    names = {f"{family.name}_total" if family.type == "counter" else family.name for family in PROCESS.collect()}
    scrape = (ROOT / "vault" / "metrics" / "scrape.py").read_text()
    names |= set(re.findall(r'GaugeMetricFamily\(\s*"(evault_[a-z_]+)"', scrape))
    return names


def test_the_rules_read_only_exported_metrics_and_the_docs_list_every_one() -> None:
    exported = _exported()
    assert {"evault_checkpoint_age_seconds", "evault_webhook_backlog", "evault_vault_ins_total"} <= exported
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"evault_[a-z_]+", RULES.read_text())}
    assert used <= exported, used - exported
    documented = set(re.findall(r"`(evault_[a-z_]+)`", DOC.read_text()))
    assert documented == exported, documented ^ exported
