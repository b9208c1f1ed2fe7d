"""What a key ring is made of: keys, who signs when (``ring_at``), kids, PEM helpers."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authsvc.config import MIN_SECRET_BYTES_BY_ALGORITHM

HMAC_ALGORITHMS = tuple(MIN_SECRET_BYTES_BY_ALGORITHM)
_JWK_EXPORTERS: dict[str, Any] = {
    "RS256": RSAAlgorithm,
    "ES256": ECAlgorithm,
    "EdDSA": OKPAlgorithm,
}


class KeyRingError(RuntimeError):
    """A key directory or key file that cannot be used (no active key, wrong key type)."""


@dataclass(frozen=True)
class SigningKey:
    """One key: what signs (private PEM or HMAC secret) and what verifies."""

    kid: str
    algorithm: str
    signing_key: str
    verifying_key: Any
    retired_at: int | None = None
    activates_at: int = 0  # Unix time from which it signs; published before that

    def public_jwk(self) -> dict[str, Any] | None:
        """The RFC 7517 public JWK, or None for an HMAC secret (never published)."""
        exporter = _JWK_EXPORTERS.get(self.algorithm)
        if exporter is None:
            return None
        jwk = exporter.to_jwk(self.verifying_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def _generate_private_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"cannot generate keys for {algorithm}")


def new_kid(now: float | None = None) -> str:
    """A fresh kid: the UTC time it was made (readable in `keys list`) and 32 random bits."""
    stamp = time.gmtime(time.time() if now is None else now)
    return f"{time.strftime('%Y%m%d%H%M%S', stamp)}-{secrets.token_hex(4)}"


def new_pem(algorithm: str) -> bytes:
    """A fresh private key for ``algorithm``, PKCS#8 PEM, unencrypted."""
    return _generate_private_key(algorithm).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(pem: bytes, algorithm: str, kid: str, where: str) -> SigningKey:
    """The key in ``pem``; refuses a key of another type than ``algorithm`` needs."""
    private = serialization.load_pem_private_key(pem, password=None)
    expected = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey}.get(
        algorithm, ed25519.Ed25519PrivateKey
    )
    if not isinstance(private, expected):
        raise KeyRingError(f"{where} is not a key for {algorithm}")
    return SigningKey(kid, algorithm, pem.decode(), private.public_key())


def load_pem(path: Path, algorithm: str, kid: str, retired_at: int | None) -> SigningKey:
    """The key in the PEM file at ``path``."""
    key = key_from_pem(path.read_bytes(), algorithm, kid, str(path))
    return replace(key, retired_at=retired_at)


@dataclass(frozen=True)
class RingState:
    """The ring at one moment: who signs, who verifies, and when that next changes."""

    active: SigningKey
    verifying: tuple[SigningKey, ...]  # the signer, retired keys in retention, pending keys
    next_change: float  # Unix time of the next activation or expiry (inf: none)

    def pending(self) -> list[SigningKey]:
        """Published keys that do not sign yet."""
        return [k for k in self.verifying if k.activates_at > self.active.activates_at]


def ring_at(keys: Iterable[SigningKey], now: float, keep_seconds: int) -> RingState:
    """Which key signs at ``now`` and which keys verify: a pure function of the keys.

    The signer is the key with the latest activation time not after ``now``; each key
    before it was retired when its successor activated and verifies for ``keep_seconds``
    after that; keys still to activate are published (they verify) but do not sign.
    """
    ordered = sorted(keys, key=lambda k: (k.activates_at, k.kid))
    started = [k for k in ordered if k.activates_at <= now]
    if not started:
        raise KeyRingError("no key signs yet: run `authsvc keys generate` first")
    pending = [k for k in ordered if k.activates_at > now]
    changes = [float(k.activates_at) for k in pending]
    verifying = [replace(started[-1], retired_at=None)]
    for key, successor in itertools.pairwise(started):
        expires = successor.activates_at + keep_seconds
        if expires >= now:
            verifying.append(replace(key, retired_at=successor.activates_at))
            changes.append(expires + 1.0)
    verifying.extend(replace(k, retired_at=None) for k in pending)
    return RingState(verifying[0], tuple(verifying), min(changes, default=float("inf")))


def expired(keys: list[SigningKey], state: RingState) -> list[str]:
    """The kids of ``keys`` that no longer verify in ``state`` (to prune)."""
    kept = {key.kid for key in state.verifying}
    return sorted(key.kid for key in keys if key.kid not in kept)


def hmac_kid(secret: str) -> str:
    """The kid of an HMAC secret: a short one-way digest, so tokens name their key too."""
    return "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def thumbprint_kid(pem: bytes) -> str:
    """A kid for a lone PEM file: its public key's SHA-256, shortened (stable across restarts)."""
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


class Rotated(NamedTuple):
    """What a rotation did: the new kid, when it starts signing, the kids pruned.

    ``still_pending``: with ``--now``, the keys published earlier that still take over
    at their own time (an emergency rotation does not cancel them).
    """

    kid: str
    activates_at: int
    pruned: list[str]
    still_pending: tuple[str, ...] = ()


class KeySource(Protocol):
    """Where a KeyRing reads its keys: a key directory or Redis."""

    def describe(self) -> str:
        """Where the keys are, for log lines (never shown on /readyz)."""
        ...

    def version(self) -> object:
        """A cheap token that changes whenever the keys change."""
        ...

    def records(self) -> list[SigningKey]:
        """Every key with its activation time; raises when the source is unusable."""
        ...

    def last_good(self) -> list[SigningKey] | None:
        """The last good keys this host saw (a snapshot), for a boot into a bad source."""
        ...


def still_waiting(kid: str, activates_at: float) -> KeyRingError:
    """The refusal of a second rotation while a rotated-in key waits for its turn."""
    # One rotation at a time: a second one now would retire a key that never signed.
    return KeyRingError(
        f"{kid} is published and signs from {utc_text(activates_at)}: rotate after "
        "(in an emergency, the Redis ring's `authsvc keys rotate --now` does not wait)"
    )


def utc_text(unix_time: float) -> str:
    """A Unix time as people read it in CLI output and errors: ``2026-01-01 12:05:30 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_time))
