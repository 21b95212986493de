"""The origins allowed to frame the embedded signing page: what counts as one, and the operator's command."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from compliance.errors import InvalidInput
from vault.embed_origins import frame_ancestors, normalise_origin

Evault = Callable[..., tuple[int, str, str]]

GOOD = [
    ("https://app.example.com", "https://app.example.com"),
    ("HTTPS://App.Example.COM", "https://app.example.com"),
    ("https://app.example.com:443", "https://app.example.com"),
    ("https://app.example.com:8443", "https://app.example.com:8443"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
]
BAD = [
    "app.example.com",  # no scheme
    "https://app.example.com/",  # a path, even an empty one
    "https://app.example.com/embed",
    "https://app.example.com?x=1",
    "https://app.example.com#top",
    "https://user@app.example.com",
    "https://*.example.com",
    "*",
    "'self'",
    "ftp://files.example.com",
    "javascript://x",
    "https://app.example.com:0",
    "https://app.example.com:70000",
    "https://app.example.com:https",
    "https://app.example.com:\u00b2",  # a digit to str.isdigit(), not to int()
    "https://app.example.com:\u0663",  # an Arabic-Indic three, which int() reads as 3
    "https://app.example.com; script-src *",
    "https://app.example.com https://evil.example",
    "https://-bad-.example.com",
    "https://[not-ipv6]",
    "https://" + "a" * 300 + ".com",
]


@pytest.mark.once
@pytest.mark.parametrize(("raw", "origin"), GOOD)
def test_an_origin_is_scheme_host_and_port_in_canonical_form(raw: str, origin: str) -> None:
    assert normalise_origin(raw) == origin


@pytest.mark.once
@pytest.mark.parametrize("raw", BAD)
def test_anything_else_is_refused_so_the_directive_cannot_be_widened(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_origin(raw)
    assert refused.value.code == "Embed.InvalidOrigin"


@pytest.mark.once
def test_no_origin_means_no_framing() -> None:
    assert frame_ancestors([]) == "frame-ancestors 'none'"
    assert (
        frame_ancestors(["https://a.example", "https://b.example"])
        == "frame-ancestors https://a.example https://b.example"
    )


def _origins(evault: Evault, *args: str) -> tuple[int, dict[str, object] | None, str]:
    code, out, err = evault("org", "origins", *args, "--json")
    return code, (json.loads(out) if code == 0 else None), err


def test_the_operator_sets_shows_and_clears_an_organisations_origins(evault: Evault) -> None:
    org = json.loads(evault("org", "create", "Acme Lending", "--json")[1])["id"]
    other = json.loads(evault("org", "create", "Other Bank", "--json")[1])["id"]
    code, view, _ = _origins(evault, org)
    assert code == 0 and view == {"org_id": org, "origins": [], "content_security_policy": "frame-ancestors 'none'"}

    code, view, _ = _origins(evault, org, "https://LOANS.example.com:443", "http://localhost:3000")
    assert code == 0 and view is not None
    assert view["origins"] == ["http://localhost:3000", "https://loans.example.com"]
    assert view["content_security_policy"] == "frame-ancestors http://localhost:3000 https://loans.example.com"
    assert _origins(evault, org)[1] == view
    assert _origins(evault, other)[1] == {
        "org_id": other,
        "origins": [],
        "content_security_policy": "frame-ancestors 'none'",
    }

    # one bad origin refuses the whole list and changes nothing
    code, _, err = _origins(evault, org, "https://ok.example.com", "https://bad.example.com/path")
    assert code == 1 and "Embed.InvalidOrigin" in err
    assert _origins(evault, org)[1] == view

    code, _, err = _origins(evault, org, "https://ok.example.com", "--clear")
    assert code == 1 and "Request.Invalid" in err
    code, view, _ = _origins(evault, org, "--clear")
    assert code == 0 and view is not None and view["origins"] == []
    code, _, err = _origins(evault, "org_missing", "https://ok.example.com")
    assert code == 1 and "Organisation.NotFound" in err
