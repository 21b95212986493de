"""The remembered preparation of X.509 name values answers exactly as asn1crypto's own, and is what pyHanko uses.

Equal means the same prepared string or the same error (type and message), for strings of every kind RFC 4518
treats specially; a string is prepared once, a refused one every time, and a long one is never remembered.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from asn1crypto import x509

from compliance.signatures import name_prep, pdf_validation
from tests import pdf_factory, signed_pdfs

pytestmark = pytest.mark.once  # no database involved

name_prep.install()
ORIGINAL = x509.NameTypeAndValue._ldap_string_prep.original  # type: ignore[attr-defined]

# What RFC 4518 maps, removes, folds, normalises or refuses, beside plain text.
ALPHABET = (
    "abcXYZ019 .,-'"  # plain
    "\u00ad\u034f\u180b\ufe0f\ufffc"  # mapped to nothing
    "\t\n\x0b\x0c\r\x85"  # mapped to a space
    "\x00\x07\x1f\x7f\u200b\u200d\u2060\ufeff"  # removed controls and zero-width characters
    "\u00a0\u2000\u2028\u3000"  # other spaces
    "ÉéßİıΣς\u0130ﬁ\uff21\u2460"  # case folding and compatibility forms (NFKC)
    "\u0301\u0627\u05d0"  # a combining mark; Arabic and Hebrew (right to left)
    "\ue000\U000f0000\ufdd0\ufffd\u0340"  # private use, non-characters, replacement, deprecated
)


def _outcome(prep: Any, string: str) -> tuple[Any, ...]:
    try:
        return ("value", prep(None, string))
    except Exception as exc:
        return ("error", type(exc), str(exc))


def test_every_shape_is_prepared_as_asn1crypto_prepares_it() -> None:
    rng = random.Random(4518)
    strings = ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 24))) for _ in range(3000)] + [
        "",
        " ",
        "Evault  Test Signer",
        "\u0627\u0628",
        "\u0627a\u0628",
        "x" * (name_prep.MAX_CHARS + 1),
    ]
    refused = 0
    for string in strings:
        for _ in range(2):  # the second time from memory
            outcome = _outcome(x509.NameTypeAndValue._ldap_string_prep, string)
            assert outcome == _outcome(ORIGINAL, string), repr(string)
        refused += outcome[0] == "error"
    assert 100 < refused < len(strings) - 100  # both kinds were exercised


def test_a_value_is_prepared_once_and_a_refused_or_long_one_every_time() -> None:
    calls: list[str] = []

    def counting(self: Any, string: str) -> str:
        calls.append(string)
        return ORIGINAL(self, string)  # type: ignore[no-any-return]

    prep = name_prep._remembering(counting)
    for string in ["Evault Test Signer", "\ue000 private", "y" * (name_prep.MAX_CHARS + 1)] * 3:
        _outcome(prep, string)
    assert calls.count("Evault Test Signer") == 1
    assert calls.count("\ue000 private") == 3
    assert calls.count("y" * (name_prep.MAX_CHARS + 1)) == 3


def test_names_compare_as_before_and_signatures_grade_through_it() -> None:
    def name(common: str) -> x509.Name:
        return x509.Name.build({"common_name": common, "organization_name": "Evault"})

    assert name("Evault  TEST\u00a0Signer") == name("evault test signer")
    assert name("Evault Test Signer") != name("Evault Test Signers")
    assert pdf_validation.name_prep is name_prep and hasattr(x509.NameTypeAndValue._ldap_string_prep, "original")
    root = pdf_factory.signing_pki()[2]
    (verdict,) = pdf_validation.validate_signatures(signed_pdfs.valid(), [root]).verdicts
    assert verdict.trusted and verdict.bottom_line
