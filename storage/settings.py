"""Every setting of the service, read once from the environment.

One frozen object per concern, grouped in :class:`Settings`. A bad value stops the start with a message that
names the variable, so a misconfigured vault never runs half-configured. The embedded default (no variables
set) keeps everything under one data directory: SQLite, a locked-down SeaweedFS and the vault's signing key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _rate(env: Mapping[str, str], name: str, default: str) -> tuple[int, int]:
    """``QUOTA/WINDOW_SECONDS``, e.g. ``100/60``."""
    raw = env.get(name) or default
    quota, _, window = raw.partition("/")
    if not (quota.isdigit() and window.isdigit() and int(quota) >= 1 and int(window) >= 1):
        raise SettingsError(f"{name} must be QUOTA/WINDOW_SECONDS with both at least 1, e.g. 100/60, got {raw!r}")
    return int(quota), int(window)


def _witnesses(raw: str) -> tuple[tuple[str, str], ...]:
    entries = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        url, _, vkey = item.partition(" ")
        if not url.startswith(("http://", "https://")) or not vkey.strip():
            raise SettingsError(f"EVAULT_WITNESSES entries are 'URL VKEY', got {item!r}")
        entries.append((url, vkey.strip()))
    return tuple(entries)


@dataclass(frozen=True)
class S3Settings:
    """Object storage. ``endpoint`` empty means: start the embedded SeaweedFS under the data directory."""

    endpoint: str  # EVAULT_S3_ENDPOINT, e.g. https://s3.eu-west-1.amazonaws.com or http://minio:9000
    public_endpoint: str  # EVAULT_S3_PUBLIC_ENDPOINT: host used in presigned URLs handed to clients
    region: str  # EVAULT_S3_REGION
    access_key: str  # EVAULT_S3_ACCESS_KEY
    secret_key: str  # EVAULT_S3_SECRET_KEY
    authoritative_bucket: str  # EVAULT_S3_BUCKET: Object Lock + versioning, holds originals and checkpoints
    copies_bucket: str  # EVAULT_S3_COPIES_BUCKET: non-authoritative copies, apart from the originals
    staging_bucket: str  # EVAULT_S3_STAGING_BUCKET: staged uploads (no lock, they expire); default the copies one
    create_buckets: bool  # EVAULT_S3_CREATE_BUCKETS: create missing buckets (with Object Lock) at start
    embedded_port_base: int  # EVAULT_S3_EMBEDDED_PORT_BASE: first of eight loopback ports of embedded weed

    @property
    def embedded(self) -> bool:
        return self.endpoint == ""


@dataclass(frozen=True)
class VaultSettings:
    """Custody policy."""

    retention_days: int  # EVAULT_RETENTION_DAYS: COMPLIANCE-mode retention of every authoritative object
    url_expiry_seconds: int  # EVAULT_URL_EXPIRY_SECONDS: lifetime of presigned download URLs
    max_upload_bytes: int  # EVAULT_MAX_UPLOAD_BYTES: larger bodies are refused with 413
    signing_key_path: Path  # EVAULT_SIGNING_KEY: PEM Ed25519 private key; generated if absent (embedded)
    log_origin: str  # EVAULT_LOG_ORIGIN: origin prefix of every checkpoint, e.g. vault.example.com/log
    key_name: str  # EVAULT_KEY_NAME: signed-note key name of the vault's checkpoint key
    checkpoint_interval_seconds: int  # EVAULT_CHECKPOINT_INTERVAL: how often new events are checkpointed
    witnesses: tuple[tuple[str, str], ...]  # EVAULT_WITNESSES: "URL VKEY" entries, comma-separated; each cosigns
    tsa_url: str  # EVAULT_TSA_URL: RFC 3161 time-stamping authority for every checkpoint (empty: none)
    tsa_roots_path: Path | None  # EVAULT_TSA_ROOTS: PEM trust roots the TSA's tokens must chain to
    claim_grace_seconds: int  # EVAULT_CLAIM_GRACE_SECONDS: a vault-in claim older than this is reconciled
    staging_ttl_seconds: int  # EVAULT_STAGING_TTL_SECONDS: a staged upload not vaulted by then is refused, deleted


@dataclass(frozen=True)
class ApiSettings:
    host: str  # EVAULT_HOST
    port: int  # EVAULT_PORT
    public_url: str  # EVAULT_PUBLIC_URL: how clients reach the API (printed at start)
    idempotency_ttl_seconds: int  # EVAULT_IDEMPOTENCY_TTL_SECONDS: how long an Idempotency-Key replays
    rate_limit: tuple[int, int]  # EVAULT_RATE_LIMIT: QUOTA/WINDOW requests per API key, e.g. 100/60
    rate_limit_copies: tuple[int, int]  # EVAULT_RATE_LIMIT_COPIES: copy issuances per API key, e.g. 10/60


@dataclass(frozen=True)
class Settings:
    data_dir: Path  # EVAULT_DATA_DIR: everything the embedded default keeps
    database_url: str  # EVAULT_DATABASE_URL: default sqlite under data_dir; postgresql+psycopg://... in prod
    s3: S3Settings
    vault: VaultSettings
    api: ApiSettings
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable once; raise :class:`SettingsError` naming the first bad one."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("EVAULT_DATA_DIR") or ".evault").resolve()
        database_url = env.get("EVAULT_DATABASE_URL") or f"sqlite:///{data_dir / 'evault.sqlite3'}"
        if not database_url.startswith(("sqlite:", "postgresql")):
            raise SettingsError("EVAULT_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
        endpoint = env.get("EVAULT_S3_ENDPOINT", "")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"EVAULT_S3_ENDPOINT must be an http(s) URL, got {endpoint!r}")
        if endpoint and not (env.get("EVAULT_S3_ACCESS_KEY") and env.get("EVAULT_S3_SECRET_KEY")):
            raise SettingsError("EVAULT_S3_ACCESS_KEY and EVAULT_S3_SECRET_KEY are required with EVAULT_S3_ENDPOINT")
        s3 = S3Settings(
            endpoint=endpoint,
            public_endpoint=env.get("EVAULT_S3_PUBLIC_ENDPOINT", ""),
            region=env.get("EVAULT_S3_REGION") or "us-east-1",
            access_key=env.get("EVAULT_S3_ACCESS_KEY", ""),
            secret_key=env.get("EVAULT_S3_SECRET_KEY", ""),
            authoritative_bucket=env.get("EVAULT_S3_BUCKET") or "evault-authoritative",
            copies_bucket=env.get("EVAULT_S3_COPIES_BUCKET") or "evault-copies",
            staging_bucket=env.get("EVAULT_S3_STAGING_BUCKET") or env.get("EVAULT_S3_COPIES_BUCKET") or "evault-copies",
            create_buckets=_bool(env, "EVAULT_S3_CREATE_BUCKETS", default=not endpoint),
            embedded_port_base=_int(env, "EVAULT_S3_EMBEDDED_PORT_BASE", 18330, minimum=1024),
        )
        if s3.authoritative_bucket == s3.copies_bucket:
            raise SettingsError("EVAULT_S3_COPIES_BUCKET must differ from EVAULT_S3_BUCKET")
        if s3.staging_bucket == s3.authoritative_bucket:
            raise SettingsError("EVAULT_S3_STAGING_BUCKET must differ from EVAULT_S3_BUCKET")
        port = _int(env, "EVAULT_PORT", 8000, minimum=0)
        host = env.get("EVAULT_HOST") or "127.0.0.1"
        vault = VaultSettings(
            retention_days=_int(env, "EVAULT_RETENTION_DAYS", 3650, minimum=1),
            url_expiry_seconds=_int(env, "EVAULT_URL_EXPIRY_SECONDS", 300, minimum=1),
            max_upload_bytes=_int(env, "EVAULT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024),
            signing_key_path=Path(env.get("EVAULT_SIGNING_KEY") or data_dir / "vault-signing-key.pem"),
            log_origin=env.get("EVAULT_LOG_ORIGIN") or "evault.local/log",
            key_name=env.get("EVAULT_KEY_NAME") or "evault.local",
            checkpoint_interval_seconds=_int(env, "EVAULT_CHECKPOINT_INTERVAL", 5, minimum=1),
            witnesses=_witnesses(env.get("EVAULT_WITNESSES", "")),
            tsa_url=env.get("EVAULT_TSA_URL", ""),
            tsa_roots_path=Path(env["EVAULT_TSA_ROOTS"]) if env.get("EVAULT_TSA_ROOTS") else None,
            claim_grace_seconds=_int(env, "EVAULT_CLAIM_GRACE_SECONDS", 900, minimum=1),
            staging_ttl_seconds=_int(env, "EVAULT_STAGING_TTL_SECONDS", 7 * 24 * 3600, minimum=1),
        )
        if vault.tsa_url and vault.tsa_roots_path is None:
            raise SettingsError("EVAULT_TSA_ROOTS is required with EVAULT_TSA_URL: an unanchored token proves nothing")
        if vault.url_expiry_seconds > 7 * 24 * 3600:
            raise SettingsError("EVAULT_URL_EXPIRY_SECONDS must be at most 604800 (S3's presign limit)")
        for name, value in (("EVAULT_LOG_ORIGIN", vault.log_origin), ("EVAULT_KEY_NAME", vault.key_name)):
            if not value.isprintable() or " " in value or "+" in value:
                raise SettingsError(f"{name} must be printable, without spaces or '+', got {value!r}")
        api = ApiSettings(
            host=host,
            port=port,
            public_url=env.get("EVAULT_PUBLIC_URL") or f"http://{host}:{port}",
            idempotency_ttl_seconds=_int(env, "EVAULT_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=1),
            rate_limit=_rate(env, "EVAULT_RATE_LIMIT", "100/60"),
            rate_limit_copies=_rate(env, "EVAULT_RATE_LIMIT_COPIES", "10/60"),
        )
        return cls(data_dir=data_dir, database_url=database_url, s3=s3, vault=vault, api=api, env=env)
