"""EmbeddedS3 starts locked down: only signed S3 requests get through, and a restart keeps keys and data."""

from __future__ import annotations

import datetime as dt
import socket
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.embedded_s3 import EmbeddedS3, EmbeddedS3Error
from storage.object_store import ObjectStore, ensure_bucket, make_s3_client
from tests.fixtures_s3 import s3_port_base

pytestmark = pytest.mark.s3


def test_filer_and_volume_http_ports_refuse_anonymous_requests(embedded_s3: EmbeddedS3) -> None:
    filer = embedded_s3.url("filer")
    assert httpx.get(f"{filer}/buckets/").status_code == 401
    assert httpx.put(f"{filer}/buckets/planted/file.pdf", content=b"x").status_code == 401
    assert httpx.delete(f"{filer}/buckets/planted").status_code == 401
    # The master hands out a file id to anyone, but without the JWT the volume server refuses the write.
    fid = httpx.get(f"{embedded_s3.url('master')}/dir/assign").json()["fid"]
    volume = embedded_s3.url("volume")
    assert httpx.post(f"{volume}/{fid}", files={"file": ("f", b"x")}).status_code == 401
    assert httpx.get(f"{volume}/{fid}").status_code == 401
    assert httpx.delete(f"{volume}/{fid}").status_code == 401


def test_anonymous_s3_is_refused(embedded_s3: EmbeddedS3) -> None:
    assert httpx.get(embedded_s3.url("s3") + "/").status_code == 403


def test_secrets_are_owner_only(embedded_s3: EmbeddedS3) -> None:
    files = [p for p in embedded_s3.config_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"secrets.json", "s3.json", "security.toml", "ca.crt", "filer.key"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    base = s3_port_base() + 20
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 6))
        blocker.listen()
        with pytest.raises(EmbeddedS3Error, match=f"{base + 6}.*already in use"):
            EmbeddedS3(tmp_path, base).start()


def test_restart_keeps_data_and_credentials(tmp_path: Path) -> None:
    server = EmbeddedS3(tmp_path, s3_port_base() + 10)
    with server:
        first = server.endpoint
        client: Any = make_s3_client(first.url, first.access_key, first.secret_key, first.region)
        ensure_bucket(client, "keep", object_lock=True)
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
        stored = ObjectStore(client, "keep").put_write_once("a.pdf", b"%PDF kept", retain_until=until)
    assert not any(Path("/tmp").glob(f"seaweedfs-*-{server.ports.s3}.sock"))
    with server:
        assert server.endpoint == first
        client = make_s3_client(first.url, first.access_key, first.secret_key, first.region)
        store = ObjectStore(client, "keep")
        assert store.read("a.pdf", stored.version_id) == b"%PDF kept"
        assert store.head("a.pdf", stored.version_id).lock_mode == "COMPLIANCE"


def test_early_exit_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedS3Error, match="exited early with code 1"):
        EmbeddedS3(tmp_path, s3_port_base() + 20, weed_binary="/bin/false").start()
