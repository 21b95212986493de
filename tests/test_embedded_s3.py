"""EmbeddedS3 starts locked down: only signed S3 requests get through, even from inside its namespace.

The boundary itself (namespace, other users, restarts, least privilege) is tested in test_store_boundary.py.
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import httpx
import pytest

from storage.embedded_s3 import EmbeddedS3, EmbeddedS3Error
from tests.fixtures_s3 import s3_port_base
from tests.store_netns import run_in_store_netns

pytestmark = pytest.mark.s3

_JWT_CHECK = r"""
import json, sys, time, urllib.request, urllib.error
filer, master, volume = sys.argv[1:4]
def call(method, url, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
out = [call("GET", filer + "/buckets/")[0], call("PUT", filer + "/buckets/planted/file.pdf", b"x")[0],
       call("DELETE", filer + "/buckets/planted")[0]]
for _ in range(40):  # right after start the master may have no writable volume yet
    assigned = json.loads(call("GET", master + "/dir/assign")[1] or "{}")
    if "fid" in assigned:
        break
    time.sleep(0.25)
fid = assigned["fid"]
for method, data in (("POST", b"x"), ("GET", None), ("DELETE", None)):
    out.append(call(method, volume + "/" + fid, data)[0])
print(json.dumps(out))
"""


def test_filer_and_volume_http_ports_refuse_anonymous_requests_even_inside(embedded_s3: EmbeddedS3) -> None:
    """Defence in depth behind the namespace: whoever gets in still meets JWT-protected filer and volume ports."""
    assert embedded_s3.pid is not None
    urls = (embedded_s3.url("filer"), embedded_s3.url("master"), embedded_s3.url("volume"))
    assert run_in_store_netns(embedded_s3.pid, _JWT_CHECK, *urls).strip() == "[401, 401, 401, 401, 401, 401]"


def test_anonymous_s3_is_refused(embedded_s3: EmbeddedS3) -> None:
    assert httpx.get(embedded_s3.url("s3") + "/").status_code == 403


def test_secrets_are_owner_only(embedded_s3: EmbeddedS3) -> None:
    files = [p for p in embedded_s3.config_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"secrets.json", "s3.json", "security.toml", "ca.crt", "filer.key"}
    assert {p.name for p in files} >= {"endpoint.json"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    base = s3_port_base() + 20
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 6))
        blocker.listen()
        with pytest.raises(EmbeddedS3Error, match=f"{base + 6}.*already in use"):
            EmbeddedS3(tmp_path, base, buckets=(), unprotected=False).start()


def test_early_exit_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedS3Error, match="exited early with code 1"):
        EmbeddedS3(tmp_path, s3_port_base() + 20, weed_binary="/bin/false", buckets=(), unprotected=False).start()
