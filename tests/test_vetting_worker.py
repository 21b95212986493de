"""An upload's vetting runs in the limited worker, not in the API process.

So the calling process spends almost no CPU on it (its GIL stays free for other tenants), the vetting slots
bound how many run at once and refuse with 503 and a retry hint when none frees, and a worker child starts in
milliseconds whatever the parent's main module imports (it used to import the whole service again, over a
second of CPU per child).
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from compliance.signatures import pdf_validation
from storage.settings import PdfSettings, Settings, SettingsError
from tests import hostile_pdfs, pdf_factory
from tests.helpers import API, create_envelope, upload
from vault import pdf_vetting
from vault.pdf_inspect import inspect_pdf, vetting_slots
from vault.pdf_vetting import vet_here
from vault.stamp_worker import busy

ROOT = Path(__file__).resolve().parents[1]


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


@pytest.mark.once
def test_vetting_costs_the_calling_process_almost_no_cpu() -> None:
    """2,000 pages sharing one content stream: vetting it here costs a fair fraction of a second; asked of
    inspect_pdf, the same vetting (and its rehearsal) happens in the worker, and this process only waits."""
    source = hostile_pdfs.shared_content(2000)
    started = _process_cpu()
    pdf = PdfSettings(worker_nice=0)  # a shared host (the suite's two passes): see conftest's vault_env
    vet_here(source, hashlib.sha256(source).hexdigest(), pdf)
    here = _process_cpu() - started
    inspect_pdf(source, pdf)  # the forkserver is started and warm
    started = _process_cpu()
    facts = inspect_pdf(source, pdf)
    waited = _process_cpu() - started
    assert facts.page_count == 2000
    assert here > 0.2, here
    assert waited < here / 4, (waited, here)


@pytest.mark.once
def test_signatures_are_graded_in_the_worker_not_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyHanko's validation and difference analysis read what an outsider wrote: with them broken in this
    process, a signed upload is still graded (by the worker, under its limits), and an unsigned one is not."""

    def not_here(*_args: Any) -> None:
        raise AssertionError("signatures graded in the calling process")

    monkeypatch.setattr(pdf_validation, "grade_signatures", not_here)
    monkeypatch.setattr(pdf_validation, "validate_pdf_signature", not_here)
    monkeypatch.setattr(pdf_vetting, "grade_signatures", not_here)
    pdf = PdfSettings(worker_nice=0)
    signed = inspect_pdf(pdf_factory.make_signed_pdf(), pdf, None, [pdf_factory.signing_pki()[2]])
    assert signed.signatures is not None and signed.signatures.clean
    assert inspect_pdf(pdf_factory.make_pdf(pages=1), pdf).signatures is None


@pytest.mark.once
def test_a_worker_child_does_not_import_the_service_again(tmp_path: Path) -> None:
    """A parent whose main module imports the whole API (as ``evault serve`` does): each stamping child costs
    little CPU (the forkserver reaps the children, so their CPU is its cutime and cstime)."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import hashlib, os, time

            import vault.api.app  # noqa: F401  the service's imports, in the parent's main module
            from compliance.conditions.copy_mark import CopyMark
            from storage.ids import utcnow
            from storage.settings import PdfSettings
            from tests.pdf_factory import make_pdf
            from vault.stamp_worker import PRELOAD, StampLimits, run_stamp
            from vault.worker_pool import forkserver_pid


            def children_cpu():
                with open(f"/proc/{forkserver_pid(PRELOAD)}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                return sum(int(v) for v in fields[13:15]) / os.sysconf("SC_CLK_TCK")


            if __name__ == "__main__":
                source = make_pdf()
                mark = CopyMark("cp_child0000000000000000", "env_child", hashlib.sha256(source).hexdigest(), utcnow())
                limits = StampLimits.from_settings(PdfSettings())
                run_stamp(source, mark, limits)  # starts the forkserver
                time.sleep(0.2)
                before = children_cpu()
                for _ in range(3):
                    run_stamp(source, mark, limits)
                time.sleep(0.2)
                print((children_cpu() - before) / 3)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    per_child = float(done.stdout.strip().splitlines()[-1])
    assert per_child < 0.4, per_child  # 1.2 s each here when every child imported the service afresh


@pytest.mark.once
def test_worker_nice_is_read_and_bounded() -> None:
    assert Settings.from_env({}).pdf.worker_nice == 10
    assert Settings.from_env({"EVAULT_PDF_WORKER_NICE": "0"}).pdf.worker_nice == 0
    for bad in ("20", "-1"):
        with pytest.raises(SettingsError, match="EVAULT_PDF_WORKER_NICE"):
            Settings.from_env({"EVAULT_PDF_WORKER_NICE": bad})


@pytest.mark.once
def test_an_organisation_alone_may_use_every_vetting_slot() -> None:
    slots = vetting_slots(PdfSettings(stamp_concurrency=3))
    with slots.slot(None, busy("Vault.Busy"), org="org_a"), slots.slot(None, busy("Vault.Busy"), org="org_a"):
        with slots.slot(None, busy("Vault.Busy"), org="org_a"):
            pass


@pytest.fixture
def vault_env(vault_env: dict[str, str]) -> dict[str, str]:
    return {**vault_env, "EVAULT_PDF_STAMP_TIMEOUT_SECONDS": "2"}


@pytest.mark.s3
def test_upload_finding_no_vetting_slot_is_503_and_changes_nothing(
    client: Any, runtime: Any, tenant: tuple[str, dict[str, str]], make_key: Any
) -> None:
    """Another organisation holds every vetting slot: the upload waits EVAULT_PDF_STAMP_TIMEOUT_SECONDS, then is
    refused with 503 ``Vault.Busy`` and ``Retry-After``, and the envelope stays open; once a slot frees, it goes."""
    _, headers = tenant
    other, _ = make_key()
    envelope_id = create_envelope(client, headers)
    document = pdf_factory.make_pdf()
    slots = vetting_slots(runtime.settings.pdf)
    with slots.slot(None, busy("Vault.Busy"), org=other), slots.slot(None, busy("Vault.Busy"), org=other):
        response = upload(client, headers, envelope_id, document)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "Vault.Busy" and int(response.headers["Retry-After"]) > 0
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["state"] == "not_vaulted"
    assert upload(client, headers, envelope_id, document).status_code == 201
