"""A device key that signs DPoP proofs (RFC 9449) for the tests, independent of the server.

Built on ``cryptography`` only (not on :mod:`authsvc.dpop`), so a mistake in the
server's verifier cannot hide behind the same mistake in the signer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

BASE_URL = "http://localhost"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def ath(access_token: str) -> str:
    return b64(hashlib.sha256(access_token.encode()).digest())


class DeviceKey:
    """One device's key pair: ``proof(...)`` signs a fresh proof, ``jkt`` is its thumbprint."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            numbers = self.private.public_key().public_numbers()
            self.jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": b64(numbers.x.to_bytes(32, "big")),
                "y": b64(numbers.y.to_bytes(32, "big")),
            }
            members = ("crv", "kty", "x", "y")
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
            raw = self.private.public_key().public_bytes_raw()
            self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
            members = ("crv", "kty", "x")
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            numbers = self.private.public_key().public_numbers()
            self.jwk = {
                "kty": "RSA",
                "n": b64(numbers.n.to_bytes(256, "big")),
                "e": b64(numbers.e.to_bytes(3, "big")),
            }
            members = ("e", "kty", "n")
        canonical = json.dumps({m: self.jwk[m] for m in members}, separators=(",", ":"))
        self.jkt = b64(hashlib.sha256(canonical.encode()).digest())

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "EdDSA":
            return self.private.sign(data)
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def proof(
        self,
        method: str,
        path: str,
        *,
        access_token: str | None = None,
        base: str = BASE_URL,
        iat: float | None = None,
        jti: str | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A proof for ``method`` ``base + path`` (with ``ath`` for ``access_token``)."""
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk, **(header or {})}
        body: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method,
            "htu": base + path,
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            body["ath"] = ath(access_token)
        body.update(claims or {})
        signing_input = f"{b64json(head)}.{b64json(body)}"
        return f"{signing_input}.{b64(self.sign(signing_input.encode()))}"

    def headers(self, method: str, path: str, access_token: str | None = None, **kw: Any) -> dict:
        """``Authorization: DPoP`` (with an access token) and ``DPoP`` headers for a request."""
        headers = {"DPoP": self.proof(method, path, access_token=access_token, **kw)}
        if access_token is not None:
            headers["Authorization"] = f"DPoP {access_token}"
        return headers
