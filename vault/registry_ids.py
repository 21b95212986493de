"""MERS registry identifiers: the seven-digit Org ID of an organisation and the 18-digit MIN of an envelope.

A MIN is the registering organisation's Org ID (7 digits), a sequence the organisation chooses (10 digits) and
one check digit computed "Mod 10 Weight 2" over the first 17: from the rightmost digit leftwards, every other
digit (starting with the rightmost) is doubled, the digits of the products and of the undoubled digits are
summed, and the check digit brings the sum up to the next multiple of ten. This is IBM's Modulus 10 self-check
digit, the same arithmetic as Luhn's (MERS names it; the npm package ``mers-min`` implements it the same way).
Pure functions, no I/O: the services decide what a refusal means for a request.
"""

from __future__ import annotations

import re

from compliance.errors import InvalidInput

ORG_ID = re.compile(r"[0-9]{7}")
MIN_PATTERN = re.compile(r"[0-9]{18}")


def check_digit(base: str) -> int:
    """The Mod 10 Weight 2 check digit of a string of digits."""
    total = 0
    for offset, char in enumerate(reversed(base)):
        value = int(char) * (2 if offset % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def make_min(org_id: str, sequence: int) -> str:
    """The MIN an organisation's Org ID and a sequence number make (for tests and tooling)."""
    base = f"{org_id}{sequence:010d}"
    return base + str(check_digit(base))


def check_mers_org_id(value: object, field: str = "mers_org_id") -> str:
    if not isinstance(value, str) or not ORG_ID.fullmatch(value):
        raise InvalidInput("Mers.InvalidOrgId", "a MERS Org ID is exactly seven digits", field=field)
    return value


def check_min(value: object, field: str = "min") -> str:
    """Eighteen digits whose last is the Mod 10 Weight 2 check digit of the first seventeen."""
    if not isinstance(value, str) or not MIN_PATTERN.fullmatch(value):
        raise InvalidInput("Min.Invalid", "a MIN is exactly 18 digits", field=field)
    expected = check_digit(value[:17])
    if int(value[17]) != expected:
        raise InvalidInput(
            "Min.BadCheckDigit",
            "the MIN's last digit is not the Mod 10 Weight 2 check digit of the first seventeen",
            field=field,
            expected_check_digit=expected,
        )
    return value
