"""DPoP proofs (RFC 9449) for the client SDK: the device's key and the JWTs it signs.

A DPoP-bound session is tied to a key pair the device holds; every refresh and every
protected call carries a fresh proof signed by it, so a refresh or access token copied
out of the device (flash, a proxy log) is worth nothing without the key. Three kinds of
key plug in, all behind :class:`DpopKey`:

- :meth:`EcDpopKey.generate`: a new EC P-256 key made here (``AuthClient(dpop=True)``
  keeps it in the token store, next to the tokens it binds);
- :class:`EcDpopKey` around a ``cryptography`` private key the caller owns;
- :class:`ExternalDpopKey`: the public key and a callable that signs, for a key that
  never leaves a secure element, a TPM or an HSM.

Only ``cryptography`` is needed (no Flask, no PyJWT): the device side stays small.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "DPOP_HEADER",
    "DPOP_NONCE_HEADER",
    "DpopKey",
    "EcDpopKey",
    "ExternalDpopKey",
    "access_token_hash",
    "b64url",
    "jwk_thumbprint",
    "make_proof",
    "proof_htu",
]

DPOP_HEADER = "DPoP"
DPOP_NONCE_HEADER = "DPoP-Nonce"
PROOF_TYPE = "dpop+jwt"
ALGORITHM = "ES256"
_COORDINATE_BYTES = 32  # P-256
# RFC 9449 section 11.1: at least 96 bits of randomness; 128 here.
_JTI_BYTES = 16


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DpopKey(Protocol):
    """A key that signs DPoP proofs: its public JWK, its JWS ``alg`` and a signer."""

    @property
    def alg(self) -> str:
        """The JWS algorithm of the proofs (``ES256``)."""

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``crv``, ``x``, ``y``), no private member."""

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature of ``signing_input`` (ES256: the 64-byte ``r || s``)."""


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError("a DPoP key must be on P-256 (ES256)")
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
    }


def _raw_signature(der: bytes) -> bytes:
    # JWS ES256 signatures are r || s, each 32 bytes (RFC 7518 section 3.4), not DER.
    r, s = decode_dss_signature(der)
    return r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")


class EcDpopKey:
    """An EC P-256 private key held in this process (``cryptography``)."""

    alg = ALGORITHM

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        self._public_jwk = _public_jwk(private_key.public_key())

    @classmethod
    def generate(cls) -> EcDpopKey:
        """A new random P-256 key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_jwk(cls, jwk: dict[str, str]) -> EcDpopKey:
        """The key saved by :meth:`private_jwk`; ValueError when it is not one."""
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" not in jwk:
            raise ValueError("not a private EC P-256 JWK")
        d = int.from_bytes(_b64url_decode(jwk["d"]), "big")
        key = cls(ec.derive_private_key(d, ec.SECP256R1()))
        if key.public_jwk != {k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk}:
            raise ValueError("the JWK's public part does not match its private part")
        return key

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public JWK that goes into every proof's header."""
        return dict(self._public_jwk)

    def private_jwk(self) -> dict[str, str]:
        """The key with its private member ``d``: only for a 0600 token store."""
        d = self._private_key.private_numbers().private_value
        return {**self._public_jwk, "d": b64url(d.to_bytes(_COORDINATE_BYTES, "big"))}

    def sign(self, signing_input: bytes) -> bytes:
        """ES256 over ``signing_input``, as JWS wants it (``r || s``)."""
        der = self._private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        return _raw_signature(der)

    def __repr__(self) -> str:
        # Never the private key, even by accident in a log line.
        return f"EcDpopKey(jkt={jwk_thumbprint(self._public_jwk)!r})"


class ExternalDpopKey:
    """A P-256 key that signs elsewhere (secure element, TPM, HSM, a KMS).

    ``sign`` receives the bytes to sign and returns an ECDSA P-256 / SHA-256 signature,
    DER-encoded (``signature="der"``, what ``cryptography``, OpenSSL and most HSM
    wrappers return) or as the 64-byte ``r || s`` (``signature="raw"``, PKCS#11
    ``CKM_ECDSA`` over the hash is the caller's business: hash inside ``sign``).
    """

    alg = ALGORITHM

    def __init__(
        self,
        public_key: ec.EllipticCurvePublicKey,
        sign: Callable[[bytes], bytes],
        *,
        signature: Literal["der", "raw"] = "der",
    ) -> None:
        if signature not in ("der", "raw"):
            raise ValueError("signature must be 'der' or 'raw'")
        self._public_jwk = _public_jwk(public_key)
        self._sign = sign
        self._format = signature

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public JWK that goes into every proof's header."""
        return dict(self._public_jwk)

    def sign(self, signing_input: bytes) -> bytes:
        """Ask the external signer, and return the JWS form of its signature."""
        signature = self._sign(signing_input)
        if self._format == "raw":
            if len(signature) != 2 * _COORDINATE_BYTES:
                raise ValueError("a raw ES256 signature is 64 bytes (r || s)")
            return signature
        return _raw_signature(signature)

    def __repr__(self) -> str:
        return f"ExternalDpopKey(jkt={jwk_thumbprint(self._public_jwk)!r})"


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an EC public JWK: the ``jkt``."""
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url(SHA-256(access token)) (RFC 9449 section 4.2)."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def proof_htu(url: str) -> str:
    """The ``htu`` of a request to ``url``: scheme, host and path, no query or fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def make_proof(
    key: DpopKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A DPoP proof JWT for one request (RFC 9449 section 4.2), never reused.

    ``access_token`` adds ``ath`` (calls to a resource); ``nonce`` is the server's last
    ``DPoP-Nonce``. Every call has a new random ``jti``, so a retried request (a refresh
    whose reply was lost) carries a new proof that no replay cache has seen.
    """
    header = {"typ": PROOF_TYPE, "alg": key.alg, "jwk": key.public_jwk}
    claims: dict[str, Any] = {
        "jti": b64url(secrets.token_bytes(_JTI_BYTES)),
        "htm": method.upper(),
        "htu": proof_htu(url),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def der_signature(raw: bytes) -> bytes:
    """The DER form of a 64-byte ``r || s`` signature (for tests and external signers)."""
    r = int.from_bytes(raw[:_COORDINATE_BYTES], "big")
    s = int.from_bytes(raw[_COORDINATE_BYTES:], "big")
    return encode_dss_signature(r, s)
