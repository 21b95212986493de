"""RFC 3161 timestamps over a real HTTP TSA on 127.0.0.1 (pyHanko's DummyTimeStamper behind http.server).

The test PKI (RSA root, TSA certificate with the critical timeStamping EKU) is built offline with
``cryptography``; a second, untrusted PKI stands in for someone else's TSA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps import DummyTimeStamper

from compliance.checkpoints.timestamping import (
    TIMESTAMP_INVALID,
    TIMESTAMP_UNAVAILABLE,
    TimestampClient,
    TimestampInvalid,
    TimestampUnavailable,
    verify_timestamp,
)
from compliance.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from compliance.ledger.note import NoteSigner
from tests.ports import aux_port

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Pki:
    root_pem: bytes
    stamper: DummyTimeStamper


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_pki(label: str) -> Pki:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    tsa_usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    validity = (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    root = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} root"))
        .issuer_name(_name(f"{label} root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_usage, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} TSA"))
        .issuer_name(root.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(tsa_usage, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key_der = tsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(tsa.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(key_der),
    )
    return Pki(root.public_bytes(serialization.Encoding.PEM), stamper)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return _make_pki("evault test")


@pytest.fixture(scope="module")
def other_pki() -> Pki:
    return _make_pki("someone else")


class _Tsa(BaseHTTPRequestHandler):
    """``/tsa`` answers honestly, ``/other`` as the untrusted TSA, ``/replay/<x>`` with its first answer
    there, ``/garbled`` with junk, ``/broken`` with HTTP 500."""

    pki: Pki
    other: Pki
    replay: dict[str, bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/broken":
            self.send_error(500)
            return
        if self.headers["Content-Type"] != "application/timestamp-query":
            self.send_error(415)
            return
        stamper = (self.other if self.path == "/other" else self.pki).stamper
        reply = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
        if self.path.startswith("/replay"):
            reply = self.replay.setdefault(self.path, reply)
        elif self.path == "/garbled":
            reply = b"\x30\x82\x01\x00" + reply[4:40]
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tsa_url(pki: Pki, other_pki: Pki) -> Iterator[str]:
    handler = type("Handler", (_Tsa,), {"pki": pki, "other": other_pki, "replay": {}})
    server = ThreadingHTTPServer(("127.0.0.1", aux_port("timestamping")), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def note() -> bytes:
    signer = NoteSigner("vault.example/log", Ed25519PrivateKey.generate())
    checkpoint = Checkpoint("vault.example/log", 3, hashlib.sha256(b"root").digest())
    return sign_checkpoint(checkpoint, signer).encode()


def test_checkpoint_timestamp_round_trip(tsa_url: str, pki: Pki, note: bytes) -> None:
    token = TimestampClient(f"{tsa_url}/tsa", pki.root_pem, timeout=5).timestamp(note)
    when = verify_timestamp(token, note, pki.root_pem)
    assert when.tzinfo is not None and abs(when - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_token_over_other_data_fails(tsa_url: str, pki: Pki, note: bytes) -> None:
    token = TimestampClient(f"{tsa_url}/tsa", pki.root_pem, timeout=5).timestamp(note)
    with pytest.raises(TimestampInvalid) as exc:
        verify_timestamp(token, note.replace(b"\n3\n", b"\n4\n"), pki.root_pem)
    assert exc.value.code == TIMESTAMP_INVALID and "other data" in exc.value.message


def test_untrusted_tsa_fails(tsa_url: str, pki: Pki, other_pki: Pki, note: bytes) -> None:
    with pytest.raises(TimestampInvalid) as exc:
        TimestampClient(f"{tsa_url}/other", pki.root_pem, timeout=5).timestamp(note)
    assert exc.value.code == TIMESTAMP_INVALID
    # Its token is fine under its own root, and refused offline under ours.
    token = TimestampClient(f"{tsa_url}/other", other_pki.root_pem, timeout=5).timestamp(note)
    verify_timestamp(token, note, other_pki.root_pem)
    with pytest.raises(TimestampInvalid):
        verify_timestamp(token, note, pki.root_pem)


def test_without_roots_the_reply_is_checked_but_not_trusted(tsa_url: str, pki: Pki, note: bytes) -> None:
    token = TimestampClient(f"{tsa_url}/other", None, timeout=5).timestamp(note)
    with pytest.raises(TimestampInvalid):  # trust is decided offline, with roots
        verify_timestamp(token, note, pki.root_pem)
    with pytest.raises(TimestampInvalid):
        TimestampClient(f"{tsa_url}/garbled", None, timeout=5).timestamp(note)
    replaying = TimestampClient(f"{tsa_url}/replay/a", None, timeout=5)
    replaying.timestamp(note)
    with pytest.raises(TimestampInvalid, match="nonce"):
        replaying.timestamp(note)


def test_replayed_reply_fails_on_the_nonce(tsa_url: str, pki: Pki, note: bytes) -> None:
    client = TimestampClient(f"{tsa_url}/replay/b", pki.root_pem, timeout=5)
    client.timestamp(note)  # the first answer is genuine
    with pytest.raises(TimestampInvalid, match="nonce"):
        client.timestamp(note)


def test_tampered_token_fails(tsa_url: str, pki: Pki, note: bytes) -> None:
    token = bytearray(TimestampClient(f"{tsa_url}/tsa", pki.root_pem, timeout=5).timestamp(note))
    token[-20] ^= 0x01  # inside the RSA signature
    with pytest.raises(TimestampInvalid):
        verify_timestamp(bytes(token), note, pki.root_pem)


def test_garbled_reply_is_invalid(tsa_url: str, pki: Pki, note: bytes) -> None:
    with pytest.raises(TimestampInvalid) as exc:
        TimestampClient(f"{tsa_url}/garbled", pki.root_pem, timeout=5).timestamp(note)
    assert exc.value.code == TIMESTAMP_INVALID
    with pytest.raises(TimestampInvalid):
        verify_timestamp(b"not a token", note, pki.root_pem)
    with pytest.raises(TimestampInvalid):
        verify_timestamp(b"", note, b"not pem")


def test_tsa_down_or_failing_is_unavailable(tsa_url: str, pki: Pki, note: bytes) -> None:
    with pytest.raises(TimestampUnavailable) as exc:
        TimestampClient(f"http://127.0.0.1:{aux_port('timestamping')}/tsa", pki.root_pem, timeout=2).timestamp(note)
    assert exc.value.code == TIMESTAMP_UNAVAILABLE
    with pytest.raises(TimestampUnavailable) as exc:
        TimestampClient(f"{tsa_url}/broken", pki.root_pem, timeout=2).timestamp(note)
    assert exc.value.details["status"] == 500
