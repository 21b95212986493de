"""Object keys are pure functions of identifiers: tested on their own, with no I/O."""

from __future__ import annotations

import pytest

from storage.keys import authoritative_key, checkpoint_key, copy_key, envelope_of_key

pytestmark = pytest.mark.once  # independent of the database under test: the SQLite pass only

ORG, ENV, SHA = "org_abcdefgh12", "env_abcdefgh34", "0f" * 32


def test_authoritative_key_names_org_envelope_position_and_hash_and_reads_back() -> None:
    key = authoritative_key(ORG, ENV, 2, SHA)
    assert key == f"authoritative/{ORG}/{ENV}/002-{SHA}.pdf"
    assert envelope_of_key(key) == ENV


@pytest.mark.parametrize(
    "key", ["copies/org_abcdefgh12/env_abcdefgh34/x.pdf", "authoritative/x.pdf", f"authoritative/{ORG}/../a/b"]
)
def test_keys_outside_the_layout_name_no_envelope(key: str) -> None:
    assert envelope_of_key(key) is None


@pytest.mark.parametrize(
    ("org", "env", "pos", "sha"),
    [("org/../x", ENV, 0, SHA), (ORG, "env_x", 0, SHA), (ORG, ENV, -1, SHA), (ORG, ENV, 0, SHA.upper())],
)
def test_bad_identifiers_never_become_keys(org: str, env: str, pos: int, sha: str) -> None:
    with pytest.raises(ValueError):
        authoritative_key(org, env, pos, sha)


def test_copy_and_checkpoint_keys() -> None:
    assert copy_key(ORG, ENV, "cp_abcdefgh56") == f"copies/{ORG}/{ENV}/cp_abcdefgh56.pdf"
    assert checkpoint_key(ORG, 7) == f"log/{ORG}/checkpoint/{7:020d}"
