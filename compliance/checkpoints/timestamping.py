"""RFC 3161 timestamps on checkpoints: a third party's signed statement that the bytes existed at a time.

A cosignature says a witness saw the checkpoint; a TSA token says *when*, under a PKI that courts and
auditors already accept. Requests carry SHA-256 of the data, a fresh nonce and certReq, so the reply embeds
the TSA certificate and can be checked offline later. Building, parsing and CMS/chain checking are
``rfc3161-client``'s; this module adds the transport and the stable error codes:
``Timestamp.Unavailable`` (no usable answer: retry) and ``Timestamp.Invalid`` (an answer that must not be
trusted). Every parser or library failure is wrapped into one of them.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from datetime import UTC, datetime

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from compliance.errors import InvalidInput, Unavailable

TIMESTAMP_INVALID = "Timestamp.Invalid"
TIMESTAMP_UNAVAILABLE = "Timestamp.Unavailable"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20
_SHA256 = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class TimestampInvalid(InvalidInput):
    """A timestamp token that is garbled, refused, over other data, or not from a trusted TSA."""


class TimestampUnavailable(Unavailable):
    """The TSA could not be reached or did not answer with a timestamp reply."""


def _invalid(message: str) -> TimestampInvalid:
    return TimestampInvalid(TIMESTAMP_INVALID, message)


def load_trust_roots(pem: bytes) -> list[x509.Certificate]:
    """The TSA root certificates an operator pins; an empty or unreadable bundle is refused, not ignored."""
    try:
        roots = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise _invalid(f"TSA trust roots are not PEM certificates: {exc}") from exc
    if not roots:
        raise _invalid("TSA trust roots are empty")
    return roots


def _decode(token: bytes) -> TimeStampResponse:
    try:
        response = decode_timestamp_response(token)
        status = PKIStatus(response.status)
    except ValueError as exc:
        raise _invalid(f"not a timestamp reply: {exc}") from exc
    if status != PKIStatus.GRANTED:
        reasons = "; ".join(response.status_string)
        raise _invalid(f"TSA did not grant the timestamp ({status.name}): {reasons}")
    return response


def _check(
    response: TimeStampResponse, data: bytes, roots: list[x509.Certificate] | None, nonce: int | None
) -> datetime:
    """Imprint, nonce and, given roots, the CMS signature, the TSA's EKU and its chain at the token's time."""
    try:
        info = response.tst_info
        if info.message_imprint.hash_algorithm != _SHA256:
            raise _invalid("timestamp is not over a SHA-256 imprint")
        if info.message_imprint.message != hashlib.sha256(data).digest():
            raise _invalid("timestamp is over other data")
        if nonce is not None and info.nonce != nonce:
            raise _invalid("timestamp reply has another nonce: not the answer to this request")
        if roots is not None:
            builder = VerifierBuilder(roots=roots)
            builder = builder if nonce is None else builder.nonce(nonce)
            builder.build().verify_message(response, data)
        gen_time = info.gen_time
    except TimestampInvalid:
        raise
    except (VerificationError, ValueError) as exc:
        raise _invalid(f"timestamp signature does not verify: {exc}") from exc
    return gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)


def verify_timestamp(token: bytes, data: bytes, trust_roots_pem: bytes) -> datetime:
    """The time at which a trusted TSA saw ``data``, from a stored DER TimeStampResp (offline)."""
    return _check(_decode(token), data, load_trust_roots(trust_roots_pem), None)


class TimestampClient:
    """One TSA at ``url``.

    Without ``trust_roots_pem`` the reply's status, imprint and nonce are checked but not its signature (a
    chain needs an anchor): such a token proves nothing until ``verify_timestamp`` accepts it with roots.
    """

    def __init__(self, url: str, trust_roots_pem: bytes | None, timeout: float) -> None:
        self.url = url
        self.roots = None if trust_roots_pem is None else load_trust_roots(trust_roots_pem)
        self.timeout = timeout

    def timestamp(self, data: bytes) -> bytes:
        """A verified DER TimeStampResp over SHA-256 of ``data``: keep it next to the checkpoint."""
        request = (
            TimestampRequestBuilder()
            .data(data)
            .hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        reply = self._post(request.as_bytes())
        _check(_decode(reply), data, self.roots, request.nonce)
        return reply

    def _post(self, body: bytes) -> bytes:
        req = urllib.request.Request(  # noqa: S310 (the URL is operator configuration)
            self.url, data=body, method="POST", headers={"Content-Type": QUERY_TYPE}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:  # noqa: S310
                content_type = response.headers.get_content_type()
                reply: bytes = response.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise TimestampUnavailable(
                TIMESTAMP_UNAVAILABLE, f"TSA answered HTTP {exc.code}", tsa=self.url, status=exc.code
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            message = f"TSA unreachable: {exc}"
            raise TimestampUnavailable(TIMESTAMP_UNAVAILABLE, message, tsa=self.url) from exc
        if len(reply) > MAX_REPLY_BYTES:
            raise _invalid("TSA reply is too large")
        if content_type != REPLY_TYPE:
            raise _invalid(f"TSA answered {content_type}, not {REPLY_TYPE}")
        return reply
