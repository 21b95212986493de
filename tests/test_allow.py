"""Every path answers OPTIONS (204) and a wrong method (405) with the same ``Allow``: the methods it documents."""

from __future__ import annotations

import re
from typing import Any

ENVELOPE = "env_" + "a" * 20
OPERATIONS = ("get", "post", "put", "patch", "delete")


def _allow(response: Any) -> set[str]:
    return {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}


def test_options_and_405_name_every_documented_method(client: Any, tenant: Any) -> None:
    _, headers = tenant
    document = client.get("/api/v2/openapi.json").json()
    checked = 0
    for path, item in document["paths"].items():
        documented = {m.upper() for m in item if m in OPERATIONS}
        # Other parameters get a value every route accepts (a page number is an integer).
        concrete = re.sub(r"\{[a-z_]+\}", "1", path.replace("{envelope_id}", ENVELOPE))
        options = client.options(concrete, headers=headers)
        assert options.status_code == 204, (path, options.status_code)
        assert _allow(options) - {"OPTIONS", "HEAD"} == documented, (path, options.headers.get("allow"))
        unused = next(m for m in ("PUT", "PATCH", "DELETE") if m not in documented)
        refused = client.request(unused, concrete, headers=headers)
        assert refused.status_code == 405, (path, refused.status_code)
        assert _allow(refused) - {"OPTIONS", "HEAD"} == documented, (path, refused.headers.get("allow"))
        checked += 1
    assert checked >= 19
