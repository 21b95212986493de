"""The seal on its own: with a TSA configured it carries an RFC 3161 signature timestamp inside the one signature
(PAdES-B-T), so nothing is appended after it and it still covers the whole file."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer

import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from compliance.signatures.document_identity import DocumentSigner, self_signed
from tests.pdf_factory import make_pdf
from tests.ports import aux_port
from tests.test_timestamping import Pki, _make_pki, _Tsa
from vault.ceremony.seal import SignerLine, seal, stamped

pytestmark = pytest.mark.once  # no database: the SQLite pass only


@pytest.fixture(scope="module")
def tsa() -> Iterator[tuple[str, Pki]]:
    pki = _make_pki("ceremony test")
    handler = type("Handler", (_Tsa,), {"pki": pki, "other": pki, "replay": {}})
    server = ThreadingHTTPServer(("127.0.0.1", aux_port("ceremony")), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa", pki
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_seal_carries_a_timestamp_and_covers_the_whole_file(tsa: tuple[str, Pki]) -> None:
    url, pki = tsa
    key = ec.generate_private_key(ec.SECP256R1())
    signer = DocumentSigner(key, self_signed(key, "test document signing"))
    now = datetime.now(UTC)
    line = SignerLine(
        1,
        "Ada Borrower",
        "Ada B.",
        now,
        now,
        "sub_x:00",
        [{"type": "signature", "page": 1, "x": 72, "y": 72, "width": 200, "height": 40}],
    )
    sealed = seal(stamped(make_pdf(), "env_x", "Loan", "0" * 64, [line]), signer, url)
    (signature,) = PdfFileReader(io.BytesIO(sealed)).embedded_signatures
    roots = [signer.asn1()[0], asn1_x509.Certificate.load(pem.unarmor(pki.root_pem)[2])]
    status = validate_pdf_signature(signature, ValidationContext(trust_roots=roots, allow_fetching=False))
    assert (status.intact, status.valid, status.trusted, status.coverage.name) == (True, True, True, "ENTIRE_FILE")
    assert status.timestamp_validity is not None
    assert (status.timestamp_validity.intact, status.timestamp_validity.valid) == (True, True)
    assert status.timestamp_validity.trusted
    assert abs((status.timestamp_validity.timestamp - now).total_seconds()) < 60
