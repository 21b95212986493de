"""What a PDF's streams cost as they are used, not as they are stored.

A stream is stored once but can be used many times: a page's /Contents array may name it N times (the copy
stamper joins the array, so it decodes N copies), pages with their own boxes each get their own form carrying
it, and a form XObject may be drawn N times, by forms that are themselves drawn N times (a text extractor or a
renderer walks every use). So the vetting counts, for every page, the decoded bytes of each stream each time it
is used: its /Contents parts, every XObject its content draws (``/Name Do``, counted in the decoded content,
for the names its resources define), recursively through forms, and its annotations' appearances. A stream
counts at least its raw length, since the stamper carries raw bytes into each form it makes. Images drawn are
totalled apart (see :class:`UseCounter`).

The walk decodes in 1 MiB steps and stops as soon as the total passes the limit, so a bomb costs no more than
the limit to find. Nothing here keeps a decoded stream.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from pypdf import PageObject, PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

FLATE = ("/FlateDecode", "/Fl")
DECODED_BY_PYPDF = ("/LZWDecode", "/LZW", "/RunLengthDecode", "/RL", "/ASCIIHexDecode", "/AHx", "/ASCII85Decode")
CHUNK = 1 << 20
# A name and its Do can straddle two decoded chunks; this much of the previous chunk is scanned again.
_KEEP = 4096
_DELIMITERS = rb"\s/\[\]()<>{}%"
# A name, then whitespace or comments (a comment is whitespace to a content parser), then the Do operator.
_NAME_DO = re.compile(rb"/([^" + _DELIMITERS + rb"]*)(?:\s|%[^\r\n]*)+Do(?=[" + _DELIMITERS + rb"]|$)")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")


class CyclicForm(Exception):
    """A form XObject draws itself, directly or through others: every walk of it would never end."""


def filters(stream: StreamObject) -> list[str]:
    raw = stream.get("/Filter")
    if raw is None:
        return []
    return [str(f) for f in raw] if isinstance(raw, ArrayObject) else [str(raw)]


def decoded_chunks(stream: StreamObject) -> Iterator[bytes]:
    """The stream's content in steps of at most 1 MiB: inflated, decoded by pypdf (which caps those filters
    itself), or raw for an image codec that neither the stamper nor text extraction runs.

    Damaged Flate data decodes to what came out before the damage."""
    kinds = filters(stream)
    data: bytes = stream._data
    if not kinds or kinds[0] not in FLATE + DECODED_BY_PYPDF:
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    if kinds[0] in DECODED_BY_PYPDF:
        yield stream.get_data()
        return
    inflater = zlib.decompressobj()
    view = memoryview(data)
    try:
        # Fed 1 MiB of input at a time: unconsumed_tail is a copy, so feeding the whole stream would copy it
        # over and over.
        for start in range(0, len(view), CHUNK):
            pending: bytes | memoryview = view[start : start + CHUNK]
            while pending:
                out = inflater.decompress(pending, CHUNK)
                if out:
                    yield out
                if inflater.eof:
                    return
                pending = inflater.unconsumed_tail
                if not out and not pending:
                    break
    except zlib.error:
        return


def _name(raw: bytes) -> str:
    return "/" + _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("latin-1")


class UseCounter:
    """Totals the decoded bytes of every use, per page, and stops at ``limit``; ``tick`` checks the CPU budget.

    Content streams and forms count in ``total`` (what the limit refuses): the stamper joins them, a text
    extractor parses each use. Images count in ``drawn`` instead: nothing in the service decodes an image per
    use, so a letterhead on every page is no reason to refuse; ``drawn`` only sends such a file's rehearsal to
    the limited stamper process, where the copy's renderer meets it.

    A stream used N times is decoded once, and only up to what is left of the limit divided by N, so a bomb
    of repeats is refused after decoding a sliver of it. Each fully decoded stream's size is kept in
    ``sizes`` (by generation and number) for the object scan, which then need not decode it again."""

    def __init__(self, limit: int, tick: Callable[[], None]) -> None:
        self.limit = limit
        self.tick = tick
        self.total = 0
        self.drawn = 0
        self.sizes: dict[tuple[int, int], int] = {}
        self._costs: dict[tuple[Any, ...], tuple[int, int]] = {}
        self._walking: set[Any] = set()

    def over(self) -> bool:
        return self.total > self.limit

    def _add(self, refs: list[Any], resources: Any, rkey: Any) -> None:
        """Each distinct stream in ``refs`` once, times the number of times ``refs`` names it."""
        times: dict[Any, tuple[Any, int]] = {}
        for ref in refs:
            ref_key = _key(ref)
            times[ref_key] = (ref, times.get(ref_key, (ref, 0))[1] + 1)
        for ref, count in times.values():
            content, images = self.cost(ref, resources, rkey, (self.limit - self.total) // count)
            self.total = min(self.total + count * content, self.limit + 1)
            self.drawn = min(self.drawn + count * images, self.limit + 1)
            if self.over():
                return

    def count_pages(self, reader: PdfReader) -> None:
        """Add every page's uses, stopping once over the limit."""
        for page in reader.pages:
            self.count_page(page)
            if self.over():
                return

    def count_page(self, page: PageObject) -> None:
        resources = page.get("/Resources")
        rkey = _key(page.raw_get("/Resources"), page.indirect_reference) if "/Resources" in page else None
        contents = page.raw_get("/Contents") if "/Contents" in page else None
        resolved = contents.get_object() if contents is not None else None
        # Each element as many times as the array names it: the stamper joins them all.
        self._add([contents] if isinstance(resolved, StreamObject) else list(resolved or []), resources, rkey)
        annots = page.get("/Annots")
        for ref in annots if isinstance(annots, ArrayObject) and not self.over() else []:
            annot = ref.get_object()
            appearances = annot.get("/AP") if isinstance(annot, DictionaryObject) else None
            normal = appearances.get("/N") if isinstance(appearances, DictionaryObject) else None
            if isinstance(normal, DictionaryObject) and not isinstance(normal, StreamObject):
                self._add([normal.raw_get(k) for k in normal], None, None)
            elif isinstance(appearances, DictionaryObject) and normal is not None:
                self._add([appearances.raw_get("/N")], None, None)

    def cost(self, ref: Any, resources: Any, rkey: Any, cap: int) -> tuple[int, int]:
        """One use of the stream at ``ref`` drawn with ``resources`` (a form's own resources take precedence):
        (content bytes, or ``cap + 1`` if more than ``cap``; image bytes)."""
        stream = ref.get_object() if isinstance(ref, IndirectObject) else ref
        if not isinstance(stream, StreamObject):
            return 0, 0
        own = stream.get("/Resources")
        if isinstance(own, DictionaryObject):
            resources, rkey = own, _key(stream.raw_get("/Resources"), ref)
        memo = (_key(ref), rkey)
        if memo in self._costs:
            content, images = self._costs[memo]
            return min(content, cap + 1), images
        if memo in self._walking:
            raise CyclicForm("a form XObject draws itself")
        self._walking.add(memo)
        try:
            if stream.get("/Subtype") == "/Image":
                cost = (0, self._size(ref, stream, self.limit))
            else:
                cost = self._walk(ref, stream, resources, rkey, cap)
        finally:
            self._walking.discard(memo)
        if cost[0] <= cap:  # an exact cost; one over the cap ends the count anyway
            self._costs[memo] = cost
        if isinstance(ref, IndirectObject):  # counted: let pypdf's cache drop it, as the object scan does
            ref.pdf.resolved_objects.pop((ref.generation, ref.idnum), None)
        return cost

    def _size(self, ref: Any, stream: StreamObject, cap: int) -> int:
        """The stream's decoded size (at least its raw length), or ``cap + 1`` if more than ``cap``."""
        size_key = (ref.generation, ref.idnum) if isinstance(ref, IndirectObject) else None
        if size_key not in self.sizes:
            decoded = 0
            for chunk in decoded_chunks(stream):
                self.tick()
                decoded += len(chunk)
                if decoded > cap:
                    return cap + 1
            if size_key is None:
                return min(max(decoded, len(stream._data)), cap + 1)
            self.sizes[size_key] = decoded
        return min(max(self.sizes[size_key], len(stream._data)), cap + 1)

    def _walk(self, ref: Any, stream: StreamObject, resources: Any, rkey: Any, cap: int) -> tuple[int, int]:
        found = resources.get("/XObject") if isinstance(resources, DictionaryObject) else None
        xobjects = found if isinstance(found, DictionaryObject) else DictionaryObject()
        if not xobjects:
            return self._size(ref, stream, cap), 0
        decoded, draws = 0, dict.fromkeys(xobjects, 0)
        tail, counted_to = b"", 0  # counted_to: offset in the stream up to which names were counted
        for chunk in decoded_chunks(stream):
            self.tick()
            start = decoded - len(tail)
            decoded += len(chunk)
            if decoded > cap:
                return cap + 1, 0
            window = tail + chunk
            for match in _NAME_DO.finditer(window):
                if start + match.start() >= counted_to:
                    name = _name(match.group(1))
                    if name in draws:
                        draws[name] += 1
                    counted_to = start + match.end()
            tail = window[-_KEEP:]
        if isinstance(ref, IndirectObject):
            self.sizes[ref.generation, ref.idnum] = decoded
        content, images = max(decoded, len(stream._data)), 0
        for name, times in draws.items():
            if times and content <= cap:
                used, drawn = self.cost(xobjects.raw_get(name), resources, rkey, (cap - content) // times)
                content += times * used
                images = min(images + times * drawn, self.limit + 1)
        return min(content, cap + 1), images


def _key(ref: Any, owner: Any = None) -> Any:
    """A stable identity: an indirect object's number, or for a direct value, the object that holds it."""
    if isinstance(ref, IndirectObject):
        return ("ref", ref.idnum, ref.generation)
    return ("in", _key(owner)) if owner is not None else ("id", id(ref))
