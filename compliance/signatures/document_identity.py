"""The vault's document-signing identity: an ECDSA P-256 key and X.509 certificate for PAdES-signed PDFs.

Certificates themselves are signed with the vault's Ed25519 key, but common PDF readers do not validate
Ed25519, so the one-page PDF of a certificate is signed with this separate identity. It is configured
(``EVAULT_DOCUMENT_SIGNING_KEY``/``_CERT``) or, in the embedded default, generated into the data directory on
first start: a self-signed certificate (digitalSignature and nonRepudiation, as PAdES validators require),
key written 0600. Its certificate is published at ``/.well-known/evault/keys`` (``"use": "document-signing"``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_FILE, CERT_FILE = "document-signing-key.pem", "document-signing-cert.pem"
VALIDITY = dt.timedelta(days=3650)


class DocumentSigningError(RuntimeError):
    """The configured identity cannot sign: wrong key type, or key and certificate do not belong together."""


@dataclass(frozen=True)
class DocumentSigner:
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        if not isinstance(self.private_key.curve, ec.SECP256R1):
            raise DocumentSigningError("the document-signing key must be ECDSA P-256")
        if self.certificate.public_key() != self.private_key.public_key():
            raise DocumentSigningError("the document-signing certificate is not for its key")

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def asn1(self) -> tuple[asn1_x509.Certificate, asn1_keys.PrivateKeyInfo]:
        """The pair as pyHanko takes it."""
        der = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        cert = asn1_x509.Certificate.load(self.certificate.public_bytes(serialization.Encoding.DER))
        return cert, asn1_keys.PrivateKeyInfo.load(der)


def self_signed(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _load(key_path: Path, cert_path: Path) -> DocumentSigner:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DocumentSigningError(f"{key_path} is not an ECDSA private key")
    return DocumentSigner(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))


def load_or_create_document_signer(
    data_dir: Path, key_path: Path | None, cert_path: Path | None, common_name: str
) -> DocumentSigner:
    """The configured identity, else the one in ``data_dir`` (made on first use: key 0600, self-signed)."""
    if key_path is not None and cert_path is not None:
        return _load(key_path, cert_path)
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return _load(key_path, cert_path)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    cert_path.write_bytes(self_signed(key, common_name).public_bytes(serialization.Encoding.PEM))
    return _load(key_path, cert_path)
