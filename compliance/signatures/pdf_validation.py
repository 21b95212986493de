"""Validating the signatures inside a PDF, graded rather than yes/no (pyHanko's status model).

Every embedded signature and document timestamp is checked offline against explicit trust roots: byte ranges
and the CMS signature (``intact``, ``valid``), the certificate chain (``trusted``), embedded timestamps, and
pyHanko's difference analysis of later incremental updates (``modification_level``, ``docmdp_ok``). pyHanko
keeps ``intact`` and ``valid`` true on illegal incremental updates, so acceptance is judged on the
modification level and coverage as well. Any exception while validating is a failed signature whose message
is kept as evidence, never a crash.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext

from compliance.signatures import hex_strings, name_prep

hex_strings.install()  # a signature's /Contents is a long hex string, read a byte at a time by pyHanko
name_prep.install()  # pyHanko compares certificate names, each value prepared afresh per comparison

# pyHanko logs every rejected signature with a traceback at ERROR; the verdict carries the reason instead.
for _name in ("pyhanko.sign.validation", "pyhanko.sign.diff_analysis", "pyhanko_certvalidator"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

ACCEPTABLE_MODIFICATIONS = {"NONE", "LTA_UPDATES", "FORM_FILLING"}


@dataclass(frozen=True)
class SignatureVerdict:
    """One signature's graded result: what was checked, what held, and what is anomalous."""

    field: str
    kind: str  # signature | document_timestamp
    signer: str | None
    signing_time: str | None
    intact: bool
    valid: bool
    trusted: bool
    coverage: str | None
    modification_level: str | None
    docmdp_ok: bool | None
    timestamp: str | None  # embedded signature timestamp: "valid", "invalid" or None when absent
    bottom_line: bool
    error: str | None = None

    @property
    def anomalies(self) -> list[str]:
        found = []
        if self.error:
            found.append("validation_error")
        if not self.intact:
            found.append("not_intact")
        if not self.valid:
            found.append("invalid_signature")
        if not self.trusted:
            found.append("untrusted_signer")
        if self.modification_level is not None and self.modification_level not in ACCEPTABLE_MODIFICATIONS:
            found.append(f"modified_{self.modification_level.lower()}")
        if self.docmdp_ok is False:
            found.append("docmdp_violated")
        if self.timestamp == "invalid":
            found.append("timestamp_invalid")
        return found

    @property
    def acceptable(self) -> bool:
        """Cryptographically sound and not changed since in a way the difference analysis forbids."""
        return (
            self.error is None
            and self.intact
            and self.valid
            and self.docmdp_ok is not False
            and (self.modification_level is None or self.modification_level in ACCEPTABLE_MODIFICATIONS)
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "anomalies": self.anomalies, "acceptable": self.acceptable}


@dataclass(frozen=True)
class DocumentSignatures:
    verdicts: tuple[SignatureVerdict, ...]

    @property
    def acceptable(self) -> bool:
        return all(v.acceptable for v in self.verdicts)

    @property
    def anomalies(self) -> list[str]:
        """Per-signature anomalies, plus changes after the last signature that no signature covers
        (an appended tail, a later trailer or metadata update): earlier signatures cover only their revision,
        which is normal when a later signature or timestamp covers the whole file."""
        found = [f"{v.field}:{a}" for v in self.verdicts for a in v.anomalies]
        if self.verdicts and not any(v.coverage == "ENTIRE_FILE" for v in self.verdicts):
            found.append("uncovered_changes_after_last_signature")
        return found

    @property
    def clean(self) -> bool:
        """Every signature trusted and sound and the whole file covered: never true with any anomaly."""
        return bool(self.verdicts) and all(v.bottom_line for v in self.verdicts) and not self.anomalies

    def as_json(self) -> dict[str, Any]:
        return {
            "signatures": [v.as_json() for v in self.verdicts],
            "anomalies": self.anomalies,
            "acceptable": self.acceptable,
            "clean": self.clean,
        }


def _enum_name(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "name", value))


def _signer(status: Any) -> str | None:
    cert = getattr(status, "signing_cert", None)
    return None if cert is None else str(cert.subject.human_friendly)


def _failed(field: str, kind: str, exc: Exception) -> SignatureVerdict:
    error = f"{type(exc).__name__}: {exc}"
    return SignatureVerdict(field, kind, None, None, False, False, False, None, None, None, None, False, error)


def _verdict(sig: Any, context: ValidationContext) -> SignatureVerdict:
    field = str(sig.field_name)
    is_timestamp = sig.sig_object_type == "/DocTimeStamp"
    kind = "document_timestamp" if is_timestamp else "signature"
    try:
        if is_timestamp:
            status: Any = validate_pdf_timestamp(sig, validation_context=context)
            when = status.timestamp
            embedded_ts = None
        else:
            status = validate_pdf_signature(sig, context)
            when = status.signer_reported_dt
            ts = status.timestamp_validity
            embedded_ts = None if ts is None else ("valid" if ts.valid and ts.intact else "invalid")
    except MemoryError:  # the caller's memory limit, not the signature's fault
        raise
    except Exception as exc:  # a damaged CMS blob raises instead of returning a status
        return _failed(field, kind, exc)
    return SignatureVerdict(
        field=field,
        kind=kind,
        signer=_signer(status),
        signing_time=None if when is None else when.isoformat(),
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        coverage=_enum_name(status.coverage),
        modification_level=_enum_name(status.modification_level),
        docmdp_ok=status.docmdp_ok,
        timestamp=embedded_ts,
        # A document timestamp's status has no bottom line of its own: sound, trusted and unmodified is its.
        bottom_line=bool(
            status.bottom_line
            if hasattr(status, "bottom_line")
            else status.intact and status.valid and status.trusted and status.docmdp_ok is not False
        ),
    )


def validate_signatures(data: bytes | BinaryIO, trust_roots: list[asn1_x509.Certificate]) -> DocumentSignatures:
    """Grade every signature of a PDF the caller has already vetted as readable and unencrypted (its bytes, or a
    seekable stream of them: pyHanko reads the signed ranges from it)."""
    try:
        embedded = PdfFileReader(io.BytesIO(data) if isinstance(data, bytes) else data).embedded_signatures
    except Exception as exc:  # a signature dictionary whose CMS cannot even be parsed
        return DocumentSignatures((_failed("(unparsable)", "signature", exc),))
    return grade_signatures(embedded, trust_roots)


def grade_signatures(embedded: Iterable[Any], trust_roots: list[asn1_x509.Certificate]) -> DocumentSignatures:
    """Grade signatures a pyHanko reader has already found (``reader.embedded_signatures``), so a caller that
    has parsed the document for its own reasons (an upload's vetting) does not parse it a second time."""
    context = ValidationContext(trust_roots=trust_roots, allow_fetching=False)
    return DocumentSignatures(tuple(_verdict(sig, context) for sig in embedded))


def load_trust_roots(pem: bytes) -> list[asn1_x509.Certificate]:
    """PEM certificates (one or more) as pyHanko wants them; an empty list trusts nobody."""
    return [asn1_x509.Certificate.load(der) for _, _, der in asn1_pem.unarmor(pem, multiple=True)]
