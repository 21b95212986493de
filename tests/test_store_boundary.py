"""The embedded store's boundary: only authenticated S3 reaches the data.

Real SeaweedFS, real namespaces, a real second user (uid 65534); the listeners attacked are the ones weed
really holds, read from /proc. Tests that plant faults enter the store's namespace as root, like an attacker
with those rights.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from storage.buckets import ensure_bucket
from storage.embedded_s3 import EmbeddedS3, EmbeddedS3Error
from storage.embedded_s3_attach import EmbeddedS3NotRunning, attach
from storage.object_store import ObjectStore
from storage.s3_client import make_s3_client
from storage.s3_relay import UnixSocketRelay
from storage.settings import Settings, SettingsError
from tests.fixtures_s3 import s3_port_base
from tests.store_netns import (
    AS_NOBODY,
    NOBODY,
    http_get_in_store_netns,
    probe_as_nobody,
    weed_listeners,
)

pytestmark = [pytest.mark.s3, pytest.mark.once]
ROOT = Path(__file__).resolve().parents[1]
DENIED = {"ECONNREFUSED", "EACCES"}


def _until() -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)


def _client(store: EmbeddedS3, admin: bool = False) -> Any:
    ep = store.admin_endpoint if admin else store.endpoint
    return make_s3_client(ep.url, ep.access_key, ep.secret_key, ep.region)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A data directory outside pytest's 0700 tree, so another user can be given one."""
    path = Path(tempfile.mkdtemp(prefix="evault-store-"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


# --- the attack from another local user ---------------------------------------------------------------------


def test_another_user_reaches_nothing_but_signed_s3(embedded_s3: EmbeddedS3, s3_client: Any, worm_bucket: str) -> None:
    assert embedded_s3.boundary == "netns" and embedded_s3.pid is not None
    store = ObjectStore(s3_client, worm_bucket)
    vaulted = {f"doc-{i}.pdf": os.urandom(2048) for i in range(3)}
    stored = {key: store.put_write_once(key, data, retain_until=_until()) for key, data in vaulted.items()}

    found = weed_listeners(embedded_s3.pid)
    # What weed really opened: its TCP ports (inside its namespace) and Unix sockets (S3, filer, gRPC).
    assert {embedded_s3.ports.master, embedded_s3.ports.volume, embedded_s3.ports.filer} <= found.tcp_ports
    assert len(found.tcp_ports) >= 8, found
    assert str(embedded_s3.socket_path) in found.unix_paths and len(found.unix_paths) >= 3, found

    # weed names its gRPC sockets /tmp/seaweedfs-*.sock; its /tmp is the store's private run/tmp, not the host's.
    in_private_tmp = {p for p in found.unix_paths if p.startswith("/tmp/seaweedfs-")}
    assert in_private_tmp and not any(Path(p).exists() for p in in_private_tmp), in_private_tmp
    unix_targets = (set(found.unix_paths) - in_private_tmp) | {
        str(embedded_s3.tmp_path / Path(p).name) for p in in_private_tmp
    }
    tcp_targets = set(found.tcp_ports) | set(embedded_s3.ports.all())
    results = probe_as_nobody(tcp_targets, unix_targets, worm_bucket)
    assert len(results) == 15 * (len(tcp_targets) + len(unix_targets))
    for kind, where, method, path, outcome in results:
        if kind == "tcp" and where == embedded_s3.ports.s3:
            # The relay: S3 itself, which wants a SigV4 signature for everything (405: S3 has no such route).
            assert str(outcome).split()[1] in {"401", "403", "405"}, (where, method, path, outcome)
        else:
            assert outcome in DENIED, (kind, where, method, path, outcome)

    for key, data in vaulted.items():
        assert store.read(key, stored[key].version_id) == data
    assert httpx.get(embedded_s3.url("s3") + "/").status_code == 403
    assert httpx.put(embedded_s3.url("s3") + f"/{worm_bucket}/anon.pdf", content=b"x").status_code == 403


def test_root_in_the_namespace_can_plant_faults(embedded_s3: EmbeddedS3, s3_client: Any, s3_admin_client: Any) -> None:
    """The door tests use to plant faults works, and shows what the boundary keeps out."""
    assert embedded_s3.pid is not None
    ensure_bucket(s3_admin_client, "victim-col", object_lock=False)
    s3_client.put_object(Bucket="victim-col", Key="a", Body=b"bytes")
    master = embedded_s3.url("master")
    status, body = http_get_in_store_netns(embedded_s3.pid, master + "/cluster/status")
    assert status == 200 and "Leader" in body
    status, _ = http_get_in_store_netns(embedded_s3.pid, master + "/col/delete?collection=victim-col")
    assert status == 204
    with pytest.raises(ClientError):
        s3_client.get_object(Bucket="victim-col", Key="a")
    # Defence in depth inside: the filer and volume ports still want JWTs.
    status, _ = http_get_in_store_netns(embedded_s3.pid, embedded_s3.url("filer") + "/buckets/")
    assert status == 401


# --- least privilege -----------------------------------------------------------------------------------------


def test_service_identity_cannot_create_buckets_but_does_its_job(
    s3_client: Any, s3_admin_client: Any, worm_bucket: str
) -> None:
    with pytest.raises(ClientError) as refused:
        s3_client.create_bucket(Bucket="service-made-this", ObjectLockEnabledForBucket=True)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3_client.delete_bucket(Bucket=worm_bucket)

    until = _until()
    put = s3_client.put_object(
        Bucket=worm_bucket, Key="k.pdf", Body=b"%PDF", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )
    version = put["VersionId"]
    assert s3_client.get_object(Bucket=worm_bucket, Key="k.pdf", VersionId=version)["Body"].read() == b"%PDF"
    assert s3_client.head_object(Bucket=worm_bucket, Key="k.pdf", VersionId=version)["ObjectLockMode"] == "COMPLIANCE"
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=worm_bucket)["Contents"]] == ["k.pdf"]
    assert len(s3_client.list_object_versions(Bucket=worm_bucket)["Versions"]) == 1
    assert s3_client.get_bucket_versioning(Bucket=worm_bucket)["Status"] == "Enabled"
    assert s3_client.get_object_lock_configuration(Bucket=worm_bucket)["ObjectLockConfiguration"]
    longer = until + dt.timedelta(days=1)
    s3_client.put_object_retention(
        Bucket=worm_bucket, Key="k.pdf", VersionId=version, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": longer}
    )
    got = s3_client.get_object_retention(Bucket=worm_bucket, Key="k.pdf", VersionId=version)["Retention"]
    assert got["RetainUntilDate"] == longer
    with pytest.raises(ClientError):  # shortening stays refused
        s3_client.put_object_retention(
            Bucket=worm_bucket,
            Key="k.pdf",
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        )
    with pytest.raises(ClientError):  # an Admin-only bucket call
        s3_client.put_bucket_encryption(
            Bucket=worm_bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    ensure_bucket(s3_admin_client, "admin-can-create", object_lock=True)


# --- no boundary: refuse, unless explicitly accepted ---------------------------------------------------------


def test_no_boundary_means_no_start(store_dir: Path) -> None:
    base = s3_port_base() + 40
    store = EmbeddedS3(store_dir, base, buckets=(), unprotected=False, unshare="/nonexistent/unshare")
    threads = set(threading.enumerate())  # other tests' threads may still end meanwhile
    with pytest.raises(EmbeddedS3Error, match="EVAULT_S3_EMBEDDED_UNPROTECTED=accept"):
        store.start()
    assert store.boundary is None and not store.alive()
    assert set(threading.enumerate()) - threads == set()  # none of ours is left
    assert not _processes_mentioning(str(store_dir))
    assert Settings.from_env({"EVAULT_S3_EMBEDDED_UNPROTECTED": "accept"}).s3.embedded_unprotected
    assert not Settings.from_env({}).s3.embedded_unprotected
    with pytest.raises(SettingsError, match="EVAULT_S3_EMBEDDED_UNPROTECTED"):
        Settings.from_env({"EVAULT_S3_EMBEDDED_UNPROTECTED": "1"})


def test_unprotected_store_only_when_accepted(store_dir: Path) -> None:
    base = s3_port_base() + 40
    store = EmbeddedS3(store_dir, base, buckets=[("open-bucket", False)], unprotected=True, unshare="/nonexistent")
    try:
        store.start()
        assert store.boundary == "unprotected" and store.describe()["boundary"] == "unprotected"
        _client(store).put_object(Bucket="open-bucket", Key="k", Body=b"v")
        # What "unprotected" means: the master's admin API answers any local process.
        assert httpx.get(store.url("master") + "/cluster/status").status_code == 200
    finally:
        store.stop(timeout=3)
    assert not _processes_mentioning(str(store_dir))


# --- lifecycle -----------------------------------------------------------------------------------------------


def _assert_private(root: Path) -> None:
    """Every directory owner-only (weed writes some files 0644, e.g. ``.vif``: the 0700 directories guard them)."""
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            assert stat.S_IMODE(mode) == 0o700, f"{path} is {oct(stat.S_IMODE(mode))}"
        elif stat.S_ISSOCK(mode):
            assert stat.S_IMODE(mode) & 0o077 == 0, f"{path} is {oct(stat.S_IMODE(mode))}"


def test_restart_on_existing_data_under_a_permissive_umask(store_dir: Path) -> None:
    base = s3_port_base() + 10
    old = os.umask(0)
    try:
        server = EmbeddedS3(store_dir, base, buckets=[("keep", True)], unprotected=False)
        with server:
            first = server.endpoint
            stored = ObjectStore(_client(server), "keep").put_write_once("a.pdf", b"%PDF kept", retain_until=_until())
            assert attach(store_dir) == first
            _assert_private(store_dir)
            secrets = [p for p in server.config_path.rglob("*") if p.is_file()]
            assert {p.name for p in secrets} >= {"secrets.json", "s3.json", "endpoint.json", "ca.crt", "filer.key"}
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets)
            # weed hard-codes /tmp/seaweedfs-*-grpc-<port>.sock: its private /tmp is run/tmp, and none is in /tmp.
            grpc_socks = list(server.tmp_path.glob("seaweedfs-*-grpc-*.sock"))
            assert {p.name for p in grpc_socks} >= {f"seaweedfs-master-grpc-{base + 3}.sock"}
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in grpc_socks)
            assert not [p for port in range(base, base + 8) for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]
            server.stop(timeout=5)
        with pytest.raises(EmbeddedS3NotRunning):
            attach(store_dir)
        assert not any(Path("/tmp").glob(f"seaweedfs-*-{base}.sock"))
        os.umask(0o022)
        with server:
            assert server.endpoint == first
            store = ObjectStore(_client(server), "keep")
            assert store.read("a.pdf", stored.version_id) == b"%PDF kept"
            assert store.head("a.pdf", stored.version_id).lock_mode == "COMPLIANCE"
            _assert_private(store_dir)
            # A crashed service leaves weed running: the next start stops that orphan first.
            orphan, orphan_proc = server.pid, server._proc
            assert server._relay is not None and orphan_proc is not None
            server._relay.stop()
            server._proc = server._relay = None
            again = EmbeddedS3(store_dir, base, buckets=(), unprotected=False)
            try:
                again.start()
                assert orphan_proc.poll() is not None or _is_zombie(orphan)
                assert ObjectStore(_client(again), "keep").read("a.pdf", stored.version_id) == b"%PDF kept"
            finally:
                again.stop(timeout=3)
    finally:
        os.umask(old)
    assert not _processes_mentioning(str(store_dir))


def _is_zombie(pid: int | None) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_sigterm_reaches_weed_and_a_long_data_path_works(store_dir: Path) -> None:
    deep = store_dir / ("d" * 60) / ("e" * 60)  # the socket's own path is far past sockaddr_un's 107 bytes
    server = EmbeddedS3(deep, s3_port_base() + 20, buckets=[("long-path", False)], unprotected=False)
    server.start()
    try:
        assert len(str(server.socket_path)) > 108
        client = _client(server)
        client.put_object(Bucket="long-path", Key="k", Body=b"through the relay")
        assert client.get_object(Bucket="long-path", Key="k")["Body"].read() == b"through the relay"
        pid = server.pid
        assert pid is not None and server.alive() and server.poll() is None
        assert Path(f"/proc/{pid}/exe").resolve().name == "weed"  # the wrapper exec'd into weed
        group = os.getpgid(pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.poll() is not None and not server.alive()
        assert not [p for p in _processes_mentioning(str(deep)) if os.getpgid(p) == group]
    finally:
        server.stop(timeout=3)
    assert not _processes_mentioning(str(deep))


def test_a_failed_start_leaves_nothing_running(store_dir: Path, tmp_path: Path) -> None:
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    threads = set(threading.enumerate())  # other tests' threads may still end meanwhile
    base = s3_port_base() + 30
    with pytest.raises(EmbeddedS3Error, match="not ready after 2"):
        EmbeddedS3(store_dir, base, weed_binary=str(hang), buckets=(), unprotected=False).start(timeout=2)
    with pytest.raises(EmbeddedS3Error, match="exited early with code 1"):
        EmbeddedS3(store_dir, base, weed_binary="/bin/false", buckets=(), unprotected=False).start()
    assert not _processes_mentioning(str(store_dir))
    assert set(threading.enumerate()) - threads == set()  # none of ours is left
    with socket.socket() as s:  # the relay's port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", base))


UNPRIVILEGED_START = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from storage.embedded_s3 import EmbeddedS3
    from storage.s3_client import make_s3_client
    data, base, weed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    s = EmbeddedS3(data, base, weed_binary=weed, buckets=[("nobody-bucket", True)], unprotected=False)
    ep = s.start()
    try:
        c = make_s3_client(ep.url, ep.access_key, ep.secret_key, ep.region)
        c.put_object(Bucket="nobody-bucket", Key="k", Body=b"unprivileged")
        body = c.get_object(Bucket="nobody-bucket", Key="k")["Body"].read().decode()
        uid = [line.split()[1] for line in open(f"/proc/{s.pid}/status") if line.startswith("Uid:")][0]
        print(json.dumps({"boundary": s.boundary, "body": body, "weed_uid": int(uid), "me": os.getuid()}))
    finally:
        s.stop(timeout=3)
    """
)


def test_an_unprivileged_user_gets_the_same_boundary(store_dir: Path) -> None:
    """The same code, as uid 65534: ``unshare -rn`` and the readiness probe's ``nsenter`` need no root."""
    os.chown(store_dir, NOBODY, NOBODY)
    # The venv's interpreter may live where that user cannot go (here: under /root); use the system one of the
    # same version with the venv's packages. The probe re-executes sys.executable, so it must be reachable.
    python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert python.exists(), f"{python} is needed to run the store as another user"
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    weed = str(Path(sys.executable).parent / "weed")
    args = [str(store_dir / "data"), str(s3_port_base() + 50), weed]
    result = subprocess.run(
        [*AS_NOBODY, str(python), "-c", UNPRIVILEGED_START, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}", "HOME": str(store_dir)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"boundary": "netns", "body": "unprivileged", "weed_uid": NOBODY, "me": NOBODY}
    assert not _processes_mentioning(str(store_dir))


# --- the relay on its own ------------------------------------------------------------------------------------


def test_relay_stop_closes_every_connection_and_thread(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    accepted: list[socket.socket] = []

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(65536), b"")]).start()

    threading.Thread(target=echo, daemon=True).start()
    threads = set(threading.enumerate())  # other tests' threads may still end meanwhile
    relay = UnixSocketRelay(s3_port_base() + 60, lambda: str(path))
    relay.start()
    clients = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(3)]
    payload = os.urandom(3 << 20)
    clients[0].sendall(payload[:100])
    assert clients[0].recv(100) == payload[:100]
    sender = threading.Thread(target=clients[1].sendall, args=(payload,))
    sender.start()
    got = bytearray()
    while len(got) < len(payload):
        got += clients[1].recv(1 << 20)
    sender.join()
    assert bytes(got) == payload
    relay.stop()
    assert relay.thread_count() == 0 and not relay.running
    for c in clients:
        c.settimeout(5)
        assert c.recv(10) == b""  # closed by the relay
        c.close()
    server.close()
    for conn in accepted:
        conn.close()
    time.sleep(0.2)
    assert set(threading.enumerate()) - threads == set()  # none of ours is left
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=2)
