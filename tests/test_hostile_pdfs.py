"""Hostile uploads end in a bounded refusal at vault-in or in a correct copy whose mark is visible when rendered.

Visibility is judged on pixels (pdfium renders, as a viewer would): the mark is stamped alone onto a blank page
of the same geometry, its dark pixels are the band, and on the copy those pixels must be dark too wherever the
original (placed below the band, as in ``tests/rendering.py``) was light there. A control shows that an overlay
merged into the page under a covering annotation renders like the original and fails the issuance check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import pathlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, IndirectObject, NameObject

from compliance.conditions.copy_mark import CopyMark, unmarked_pages
from compliance.conditions.mark_check import check_copy
from compliance.errors import InvalidInput, Unavailable
from compliance.pdf_bytes import PdfBytes
from storage.settings import PdfSettings
from tests import hostile_pdfs, pdf_factory, rendering
from tests.helpers import API, create_envelope, upload
from vault import pdf_vetting
from vault.copy_stamp import stamp_copy
from vault.pdf_inspect import inspect_pdf
from vault.stamp_worker import (
    CopyStampError,
    StampLimits,
    busy,
    run_stamp,
    slots_for,
    stamp_for_copy,
)
from vault.worker_pool import StampFailure

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

BUDGET = PdfSettings(worker_nice=0)  # a shared host (the suite's two passes): see conftest's vault_env
CPU_MARGIN = 3.0  # seconds on top of EVAULT_PDF_MAX_CPU_SECONDS: interpreter noise on a shared 2-core machine
# What a file at the page limit is tested against: the default 10 s of CPU was near what vetting a 5,000-page file
# took on a slower machine (9.6-9.7 s alone on a 2-core AMD EPYC, refused under CI's load; 6.2-6.3 s since vetting
# parses it twice, not three times), so with it the test timed the machine rather than the code. The default's
# headroom is a deployment's to size (docs/isolation.md).
ROOMY = PdfSettings(worker_nice=0, max_cpu_seconds=60)


def _mark(source: bytes) -> CopyMark:
    return CopyMark(
        "cp_hostile0000000000000", "env_hostile", hashlib.sha256(source).hexdigest(), dt.datetime.now(dt.UTC)
    )


def _vet(data: bytes, budget: PdfSettings = BUDGET) -> tuple[Any, float]:
    """inspect_pdf's answer (facts or the refusal) and the CPU this thread spent on it."""
    started = time.thread_time()
    try:
        result: Any = inspect_pdf(data, budget)
    except InvalidInput as exc:
        result = exc
    return result, time.thread_time() - started


# --- Bounded refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "code", "limit"),
    [
        (hostile_pdfs.decompression_bomb, "Document.TooComplex", "max_decoded_bytes"),
        (lambda: hostile_pdfs.decompression_bomb(2000, 200_000), "Document.TooComplex", "max_decoded_bytes"),
        (hostile_pdfs.huge_page_tree, "Document.TooComplex", "max_pages"),
        (lambda: hostile_pdfs.shared_content(BUDGET.max_pages + 1), "Document.TooComplex", "max_pages"),
        (hostile_pdfs.self_reference, "Document.Malformed", None),
    ],
    ids=["bomb-10x74MB", "bomb-2000x200KB", "200k-pages", "shared-over-limit", "self-reference"],
)
def test_hostile_file_is_refused_within_the_budget(make: Callable[[], bytes], code: str, limit: str | None) -> None:
    data = make()
    wall = time.monotonic()
    result, cpu = _vet(data)
    wall = time.monotonic() - wall
    assert isinstance(result, InvalidInput), result
    assert result.code == code
    assert result.details.get("limit") == limit
    assert cpu <= BUDGET.max_cpu_seconds + CPU_MARGIN, cpu
    assert wall <= BUDGET.max_cpu_seconds + BUDGET.stamp_timeout_seconds, wall


_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>", _PAGE], "cycle"),
        ([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 3 0 R] /Count 2 >>", _PAGE], "cycle"),
        (
            [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 9 0 R] /Count 2 >>", _PAGE],
            "not a dict",
        ),
        (
            [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>", _PAGE, b"42"],
            "not a dict",
        ),
        ([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids 3 0 R /Count 1 >>", _PAGE], "not an array"),
        ([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"], "no pages"),
    ],
    ids=["kid-is-its-parent", "page-twice", "dangling-kid", "kid-is-a-number", "kids-not-an-array", "no-pages"],
)
def test_a_broken_page_tree_is_malformed(objects: list[bytes], message: str) -> None:
    """The page tree is walked node by node (on pypdf's objects, the stamper's parser) before anything is used."""
    result, _ = _vet(hostile_pdfs.assemble(objects))
    assert isinstance(result, InvalidInput), result
    assert result.code == "Document.Malformed" and message in result.message, result.message


def test_each_limit_is_configurable() -> None:
    data = pdf_factory.make_pdf(pages=10)
    for field, value, limit in [
        ("max_pages", 9, "max_pages"),
        ("max_objects", 16, "max_objects"),
        ("max_decoded_bytes", 100, "max_decoded_bytes"),
    ]:
        result, _ = _vet(data, dataclasses.replace(BUDGET, **{field: value}))
        assert isinstance(result, InvalidInput) and result.code == "Document.TooComplex", (field, result)
        assert result.details["limit"] == limit and result.details["value"] == value
    assert _vet(data)[0].page_count == 10


@pytest.mark.s3
def test_bomb_over_http_is_refused_and_nothing_is_vaulted(client: Any, tenant: tuple[str, dict[str, str]]) -> None:
    _, headers = tenant
    envelope_id = create_envelope(client, headers)
    response = upload(client, headers, envelope_id, hostile_pdfs.decompression_bomb())
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "Document.TooComplex"
    assert response.json()["details"]["setting"] == "EVAULT_PDF_MAX_DECODED_BYTES"
    assert client.get(f"{API}/envelopes/{envelope_id}", headers=headers).json()["vault"]["state"] == "not_vaulted"


# --- Correct copies, linear and within the child's limits ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "pages"),
    [
        (lambda: hostile_pdfs.shared_content(BUDGET.max_pages), BUDGET.max_pages),
        (hostile_pdfs.deep_reference_chain, 1),
        (hostile_pdfs.object_stream_loop, 1),
    ],
    ids=["shared-content-5000-pages", "deep-reference-chain", "object-stream-loop"],
)
def test_accepted_hostile_file_copies_correctly_within_limits(make: Callable[[], bytes], pages: int) -> None:
    source = make()
    facts, cpu = _vet(source, ROOMY)
    assert not isinstance(facts, InvalidInput), facts
    assert facts.page_count == pages and cpu <= ROOMY.max_cpu_seconds + CPU_MARGIN
    limits = StampLimits.from_settings(ROOMY)
    mark = _mark(source)
    outcome = run_stamp(source, mark, limits)
    assert outcome.peak_rss_bytes < limits.memory_bytes
    assert outcome.cpu_seconds <= ROOMY.max_cpu_seconds
    assert len(outcome.pdf) < 4 * len(source) + 100_000  # original streams carried over compressed, not inflated
    assert unmarked_pages(outcome.pdf, mark.copy_id) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: pdf_factory.make_pdf(pages=3),
        lambda: pdf_factory.make_pdf(size_bytes=1 << 20),
        pdf_factory.make_signed_pdf,
        pdf_factory.make_signed_then_modified_pdf,
        pdf_factory.make_landscape_and_rotated_pdf,
        lambda: hostile_pdfs.shared_content(50),
        hostile_pdfs.covering_annotation,
        hostile_pdfs.painting_link,
        hostile_pdfs.odd_cropbox,
        hostile_pdfs.hiding_optional_content,
        hostile_pdfs.camouflage,
        hostile_pdfs.many_links,
        hostile_pdfs.repeated_image,
        hostile_pdfs.deep_reference_chain,
        hostile_pdfs.object_stream_loop,
    ],
    ids=[
        "paper",
        "paper-1MiB",
        "signed",
        "signed-then-modified",
        "rotated",
        "shared-content",
        "covering-annotation",
        "painting-link",
        "odd-cropbox",
        "optional-content",
        "camouflage",
        "many-links",
        "repeated-image",
        "deep-reference-chain",
        "object-stream-loop",
    ],
)
@pytest.mark.parametrize("as_file", [False, True], ids=["in-memory", "spooled-file"])
def test_the_rehearsal_stamps_what_the_copy_path_stamps(
    make: Callable[[], bytes], as_file: bool, tmp_path: pathlib.Path
) -> None:
    """Vetting rehearses the copy from the reader that vetted the file (no third parse); what it stamps must be
    what the copy path stamps from the bytes, or the rehearsal proves nothing about the copy."""
    source = make()
    mark = _mark(source)
    path = tmp_path / "upload.pdf"
    path.write_bytes(source)
    with open(path, "rb") if as_file else PdfBytes(source) as stream:
        _, _, reader = pdf_vetting._vet(stream, pdf_vetting._Budget(BUDGET))
        rehearsed = stamp_copy(reader, mark)
    assert rehearsed == stamp_copy(source, mark)


def test_stamper_child_meets_its_memory_limit() -> None:
    """Five 74 MB content streams on one page: joining them needs more than 256 MiB, and the child is refused."""
    blob = hostile_pdfs.inflating_stream(74_000_000)
    refs = b" ".join(b"%d 0 R" % (6 + i) for i in range(5))
    source = hostile_pdfs.assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [" + refs + b"] >>",
            b"null",
            b"null",
            *[hostile_pdfs.stream(b"/Filter /FlateDecode", blob) for _ in range(5)],
        ]
    )
    with pytest.raises(StampFailure) as info:
        run_stamp(source, _mark(source), StampLimits(256 * 1024 * 1024, 30, 60.0))
    assert info.value.kind == "memory"


def test_stamper_child_is_killed_at_its_deadline() -> None:
    source = hostile_pdfs.shared_content(20_000)  # never vetted: over the page limit, takes seconds to stamp
    started = time.monotonic()
    with pytest.raises((StampFailure, Unavailable)) as info:
        run_stamp(source, _mark(source), StampLimits(1 << 30, 30, 0.5))
    assert time.monotonic() - started < 5
    if isinstance(info.value, StampFailure):  # it had its CPU: the document's time ran out
        assert info.value.kind == "timeout"
    else:  # a loaded machine starved the worker (niceness 10): ours to retry, never the document's fault
        assert info.value.code == "Copy.Busy"


def test_copy_path_failures_are_stable_codes(caplog: pytest.LogCaptureFixture) -> None:
    broken = hostile_pdfs.self_reference()  # never vetted: vault-in refuses it
    with pytest.raises(CopyStampError) as info:
        stamp_for_copy(BUDGET, "org_a", broken, _mark(broken))
    assert info.value.code == "Copy.StampFailed" and info.value.category == "integrity"
    assert "stamping copy" in caplog.text
    slow = hostile_pdfs.shared_content(20_000)
    with pytest.raises((CopyStampError, Unavailable)) as timed_out:
        stamp_for_copy(
            dataclasses.replace(BUDGET, max_cpu_seconds=1, stamp_timeout_seconds=1), "org_a", slow, _mark(slow)
        )
    # the CPU budget or the wall clock with the CPU spent; or, on a machine that starved the niced worker, 503
    assert timed_out.value.code in ("Copy.StampTimeout", "Copy.Busy")


def test_slots_cap_per_key_and_in_total() -> None:
    slots = slots_for(dataclasses.replace(BUDGET, stamp_concurrency=3, stamp_per_org=2))
    with slots.slot("org_a", busy("Copy.Busy")), slots.slot("org_a", busy("Copy.Busy")):
        with pytest.raises(Unavailable) as info:
            with slots.slot("org_a", busy("Copy.Busy")):
                pass
        assert info.value.code == "Copy.Busy" and info.value.details["retry_after_seconds"] > 0
        with slots.slot("org_b", busy("Copy.Busy")), pytest.raises(Unavailable):
            with slots.slot("org_c", busy("Copy.Busy")):
                pass
    with (
        slots.slot("org_a", busy("Copy.Busy")),
        slots.slot("org_a", busy("Copy.Busy")),
        slots.slot("org_b", busy("Copy.Busy")),
    ):
        pass  # every slot was given back


@pytest.mark.s3
def test_copy_request_beyond_the_tenants_share_is_503_with_retry_after(
    client: Any, runtime: Any, tenant: tuple[str, dict[str, str]]
) -> None:
    org_id, headers = tenant
    envelope_id = create_envelope(client, headers)
    assert upload(client, headers, envelope_id, pdf_factory.make_pdf()).status_code in (200, 201)
    with slots_for(runtime.settings.pdf).slot(org_id, busy("Copy.Busy")):
        response = client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "Copy.Busy"
    assert int(response.headers["Retry-After"]) > 0
    assert client.get(f"{API}/envelopes/{envelope_id}/vault/copy/signed-url", headers=headers).status_code == 200


# --- The mark is visible when rendered --------------------------------------------------------------------------


def _blank_like(source: bytes) -> bytes:
    """The same pages (boxes, rotation) with nothing on them."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    for page in writer.pages:
        page[NameObject("/Contents")] = writer._add_object(DecodedStreamObject())
        page.pop(NameObject("/Annots"), None)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _mark_shown(copy: bytes, original: bytes, alone: bytes, index: int) -> float:
    """Share of the mark's dark pixels (where the original, placed below the band, is light) dark on the copy too."""
    width, height, copy_rows = rendering.gray(copy, index, 108)
    alone_width, alone_height, alone_rows = rendering.gray(alone, index, 108)
    assert (width, height) == (alone_width, alone_height)
    original_rows = rendering.on_canvas(original, index, width, height, 108)
    copy_px, alone_px, original_px = (b"".join(rows) for rows in (copy_rows, alone_rows, original_rows))
    band = [i for i, value in enumerate(alone_px) if value < 128]
    assert len(band) > 500, "the mark-alone rendering shows no band"
    open_area = [i for i in band if original_px[i] > 200]
    assert len(open_area) > len(band) // 2
    return sum(1 for i in open_area if copy_px[i] < 160) / len(open_area)


@pytest.mark.parametrize(
    "make",
    [
        hostile_pdfs.covering_annotation,
        hostile_pdfs.painting_link,
        hostile_pdfs.odd_cropbox,
        hostile_pdfs.rotated_cropped_page,
        hostile_pdfs.hiding_optional_content,
        pdf_factory.make_landscape_and_rotated_pdf,
    ],
)
def test_mark_is_visible_on_every_rendered_page(make: Callable[[], bytes]) -> None:
    source = make()
    inspect_pdf(source, BUDGET)
    mark = _mark(source)
    copy = run_stamp(source, mark, StampLimits.from_settings(BUDGET)).pdf
    alone = stamp_copy(_blank_like(source), mark)
    for index in range(len(PdfReader(io.BytesIO(source)).pages)):
        assert _mark_shown(copy, source, alone, index) > 0.9, index
    assert unmarked_pages(copy, mark.copy_id) == []


def test_render_check_sees_an_overlay_hidden_by_a_covering_annotation() -> None:
    """Control: the old way (the mark merged into the page's own content, in its own box) is pixel-identical
    under the annotation, and fails the issuance check."""
    source = hostile_pdfs.covering_annotation()
    mark = _mark(source)
    alone = stamp_copy(_blank_like(source), mark)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    writer.pages[0].merge_page(PdfReader(io.BytesIO(alone)).pages[0], over=True)
    out = io.BytesIO()
    writer.write(out)
    assert rendering.difference(source, out.getvalue(), 0) < 0.01
    assert not check_copy(source, out.getvalue(), mark.copy_id).passed


def test_copy_drops_scripts_optional_content_and_painting_annotations() -> None:
    for source in (hostile_pdfs.painting_link(), hostile_pdfs.hiding_optional_content()):
        copy = stamp_copy(source, _mark(source))
        reader = PdfReader(io.BytesIO(copy))
        for key in ("/OpenAction", "/AA", "/OCProperties", "/AcroForm"):
            assert key not in reader.trailer["/Root"]
        assert b"JavaScript" not in copy
        for annot in reader.pages[0].get("/Annots", []):
            annot = annot.get_object()
            assert annot["/Subtype"] == "/Link" and "/AP" not in annot
            assert list(annot["/Border"]) == [0, 0, 0]
    link = PdfReader(io.BytesIO(stamp_copy(hostile_pdfs.painting_link(), _mark(b"x")))).pages[0]["/Annots"][0]
    assert link.get_object()["/A"] == {"/S": "/URI", "/URI": "https://example.com/"}


def _reached(reader: PdfReader) -> set[int]:
    """The numbers of the objects that the trailer reaches, following every reference."""
    reached: set[int] = set()
    pending: list[Any] = [reader.trailer.raw_get(key) for key in ("/Root", "/Info") if key in reader.trailer]
    while pending:
        node = pending.pop()
        if isinstance(node, IndirectObject):
            if node.idnum in reached:
                continue
            reached.add(node.idnum)
            node = node.get_object()
        if isinstance(node, DictionaryObject):
            pending.extend(node.raw_get(key) for key in node)
        elif isinstance(node, ArrayObject):
            pending.extend(node)  # an array yields its references as they are, unresolved
    return reached


@pytest.mark.parametrize(
    "make",
    [
        hostile_pdfs.painting_link,
        hostile_pdfs.covering_annotation,
        hostile_pdfs.hiding_optional_content,
        lambda: hostile_pdfs.shared_content(5),
        lambda: pdf_factory.make_signed_pdf(pages=2),
        lambda: hostile_pdfs.one_page(content=b"0 0 m 1 1 l S\n" * 25_000),  # a 350 KB page
    ],
    ids=["painting-link", "covering-annotation", "optional-content", "shared-content", "signed", "long-page"],
)
def test_copy_writes_only_what_the_trailer_reaches(make: Callable[[], bytes]) -> None:
    """A page's replaced content stream, a dropped annotation and whatever only it named (the painting link's
    white full-page appearance) are not written: the copy holds no object its trailer cannot reach, and the
    original's bytes once, not twice."""
    source = make()
    copy = stamp_copy(source, _mark(source))
    reader = PdfReader(io.BytesIO(copy))
    written = {number for table in reader.xref.values() for number in table}
    assert written and written <= _reached(reader)
    assert len(copy) < len(source) + 16_384
