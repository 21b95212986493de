"""Every setting of the service, read once from the environment.

One frozen object per concern, grouped in :class:`Settings`. A bad value stops the start with a message that
names the variable, so a misconfigured vault never runs half-configured. The embedded default (no variables
set) keeps everything under one data directory: SQLite, a locked-down SeaweedFS and the vault's signing key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


# ASCII digits only: int() and float() also read "\u0663" (an Arabic-Indic 3) and "1_000", which an operator's
# value should not silently be.
_WHOLE = re.compile(r"-?[0-9]+")
_SECONDS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not _WHOLE.fullmatch(raw.strip()):
        raise SettingsError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
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


def _port(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int = 65535) -> int:
    value = _int(env, name, default, minimum)
    if value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _vkey_syntax_ok(vkey: str) -> bool:
    """``name+hex8+base64(0x04 || 32-byte key)``: the form only; the runtime parses and checks the key id."""
    name, _, rest = vkey.partition("+")
    hex_id, _, key64 = rest.partition("+")
    if not name or not name.isprintable() or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        return False
    try:
        raw = base64.b64decode(key64, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 33 and raw[0] == 0x04


def _accept(env: Mapping[str, str], name: str) -> bool:
    """An explicit opt-in: only the word ``accept`` turns it on, so a stray ``1`` cannot weaken the store."""
    raw = env.get(name, "")
    if raw not in {"", "accept"}:
        raise SettingsError(f"{name} must be empty or 'accept', got {raw!r}")
    return raw == "accept"


def _rate(env: Mapping[str, str], name: str, default: str) -> tuple[int, int]:
    """``QUOTA/WINDOW_SECONDS``, e.g. ``100/60``."""
    raw = env.get(name) or default
    shape = re.fullmatch(r"([0-9]+)/([0-9]+)", raw)  # ASCII digits: str.isdigit() also takes "\u00b2"
    if shape is None or int(shape[1]) < 1 or int(shape[2]) < 1:
        raise SettingsError(f"{name} must be QUOTA/WINDOW_SECONDS with both at least 1, e.g. 100/60, got {raw!r}")
    return int(shape[1]), int(shape[2])


def _burst(bound: int, fraction: int) -> int:
    """A burst's default: ``1/fraction`` of ``bound``, at least 10 (so a short script passes), at most ``bound``."""
    return min(bound, max(10, bound // fraction))


def _witnesses(raw: str) -> tuple[tuple[str, str], ...]:
    entries = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        url, _, vkey = item.partition(" ")
        if not url.startswith(("http://", "https://")) or not vkey.strip():
            raise SettingsError(f"EVAULT_WITNESSES entries are 'URL VKEY', got {item!r}")
        if not _vkey_syntax_ok(vkey.strip()):
            raise SettingsError(f"EVAULT_WITNESSES: {vkey.strip()!r} is not a cosignature/v1 vkey (name+hash+key)")
        entries.append((url, vkey.strip()))
    return tuple(entries)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _bucket(env: Mapping[str, str], name: str, default: str) -> str:
    """S3's bucket naming rules (3-63 of a-z 0-9 . -, no '..', not an IP address)."""
    value = env.get(name) or default
    if (
        not _BUCKET.fullmatch(value)
        or ".." in value
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value)
        or value.startswith("xn--")
        or value.endswith("-s3alias")
    ):
        raise SettingsError(f"{name} must be a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-'), got {value!r}")
    return value


def _tsa_roots(env: Mapping[str, str]) -> Path | None:
    raw = env.get("EVAULT_TSA_ROOTS")
    if not raw:
        return None
    path = Path(raw)
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise SettingsError(f"EVAULT_TSA_ROOTS: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise SettingsError(f"EVAULT_TSA_ROOTS: {path} holds no PEM certificates") from None
    return path


def _http_url(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if value and not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL, got {mask_url(value)!r}")
    return value


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for repr and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()


@dataclass(frozen=True)
class S3Settings:
    """Object storage. ``endpoint`` empty means: start the embedded SeaweedFS under the data directory."""

    # EVAULT_S3_ENDPOINT: any S3 (AWS, MinIO, a SeaweedFS cluster), e.g. http://minio:9000; empty: start the
    # embedded SeaweedFS
    endpoint: str
    public_endpoint: str  # EVAULT_S3_PUBLIC_ENDPOINT: host that presigned URLs name (empty: the endpoint)
    region: str  # EVAULT_S3_REGION: the S3 region requests are signed for
    access_key: str  # EVAULT_S3_ACCESS_KEY: the service's S3 identity (required with EVAULT_S3_ENDPOINT)
    secret_key: str = field(repr=False)  # EVAULT_S3_SECRET_KEY: its secret (never in repr or logs)
    authoritative_bucket: str  # EVAULT_S3_BUCKET: Object Lock + versioning, holds originals and checkpoints
    copies_bucket: str  # EVAULT_S3_COPIES_BUCKET: non-authoritative copies, apart from the originals
    staging_bucket: str  # EVAULT_S3_STAGING_BUCKET: staged uploads (no lock, they expire); default the copies one
    # EVAULT_S3_CREATE_BUCKETS: create missing buckets (with Object Lock) at start; default true with the embedded
    # store, false with EVAULT_S3_ENDPOINT
    create_buckets: bool
    embedded_port_base: int  # EVAULT_S3_EMBEDDED_PORT_BASE: first of eight loopback ports of embedded weed
    # EVAULT_S3_EMBEDDED_UNPROTECTED: `accept` starts the embedded store even where no private network namespace
    # can be made (no unshare, user namespaces disabled); its admin ports are then open to every local process.
    embedded_unprotected: bool
    # EVAULT_S3_RELAY_MAX_CONNECTIONS: connections the embedded store's loopback relay holds at once (each costs
    # two threads and six descriptors); a new one beyond it evicts the longest idle, or is closed at once.
    relay_max_connections: int = 256
    relay_idle_seconds: int = 60  # EVAULT_S3_RELAY_IDLE_SECONDS: a relayed connection moving no byte is closed

    @property
    def embedded(self) -> bool:
        return self.endpoint == ""


@dataclass(frozen=True)
class Pkcs11Settings:
    """The PKCS#11 token (HSM) that holds rotated signing keys, when ``evault signing-key rotate --hsm`` is used."""

    library: str  # EVAULT_PKCS11_LIBRARY: path of the token's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so
    token_label: str  # EVAULT_PKCS11_TOKEN: the token's label
    pin: str  # EVAULT_PKCS11_PIN: the user PIN (a secret: never logged)

    def __repr__(self) -> str:
        return f"Pkcs11Settings(library={self.library!r}, token_label={self.token_label!r}, pin=<hidden>)"


def _pkcs11(env: Mapping[str, str]) -> Pkcs11Settings | None:
    names = ("EVAULT_PKCS11_LIBRARY", "EVAULT_PKCS11_TOKEN", "EVAULT_PKCS11_PIN")
    given = [env.get(name, "") for name in names]
    if not any(given):
        return None
    if not all(given):
        raise SettingsError(f"set all of {', '.join(names)} or none of them")
    return Pkcs11Settings(*given)


@dataclass(frozen=True)
class VaultSettings:
    """Custody policy."""

    retention_days: int  # EVAULT_RETENTION_DAYS: COMPLIANCE-mode retention of every authoritative object
    url_expiry_seconds: int  # EVAULT_URL_EXPIRY_SECONDS: lifetime of presigned download URLs
    max_upload_bytes: int  # EVAULT_MAX_UPLOAD_BYTES: larger bodies are refused with 413
    signing_key_path: Path  # EVAULT_SIGNING_KEY: PEM Ed25519 private key; generated if absent (embedded)
    log_origin: str  # EVAULT_LOG_ORIGIN: origin prefix of every checkpoint, e.g. vault.example.com/log
    key_name: str  # EVAULT_KEY_NAME: signed-note key name of the vault's checkpoint key
    checkpoint_interval_seconds: int  # EVAULT_CHECKPOINT_INTERVAL: seconds between a busy log's checkpoints
    witnesses: tuple[tuple[str, str], ...]  # EVAULT_WITNESSES: "URL VKEY" entries, comma-separated; each cosigns
    tsa_url: str  # EVAULT_TSA_URL: RFC 3161 time-stamping authority for every checkpoint (empty: none)
    tsa_roots_path: Path | None  # EVAULT_TSA_ROOTS: PEM trust roots the TSA's tokens must chain to
    # EVAULT_CLAIM_GRACE_SECONDS: a vault-in claim older than this is reconciled, and evault verify reports it (and
    # an import claim older than this) as unfinished; a copy claim older than this has its unregistered object deleted
    claim_grace_seconds: int
    claim_lease_seconds: int  # EVAULT_CLAIM_LEASE_SECONDS: how long a vault-in claim belongs to its request
    signer_trust_roots_path: Path | None  # EVAULT_SIGNER_TRUST_ROOTS: PEM roots PDF signers are trusted under
    require_trusted_signers: bool  # EVAULT_REQUIRE_TRUSTED_SIGNERS: refuse signatures not chaining to them
    staging_ttl_seconds: int  # EVAULT_STAGING_TTL_SECONDS: a staged upload not vaulted by then is refused, deleted
    # EVAULT_REPORT_SIGNING_KEY: PEM Ed25519 key that signs verifier reports (generated if absent, endorsed by
    # the vault key at every start); the verifier holds this one, never the vault key.
    report_key_path: Path = Path("report-signing-key.pem")
    pkcs11: Pkcs11Settings | None = None  # EVAULT_PKCS11_*: the HSM of rotated keys (see Pkcs11Settings)


@dataclass(frozen=True)
class PdfSettings:
    """What one uploaded PDF may cost to vet at vault-in and to stamp per copy (the file's own counts prove nothing)."""

    max_pages: int = 5000  # EVAULT_PDF_MAX_PAGES: page tree leaves, counted while walking it
    max_objects: int = 500_000  # EVAULT_PDF_MAX_OBJECTS: cross-reference entries, counted while reading them
    max_decoded_bytes: int = 256 * 1024 * 1024  # EVAULT_PDF_MAX_DECODED_BYTES: streams decoded, once and as used
    max_cpu_seconds: int = 10  # EVAULT_PDF_MAX_CPU_SECONDS: CPU for vetting at vault-in, and for one stamping
    stamp_memory_bytes: int = 1024 * 1024 * 1024  # EVAULT_PDF_STAMP_MEMORY_BYTES: address space of a stamper
    stamp_timeout_seconds: int = 30  # EVAULT_PDF_STAMP_TIMEOUT_SECONDS: wall clock before a stamper is killed
    stamp_concurrency: int = 2  # EVAULT_PDF_STAMP_CONCURRENCY: stampings, and vettings, at once per service process
    stamp_per_org: int = 1  # EVAULT_PDF_STAMP_PER_ORG: stampings at once for one organisation, across every process
    # EVAULT_PDF_WORKER_NICE: added to the niceness of the stamping, vetting and evidence processes (0-19), so that
    # the API's own threads win the CPU from them and one tenant's documents or checks cannot slow another's
    # requests. A job starved past its wall clock (under a quarter of a core on average) is refused with 503 and
    # Retry-After, never blamed on the document; 0 levels them with every other process, for a host shared with
    # other busy processes.
    worker_nice: int = 10
    # EVAULT_PDF_WORKERS: long-lived worker processes that vet uploads and stamp copies, per service process
    # (one started before `evault serve` serves, the rest when first needed; each job takes one within its
    # organisation's fair share)
    workers: int = 2
    worker_max_jobs: int = 200  # EVAULT_PDF_WORKER_MAX_JOBS: jobs one worker serves before it is replaced
    # EVAULT_PDF_WORKER_MAX_RSS_BYTES: a worker whose resident memory after a job is past this is replaced, so a
    # large document leaves no bloated worker behind (at most EVAULT_PDF_STAMP_MEMORY_BYTES; by default half of
    # that when it is under 1 GiB)
    worker_max_rss_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class EvidenceSettings:
    """Who keeps the authoritative copies, and the identity that signs the certificate PDFs people read."""

    custodian_name: str = "evault operator"  # EVAULT_CUSTODIAN_NAME: the vault operator, named in certificates
    custodian_id: str = "evault.local"  # EVAULT_CUSTODIAN_ID: its identifier (default: EVAULT_KEY_NAME)
    document_signing_key_path: Path | None = None  # EVAULT_DOCUMENT_SIGNING_KEY: PEM ECDSA P-256 key (PDFs)
    document_signing_cert_path: Path | None = None  # EVAULT_DOCUMENT_SIGNING_CERT: its PEM X.509 certificate


def _evidence(env: Mapping[str, str], key_name: str) -> EvidenceSettings:
    name = (env.get("EVAULT_CUSTODIAN_NAME") or "evault operator").strip()
    custodian_id = (env.get("EVAULT_CUSTODIAN_ID") or key_name).strip()
    for var, value in (("EVAULT_CUSTODIAN_NAME", name), ("EVAULT_CUSTODIAN_ID", custodian_id)):
        if not value or not value.isprintable() or len(value) > 200:
            raise SettingsError(f"{var} must be 1-200 printable characters, got {value!r}")
    key, cert = env.get("EVAULT_DOCUMENT_SIGNING_KEY"), env.get("EVAULT_DOCUMENT_SIGNING_CERT")
    if bool(key) != bool(cert):
        raise SettingsError("EVAULT_DOCUMENT_SIGNING_KEY and EVAULT_DOCUMENT_SIGNING_CERT go together")
    for var, raw in (("EVAULT_DOCUMENT_SIGNING_KEY", key), ("EVAULT_DOCUMENT_SIGNING_CERT", cert)):
        if raw and not Path(raw).is_file():
            raise SettingsError(f"{var} names no file: {raw}")
    if cert:
        try:
            x509.load_pem_x509_certificate(Path(cert).read_bytes())
        except ValueError:
            raise SettingsError(f"EVAULT_DOCUMENT_SIGNING_CERT: {cert} is not a PEM certificate") from None
    return EvidenceSettings(name, custodian_id, Path(key) if key else None, Path(cert) if cert else None)


@dataclass(frozen=True)
class EdgeSettings:
    """What a request may cost before any work is done for it (checked at the edge, in this process)."""

    max_json_bytes: int = 64 * 1024  # EVAULT_MAX_JSON_BYTES: a JSON body larger than this is refused with 413
    # EVAULT_MAX_UPLOADS_PER_KEY: uploads in flight for one API key, across every process and replica (429 beyond)
    max_uploads_per_key: int = 4
    max_uploads: int = 16  # EVAULT_MAX_UPLOADS: uploads in flight in this process in total (503 beyond)
    # EVAULT_MAX_UPLOADS_PER_ORG: uploads in flight for one organisation while it is alone, across every process
    # and replica (429 beyond; default three quarters of EVAULT_MAX_UPLOADS); beside others, each gets at most
    # EVAULT_MAX_UPLOADS / their number of a process's slots.
    max_uploads_per_org: int = 12
    spool_memory_bytes: int = 1024 * 1024  # EVAULT_UPLOAD_SPOOL_MEMORY_BYTES: kept in memory, the rest on disk
    header_timeout_seconds: int = 10  # EVAULT_HEADER_TIMEOUT_SECONDS: a request's headers must be in by then (408)
    # EVAULT_BODY_MIN_BYTES_PER_SECOND: a body must arrive at this average rate after the grace: byte n by
    # grace + n / rate seconds after its headers are accepted (the API key checked), or the request ends with 408.
    body_min_bytes_per_second: int = 8 * 1024
    body_grace_seconds: int = 10  # EVAULT_BODY_GRACE_SECONDS: the grace of that pace, in seconds


@dataclass(frozen=True)
class EvidenceWorkSettings:
    """What the evidence routes (compliance, certificate JSON and PDF, audit, receipts, packages) may cost: a
    bounded pool of worker processes per service process, a share of it per organisation, and a deadline per
    request (503 beyond each)."""

    concurrency: int = 4  # EVAULT_EVIDENCE_CONCURRENCY: evidence requests (and workers) at once in this process
    per_org: int = 1  # EVAULT_EVIDENCE_PER_ORG: of those, at most this many for one organisation (docs/isolation.md)
    deadline_seconds: int = 30  # EVAULT_EVIDENCE_DEADLINE_SECONDS: then 503 Evidence.Timeout, and the work stops
    # EVAULT_EVIDENCE_MEMORY_BYTES: each evidence worker's address space (RLIMIT_AS); one whose resident memory
    # passes half of it after a job is replaced
    memory_bytes: int = 2 * 1024 * 1024 * 1024


def _evidence_work(env: Mapping[str, str]) -> EvidenceWorkSettings:
    d = EvidenceWorkSettings()
    work = EvidenceWorkSettings(
        concurrency=_int(env, "EVAULT_EVIDENCE_CONCURRENCY", d.concurrency, minimum=1),
        per_org=_int(env, "EVAULT_EVIDENCE_PER_ORG", d.per_org, minimum=1),
        deadline_seconds=_int(env, "EVAULT_EVIDENCE_DEADLINE_SECONDS", d.deadline_seconds, minimum=1),
        memory_bytes=_int(env, "EVAULT_EVIDENCE_MEMORY_BYTES", d.memory_bytes, minimum=512 * 1024 * 1024),
    )
    if work.per_org > work.concurrency:
        raise SettingsError("EVAULT_EVIDENCE_PER_ORG must not exceed EVAULT_EVIDENCE_CONCURRENCY")
    return work


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API: where it listens, idempotency, rate limits, stopping, workers and leases."""

    host: str  # EVAULT_HOST: the address the API listens on
    port: int  # EVAULT_PORT: 0 picks a free port (printed at start)
    public_url: str  # EVAULT_PUBLIC_URL: how clients reach the API (printed at start)
    idempotency_ttl_seconds: int  # EVAULT_IDEMPOTENCY_TTL_SECONDS: how long an Idempotency-Key replays
    rate_limit: tuple[int, int]  # EVAULT_RATE_LIMIT: QUOTA/WINDOW requests per API key, e.g. 100/60
    rate_limit_copies: tuple[int, int]  # EVAULT_RATE_LIMIT_COPIES: copy issuances per API key, e.g. 10/60
    # EVAULT_RATE_LIMIT_CHECKPOINTS: checkpoints signed on request per organisation (each is a locked WORM
    # object kept for the retention period), e.g. 60/3600; the scheduled ones do not count
    rate_limit_checkpoints: tuple[int, int]
    # EVAULT_RATE_LIMIT_ORG: QUOTA/WINDOW requests per organisation, all its keys together (each request counts
    # against its key's and its organisation's); by default three times EVAULT_RATE_LIMIT, e.g. 300/60, so one key
    # alone never meets it and more keys do not multiply an organisation's share (docs/isolation.md)
    rate_limit_org: tuple[int, int]
    # EVAULT_RATE_LIMIT_ORG_BURST: the most requests an organisation may send at once; beyond it, its quota comes
    # back evenly, one request every WINDOW/QUOTA seconds (GCRA), so its flood cannot spend a minute's quota in a
    # few seconds; by default a tenth of the quota, at least 10 and at most the quota: 30 of 300/60
    # (docs/isolation.md)
    rate_limit_org_burst: int
    # EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST: the most document uploads (the vault-in and staging routes) an
    # organisation may send at once, paced like its requests (an upload counts against both); by default a third
    # of EVAULT_RATE_LIMIT_ORG_BURST, at least 10 and at most it: 10 of 30. An upload costs the service far more
    # than a read (docs/isolation.md)
    rate_limit_org_upload_burst: int
    # EVAULT_SHUTDOWN_GRACE_SECONDS: on SIGTERM, how long requests in flight may finish before they are cancelled
    shutdown_grace_seconds: int = 10
    # EVAULT_WORKERS (or `evault serve --workers N`): API worker processes on one port; more than 1 needs PostgreSQL
    # and an external S3 (docs/scale-out.md)
    workers: int = 1
    # EVAULT_LEASE_SECONDS: how long a background job's lease (checkpointer, reconciler, sweeps, webhook sender)
    # outlives its holder's last renewal: another process or replica takes the job over within this (plus the
    # job's own interval) after a holder dies; a checkpoint (witnesses, TSA included) must finish within it
    lease_seconds: int = 60

    def longest_rate_window(self) -> int:
        """Seconds a rate counter must outlive its window's start: the longest window of any policy."""
        return max(
            window
            for _, window in (self.rate_limit, self.rate_limit_copies, self.rate_limit_checkpoints, self.rate_limit_org)
        )


def _edge(env: Mapping[str, str]) -> EdgeSettings:
    d = EdgeSettings()
    per_key = _int(env, "EVAULT_MAX_UPLOADS_PER_KEY", d.max_uploads_per_key, minimum=1)
    max_uploads = _int(env, "EVAULT_MAX_UPLOADS", d.max_uploads, minimum=1)
    edge = EdgeSettings(
        max_json_bytes=_int(env, "EVAULT_MAX_JSON_BYTES", d.max_json_bytes, minimum=1024),
        max_uploads_per_key=per_key,
        max_uploads=max_uploads,
        max_uploads_per_org=_int(env, "EVAULT_MAX_UPLOADS_PER_ORG", max(per_key, max_uploads * 3 // 4), minimum=1),
        spool_memory_bytes=_int(env, "EVAULT_UPLOAD_SPOOL_MEMORY_BYTES", d.spool_memory_bytes, minimum=0),
        header_timeout_seconds=_int(env, "EVAULT_HEADER_TIMEOUT_SECONDS", d.header_timeout_seconds, minimum=1),
        body_min_bytes_per_second=_int(env, "EVAULT_BODY_MIN_BYTES_PER_SECOND", d.body_min_bytes_per_second, minimum=1),
        body_grace_seconds=_int(env, "EVAULT_BODY_GRACE_SECONDS", d.body_grace_seconds, minimum=1),
    )
    if edge.max_uploads_per_key > edge.max_uploads:
        raise SettingsError("EVAULT_MAX_UPLOADS_PER_KEY must not exceed EVAULT_MAX_UPLOADS")
    if not edge.max_uploads_per_key <= edge.max_uploads_per_org <= edge.max_uploads:
        raise SettingsError(
            "EVAULT_MAX_UPLOADS_PER_ORG must lie between EVAULT_MAX_UPLOADS_PER_KEY and EVAULT_MAX_UPLOADS"
        )
    return edge


def _pdf(env: Mapping[str, str]) -> PdfSettings:
    d = PdfSettings()
    memory = _int(env, "EVAULT_PDF_STAMP_MEMORY_BYTES", d.stamp_memory_bytes, minimum=256 * 1024 * 1024)
    pdf = PdfSettings(
        max_pages=_int(env, "EVAULT_PDF_MAX_PAGES", d.max_pages, minimum=1),
        max_objects=_int(env, "EVAULT_PDF_MAX_OBJECTS", d.max_objects, minimum=16),
        max_decoded_bytes=_int(env, "EVAULT_PDF_MAX_DECODED_BYTES", d.max_decoded_bytes, minimum=1024 * 1024),
        max_cpu_seconds=_int(env, "EVAULT_PDF_MAX_CPU_SECONDS", d.max_cpu_seconds, minimum=1),
        stamp_memory_bytes=memory,
        stamp_timeout_seconds=_int(env, "EVAULT_PDF_STAMP_TIMEOUT_SECONDS", d.stamp_timeout_seconds, minimum=1),
        stamp_concurrency=_int(env, "EVAULT_PDF_STAMP_CONCURRENCY", d.stamp_concurrency, minimum=1),
        stamp_per_org=_int(env, "EVAULT_PDF_STAMP_PER_ORG", d.stamp_per_org, minimum=1),
        worker_nice=_int(env, "EVAULT_PDF_WORKER_NICE", d.worker_nice, minimum=0),
        workers=_int(env, "EVAULT_PDF_WORKERS", d.workers, minimum=1),
        worker_max_jobs=_int(env, "EVAULT_PDF_WORKER_MAX_JOBS", d.worker_max_jobs, minimum=1),
        worker_max_rss_bytes=_int(
            env, "EVAULT_PDF_WORKER_MAX_RSS_BYTES", min(d.worker_max_rss_bytes, memory // 2), minimum=64 * 1024 * 1024
        ),
    )
    if pdf.worker_nice > 19:
        raise SettingsError(f"EVAULT_PDF_WORKER_NICE must be at most 19, got {pdf.worker_nice}")
    if pdf.worker_max_rss_bytes > pdf.stamp_memory_bytes:
        raise SettingsError("EVAULT_PDF_WORKER_MAX_RSS_BYTES must not exceed EVAULT_PDF_STAMP_MEMORY_BYTES")
    if pdf.stamp_per_org > pdf.stamp_concurrency:
        raise SettingsError("EVAULT_PDF_STAMP_PER_ORG must not exceed EVAULT_PDF_STAMP_CONCURRENCY")
    return pdf


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ObservabilitySettings:
    """Where Prometheus scrapes the service and how it logs (docs/operations-metrics.md)."""

    # EVAULT_METRICS_PORT: 0 serves ``/metrics`` on the API's own port, unauthenticated; another port serves it
    # there only (on EVAULT_METRICS_HOST), so the API's port can face clients without exposing it.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"  # EVAULT_METRICS_HOST: where a separate metrics port listens
    log_format: str = "text"  # EVAULT_LOG_FORMAT: text, or json for one JSON object per line


def log_format(env: Mapping[str, str]) -> str:
    """``EVAULT_LOG_FORMAT``, checked: read before anything else so that the first line is already in it."""
    value = (env.get("EVAULT_LOG_FORMAT") or "text").lower()
    if value not in LOG_FORMATS:
        raise SettingsError(f"EVAULT_LOG_FORMAT must be text or json, got {value!r}")
    return value


def _observability(env: Mapping[str, str], api_port: int) -> ObservabilitySettings:
    port = _port(env, "EVAULT_METRICS_PORT", 0, minimum=0)
    if port and port == api_port:
        raise SettingsError("EVAULT_METRICS_PORT must differ from EVAULT_PORT (0 serves /metrics on the API port)")
    return ObservabilitySettings(
        metrics_port=port, metrics_host=env.get("EVAULT_METRICS_HOST") or "127.0.0.1", log_format=log_format(env)
    )


# The Standard Webhooks spec's example: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)


@dataclass(frozen=True)
class WebhookSettings:
    """Delivering events to the organisations' webhooks (Standard Webhooks), from the outbox."""

    # EVAULT_WEBHOOK_RETRY_SCHEDULE: seconds to wait before each retry after the first attempt, comma-separated
    # (any positive numbers); after the last, the delivery is failed (a redelivery starts again)
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    # EVAULT_WEBHOOK_ALLOW_NETWORKS: CIDRs a webhook may point into although they are private, loopback or
    # link-local (comma-separated; empty: none), where plain http is allowed too
    allow_networks: tuple[str, ...] = ()  # normalised CIDRs, e.g. 10.0.0.0/8
    timeout_seconds: int = 15  # EVAULT_WEBHOOK_TIMEOUT_SECONDS: one attempt's whole budget (connect, send, answer)
    concurrency: int = 8  # EVAULT_WEBHOOK_CONCURRENCY: attempts in flight at once, per sender
    per_org: int = 2  # EVAULT_WEBHOOK_PER_ORG: of those, at most this many for one organisation
    rotation_grace_seconds: int = 86400  # EVAULT_WEBHOOK_ROTATION_GRACE_SECONDS: an old secret signs this long
    # EVAULT_WEBHOOK_SECRETS_KEY: base64 of at least 32 bytes; seals the webhooks' keys in the database. Unset: 32
    # random bytes made once into <data dir>/webhook-secrets-key (0600) at start, like the vault's other keys
    secrets_key: bytes | None = field(default=None, repr=False)
    secrets_key_path: Path = Path(".evault/webhook-secrets-key")


def _retry_schedule(raw: str) -> tuple[float, ...]:
    if not raw.strip():
        return DEFAULT_RETRY_SCHEDULE
    parts = [part.strip() for part in raw.split(",")]
    if not all(_SECONDS.fullmatch(part) for part in parts):
        raise SettingsError(f"EVAULT_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}")
    delays = tuple(float(part) for part in parts)
    if not all(0 < delay < 10 * 365 * 86400 for delay in delays):
        raise SettingsError(f"EVAULT_WEBHOOK_RETRY_SCHEDULE takes positive seconds only, got {raw!r}")
    return delays


def _networks(raw: str) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_network(part.strip())) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"EVAULT_WEBHOOK_ALLOW_NETWORKS must be comma-separated CIDRs: {exc}") from None


def _webhooks(env: Mapping[str, str], data_dir: Path) -> WebhookSettings:
    d = WebhookSettings()
    hooks = WebhookSettings(
        secrets_key=_secret_bytes(env, "EVAULT_WEBHOOK_SECRETS_KEY"),
        secrets_key_path=data_dir / "webhook-secrets-key",
        retry_schedule=_retry_schedule(env.get("EVAULT_WEBHOOK_RETRY_SCHEDULE", "")),
        allow_networks=_networks(env.get("EVAULT_WEBHOOK_ALLOW_NETWORKS", "")),
        timeout_seconds=_int(env, "EVAULT_WEBHOOK_TIMEOUT_SECONDS", d.timeout_seconds, minimum=1),
        concurrency=_int(env, "EVAULT_WEBHOOK_CONCURRENCY", d.concurrency, minimum=1),
        per_org=_int(env, "EVAULT_WEBHOOK_PER_ORG", d.per_org, minimum=1),
        rotation_grace_seconds=_int(env, "EVAULT_WEBHOOK_ROTATION_GRACE_SECONDS", d.rotation_grace_seconds, minimum=0),
    )
    if hooks.per_org > hooks.concurrency:
        raise SettingsError("EVAULT_WEBHOOK_PER_ORG must not exceed EVAULT_WEBHOOK_CONCURRENCY")
    return hooks


@dataclass(frozen=True)
class CeremonySettings:
    """The e-sign ceremony: its signing links and the email that carries them (docs/ceremony.md)."""

    # EVAULT_SIGNING_LINK_SECRET: base64 of at least 32 bytes; the key of every signing link's HMAC. Unset: 32
    # random bytes made once into <data dir>/signing-link-secret (0600) at start, like the vault's other keys
    link_secret: bytes | None = field(default=None, repr=False)
    link_secret_path: Path = Path(".evault/signing-link-secret")
    link_ttl_seconds: int = 30 * 86400  # EVAULT_SIGNING_LINK_TTL_SECONDS: a link lives this long after send
    remind_interval_seconds: int = 3600  # EVAULT_REMIND_INTERVAL_SECONDS: between reminders of one envelope
    embed_ttl_seconds: int = 1800  # EVAULT_EMBED_TOKEN_TTL_SECONDS: an embed token's life (docs/signing-page.md)
    # EVAULT_SMTP_URL: smtp://[user:password@]host[:port] (STARTTLS when offered) or smtps://...; empty: no email
    smtp_url: str = field(default="", repr=False)
    smtp_from: str = "evault@localhost"  # EVAULT_SMTP_FROM: the From address of links and reminders

    def __repr__(self) -> str:
        return (
            f"CeremonySettings(link_secret={'***' if self.link_secret else None}, "
            f"link_secret_path={self.link_secret_path!r}, link_ttl_seconds={self.link_ttl_seconds}, "
            f"remind_interval_seconds={self.remind_interval_seconds}, embed_ttl_seconds={self.embed_ttl_seconds}, "
            f"smtp_url={mask_url(self.smtp_url)!r}, "
            f"smtp_from={self.smtp_from!r})"
        )


def _secret_bytes(env: Mapping[str, str], name: str) -> bytes | None:
    """A secret given as base64 of at least 32 bytes, or None when unset (the data directory's file then)."""
    raw = env.get(name, "")
    if not raw:
        return None
    try:
        secret = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{name} must be base64") from None
    if len(secret) < 32:
        raise SettingsError(f"{name} must hold at least 32 bytes")
    return secret


def _ceremony(env: Mapping[str, str], data_dir: Path) -> CeremonySettings:
    secret = _secret_bytes(env, "EVAULT_SIGNING_LINK_SECRET")
    smtp = env.get("EVAULT_SMTP_URL", "")
    if smtp and (urlsplit(smtp).scheme not in ("smtp", "smtps") or not urlsplit(smtp).hostname):
        raise SettingsError(f"EVAULT_SMTP_URL must be smtp://host[:port] or smtps://..., got {mask_url(smtp)!r}")
    sender = env.get("EVAULT_SMTP_FROM") or CeremonySettings.smtp_from
    if "@" not in sender or any(c in sender for c in "\r\n"):
        raise SettingsError(f"EVAULT_SMTP_FROM must be an email address, got {sender!r}")
    return CeremonySettings(
        link_secret=secret,
        link_secret_path=data_dir / "signing-link-secret",
        link_ttl_seconds=_int(env, "EVAULT_SIGNING_LINK_TTL_SECONDS", CeremonySettings.link_ttl_seconds, minimum=1),
        remind_interval_seconds=_int(
            env, "EVAULT_REMIND_INTERVAL_SECONDS", CeremonySettings.remind_interval_seconds, minimum=0
        ),
        embed_ttl_seconds=_int(env, "EVAULT_EMBED_TOKEN_TTL_SECONDS", CeremonySettings.embed_ttl_seconds, minimum=1),
        smtp_url=smtp,
        smtp_from=sender,
    )


@dataclass(frozen=True, repr=False)
class Settings:
    data_dir: Path  # EVAULT_DATA_DIR: everything the embedded default keeps
    database_url: str  # EVAULT_DATABASE_URL: default sqlite under data_dir; postgresql+psycopg://... in prod
    database_timeout: float  # EVAULT_DATABASE_TIMEOUT: seconds to wait for a connection or SQLite's lock
    s3: S3Settings
    vault: VaultSettings
    api: ApiSettings
    pdf: PdfSettings = field(default_factory=PdfSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    evidence_work: EvidenceWorkSettings = field(default_factory=EvidenceWorkSettings)
    ceremony: CeremonySettings = field(default_factory=CeremonySettings)
    env: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        """Without the environment, and with the database password masked."""
        return (
            f"Settings(data_dir={self.data_dir!r}, database_url={mask_url(self.database_url)!r}, "
            f"database_timeout={self.database_timeout!r}, s3={self.s3!r}, vault={self.vault!r}, api={self.api!r}, "
            f"pdf={self.pdf!r}, evidence={self.evidence!r}, edge={self.edge!r}, evidence_work={self.evidence_work!r}, "
            f"webhooks={self.webhooks!r}, observability={self.observability!r}, ceremony={self.ceremony!r})"
        )

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
        endpoint = _http_url(env, "EVAULT_S3_ENDPOINT")
        if endpoint and not (env.get("EVAULT_S3_ACCESS_KEY") and env.get("EVAULT_S3_SECRET_KEY")):
            raise SettingsError("EVAULT_S3_ACCESS_KEY and EVAULT_S3_SECRET_KEY are required with EVAULT_S3_ENDPOINT")
        s3 = S3Settings(
            endpoint=endpoint,
            public_endpoint=_http_url(env, "EVAULT_S3_PUBLIC_ENDPOINT"),
            region=env.get("EVAULT_S3_REGION") or "us-east-1",
            access_key=env.get("EVAULT_S3_ACCESS_KEY", ""),
            secret_key=env.get("EVAULT_S3_SECRET_KEY", ""),
            authoritative_bucket=_bucket(env, "EVAULT_S3_BUCKET", "evault-authoritative"),
            copies_bucket=_bucket(env, "EVAULT_S3_COPIES_BUCKET", "evault-copies"),
            staging_bucket=_bucket(
                env, "EVAULT_S3_STAGING_BUCKET", env.get("EVAULT_S3_COPIES_BUCKET") or "evault-copies"
            ),
            create_buckets=_bool(env, "EVAULT_S3_CREATE_BUCKETS", default=not endpoint),
            embedded_port_base=_port(env, "EVAULT_S3_EMBEDDED_PORT_BASE", 18330, minimum=1024, maximum=65535 - 7),
            embedded_unprotected=_accept(env, "EVAULT_S3_EMBEDDED_UNPROTECTED"),
            relay_max_connections=_int(env, "EVAULT_S3_RELAY_MAX_CONNECTIONS", 256, minimum=1),
            relay_idle_seconds=_int(env, "EVAULT_S3_RELAY_IDLE_SECONDS", 60, minimum=1),
        )
        if s3.authoritative_bucket == s3.copies_bucket:
            raise SettingsError("EVAULT_S3_COPIES_BUCKET must differ from EVAULT_S3_BUCKET")
        if s3.staging_bucket == s3.authoritative_bucket:
            raise SettingsError("EVAULT_S3_STAGING_BUCKET must differ from EVAULT_S3_BUCKET")
        port = _port(env, "EVAULT_PORT", 8000, minimum=0)
        host = env.get("EVAULT_HOST") or "127.0.0.1"
        vault = VaultSettings(
            retention_days=_int(env, "EVAULT_RETENTION_DAYS", 3650, minimum=1),
            url_expiry_seconds=_int(env, "EVAULT_URL_EXPIRY_SECONDS", 300, minimum=1),
            max_upload_bytes=_int(env, "EVAULT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024),
            signing_key_path=Path(env.get("EVAULT_SIGNING_KEY") or data_dir / "vault-signing-key.pem"),
            log_origin=env.get("EVAULT_LOG_ORIGIN") or "evault.local/log",
            key_name=env.get("EVAULT_KEY_NAME") or "evault.local",
            checkpoint_interval_seconds=_int(env, "EVAULT_CHECKPOINT_INTERVAL", 300, minimum=1),
            witnesses=_witnesses(env.get("EVAULT_WITNESSES", "")),
            tsa_url=_http_url(env, "EVAULT_TSA_URL"),
            tsa_roots_path=_tsa_roots(env),
            claim_grace_seconds=_int(env, "EVAULT_CLAIM_GRACE_SECONDS", 900, minimum=1),
            claim_lease_seconds=_int(env, "EVAULT_CLAIM_LEASE_SECONDS", 60, minimum=1),
            signer_trust_roots_path=Path(env["EVAULT_SIGNER_TRUST_ROOTS"])
            if env.get("EVAULT_SIGNER_TRUST_ROOTS")
            else None,
            require_trusted_signers=_bool(env, "EVAULT_REQUIRE_TRUSTED_SIGNERS", default=False),
            staging_ttl_seconds=_int(env, "EVAULT_STAGING_TTL_SECONDS", 7 * 24 * 3600, minimum=1),
            report_key_path=Path(env.get("EVAULT_REPORT_SIGNING_KEY") or data_dir / "report-signing-key.pem"),
            pkcs11=_pkcs11(env),
        )
        if vault.signer_trust_roots_path is not None and not vault.signer_trust_roots_path.is_file():
            raise SettingsError(f"EVAULT_SIGNER_TRUST_ROOTS names no file: {vault.signer_trust_roots_path}")
        if vault.require_trusted_signers and vault.signer_trust_roots_path is None:
            raise SettingsError("EVAULT_REQUIRE_TRUSTED_SIGNERS needs EVAULT_SIGNER_TRUST_ROOTS")
        if vault.tsa_url and vault.tsa_roots_path is None:
            raise SettingsError("EVAULT_TSA_ROOTS is required with EVAULT_TSA_URL: an unanchored token proves nothing")
        if vault.url_expiry_seconds > 7 * 24 * 3600:
            raise SettingsError("EVAULT_URL_EXPIRY_SECONDS must be at most 604800 (S3's presign limit)")
        for name, value in (("EVAULT_LOG_ORIGIN", vault.log_origin), ("EVAULT_KEY_NAME", vault.key_name)):
            if not value.isprintable() or " " in value or "+" in value:
                raise SettingsError(f"{name} must be printable, without spaces or '+', got {value!r}")
        rate_limit = _rate(env, "EVAULT_RATE_LIMIT", "100/60")
        rate_limit_org = _rate(env, "EVAULT_RATE_LIMIT_ORG", f"{3 * rate_limit[0]}/{rate_limit[1]}")
        # A tenth of the quota: 30 of 300/60, which the documented walk-through fits in (docs/isolation.md).
        org_burst = _int(env, "EVAULT_RATE_LIMIT_ORG_BURST", _burst(rate_limit_org[0], 10), minimum=1)
        # A third of that: 10 of 30. Another tenant's read p99 while the uploads' burst is spent fell from x2.80 to
        # x2.31 of idle under a flood, x3.29 to x3.02 under the bombs (docs/isolation.md).
        upload_burst = _int(env, "EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST", _burst(org_burst, 3), minimum=1)
        api = ApiSettings(
            host=host,
            port=port,
            public_url=_http_url(env, "EVAULT_PUBLIC_URL") or f"http://{host}:{port}",
            idempotency_ttl_seconds=_int(env, "EVAULT_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=1),
            rate_limit=rate_limit,
            rate_limit_copies=_rate(env, "EVAULT_RATE_LIMIT_COPIES", "10/60"),
            rate_limit_checkpoints=_rate(env, "EVAULT_RATE_LIMIT_CHECKPOINTS", "60/3600"),
            rate_limit_org=rate_limit_org,
            rate_limit_org_burst=org_burst,
            rate_limit_org_upload_burst=upload_burst,
            shutdown_grace_seconds=_int(env, "EVAULT_SHUTDOWN_GRACE_SECONDS", 10, minimum=1),
            workers=_int(env, "EVAULT_WORKERS", 1, minimum=1),
            lease_seconds=_int(env, "EVAULT_LEASE_SECONDS", 60, minimum=1),
        )
        if api.rate_limit_org_burst > api.rate_limit_org[0]:
            raise SettingsError("EVAULT_RATE_LIMIT_ORG_BURST must be at most EVAULT_RATE_LIMIT_ORG's quota")
        if api.rate_limit_org_upload_burst > api.rate_limit_org_burst:
            raise SettingsError("EVAULT_RATE_LIMIT_ORG_UPLOAD_BURST must be at most EVAULT_RATE_LIMIT_ORG_BURST")
        timeout = _int(env, "EVAULT_DATABASE_TIMEOUT", 10, minimum=1)
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            database_timeout=timeout,
            s3=s3,
            vault=vault,
            api=api,
            pdf=_pdf(env),
            evidence=_evidence(env, vault.key_name),
            edge=_edge(env),
            webhooks=_webhooks(env, data_dir),
            evidence_work=_evidence_work(env),
            observability=_observability(env, port),
            ceremony=_ceremony(env, data_dir),
            env=env,
        )
