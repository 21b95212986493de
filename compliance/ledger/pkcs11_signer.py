"""Vault signatures made inside a PKCS#11 token (an HSM; SoftHSM2 in the tests), through ``python-pkcs11``.

The key is an Ed25519 (CKK_EC_EDWARDS) pair found by label; signing uses CKM_EDDSA, whose output is the plain
64-byte Ed25519 signature, so notes, certificates and endorsements verify exactly as with a file key.
"""

from __future__ import annotations

import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519_OID = "1.3.101.112"


def _point(ec_point: bytes) -> bytes:
    """CKA_EC_POINT of an Edwards key is the 32-byte key, DER-wrapped in an OCTET STRING by most tokens."""
    if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20":
        return ec_point[2:]
    if len(ec_point) == 32:
        return ec_point
    raise ValueError("the token's public key is not a 32-byte Ed25519 point")


class Pkcs11Signer:
    """One Ed25519 key pair on a token, used through a session opened once and serialised by a lock."""

    def __init__(self, library: str, token_label: str, key_label: str, pin: str) -> None:
        import pkcs11  # an optional dependency: only HSM deployments need it

        self._pkcs11: Any = pkcs11
        token = pkcs11.lib(library).get_token(token_label=token_label)
        try:
            self._session = token.open(user_pin=pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # PKCS#11 logs in per application, not per session: another signer of this process already did.
            self._session = token.open()
        self._private: Any = self._session.get_key(
            object_class=pkcs11.ObjectClass.PRIVATE_KEY, key_type=pkcs11.KeyType.EC_EDWARDS, label=key_label
        )
        public = self._session.get_key(
            object_class=pkcs11.ObjectClass.PUBLIC_KEY, key_type=pkcs11.KeyType.EC_EDWARDS, label=key_label
        )
        self._public = Ed25519PublicKey.from_public_bytes(_point(bytes(public[pkcs11.Attribute.EC_POINT])))
        self._lock = threading.Lock()

    def sign(self, data: bytes) -> bytes:
        with self._lock:
            return bytes(self._private.sign(data, mechanism=self._pkcs11.Mechanism.EDDSA))

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def close(self) -> None:
        self._session.close()


def generate_pkcs11_key(library: str, token_label: str, key_label: str, pin: str) -> None:
    """Make a token-resident, non-extractable Ed25519 pair under ``key_label`` (``evault signing-key rotate``)."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    token = pkcs11.lib(library).get_token(token_label=token_label)
    try:
        opened = token.open(rw=True, user_pin=pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        opened = token.open(rw=True)
    with opened as session:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC_EDWARDS,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
            local=True,
        )
        params.generate_keypair(store=True, label=key_label)
