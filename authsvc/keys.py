"""Signing keys: the HMAC secret, or asymmetric keys (RS256, ES256, EdDSA) with rotation.

An asymmetric key directory holds one ``<kid>.pem`` private key per key and a
``keyring.json`` manifest: which kid signs now, and when each older key was retired.
A retired key keeps verifying until every token it signed has expired (retirement
+ the refresh-token lifetime + leeway), then it leaves the JWKS and is pruned. Workers
notice a rotation by the manifest's mtime, so rotating needs no restart. With several
hosts, mount the same directory on each (e.g. a secret volume).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authsvc.config import MIN_SECRET_BYTES_BY_ALGORITHM
from authsvc.events import emit

log = logging.getLogger("authsvc.keys")
HMAC_ALGORITHMS = tuple(MIN_SECRET_BYTES_BY_ALGORITHM)
MANIFEST = "keyring.json"
_RELOAD_INTERVAL_SECONDS = 1.0
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


def _load_pem(path: Path, algorithm: str, kid: str, retired_at: int | None) -> SigningKey:
    pem = path.read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    expected = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey}.get(
        algorithm, ed25519.Ed25519PrivateKey
    )
    if not isinstance(private, expected):
        raise KeyRingError(f"{path} is not a key for {algorithm}")
    return SigningKey(kid, algorithm, pem.decode(), private.public_key(), retired_at)


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


class KeyDirectory:
    """The on-disk key ring: generate, rotate, prune, read. Used by the CLI and KeyRing."""

    def __init__(self, path: Path, algorithm: str) -> None:
        self.path = path
        self.algorithm = algorithm

    def _manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            return {"active": None, "retired": {}}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        # Write then rename: a worker never reads a half-written manifest.
        temporary = self.path / f".{MANIFEST}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(manifest, indent=2))
        os.replace(temporary, self.path / MANIFEST)

    def generate(self, *, activate: bool) -> str:
        """Create a new key; it signs from now on when ``activate`` (or when none does)."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        kid = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        pem = _generate_private_key(self.algorithm).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.path / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        manifest = self._manifest()
        if activate or not manifest.get("active"):
            self._activate(manifest, kid)
        self._write_manifest(manifest)
        return kid

    def rotate(self, *, keep_seconds: int) -> tuple[str, list[str]]:
        """Make a new key the signer, retire the old one, prune keys past ``keep_seconds``.

        Returns the new kid and the pruned kids.
        """
        kid = self.generate(activate=True)
        return kid, self.prune(keep_seconds=keep_seconds)

    def _activate(self, manifest: dict[str, Any], kid: str) -> None:
        previous = manifest.get("active")
        if previous and previous != kid:
            manifest.setdefault("retired", {})[previous] = int(time.time())
        manifest["active"] = kid

    def prune(self, *, keep_seconds: int) -> list[str]:
        """Delete retired keys whose last token has expired; returns their kids."""
        manifest = self._manifest()
        now = int(time.time())
        expired = [
            kid
            for kid, retired_at in manifest.get("retired", {}).items()
            if retired_at + keep_seconds < now
        ]
        for kid in expired:
            del manifest["retired"][kid]
            (self.path / f"{kid}.pem").unlink(missing_ok=True)
        if expired:
            self._write_manifest(manifest)
        return expired

    def load(self, *, keep_seconds: int) -> tuple[SigningKey, list[SigningKey]]:
        """The active key and every key still verifying."""
        manifest = self._manifest()
        active_kid = manifest.get("active")
        if not active_kid:
            raise KeyRingError(f"no signing key in {self.path}: run `authsvc keys generate` first")
        now = int(time.time())
        keys = [_load_pem(self.path / f"{active_kid}.pem", self.algorithm, active_kid, None)]
        for kid, retired_at in manifest.get("retired", {}).items():
            if retired_at + keep_seconds >= now and (self.path / f"{kid}.pem").exists():
                keys.append(_load_pem(self.path / f"{kid}.pem", self.algorithm, kid, retired_at))
        return keys[0], keys

    def mtime(self) -> float:
        """The manifest's modification time (0 when absent)."""
        try:
            return (self.path / MANIFEST).stat().st_mtime
        except FileNotFoundError:
            return 0.0


@dataclass(frozen=True)
class ReloadFailure:
    """Why the last reload of the key directory failed; the last good keys still serve."""

    reason: str  # the exception class: safe to show on /readyz (no path, no key)
    detail: str  # the message, for the log
    since: int  # Unix time of the first failure in a row


class KeyRing:
    """The keys one worker signs and verifies with, reloaded when the directory rotates.

    A reload that fails (a manifest naming a missing or unreadable key, a truncated
    manifest) keeps the last good keys: one error line per distinct failure, the
    ``key_reload_failed`` event (metrics) on each try, :attr:`reload_failure` for
    ``/readyz``. Only the first load, in the constructor, raises: a process that never
    had good keys must not start.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        keep_seconds: int,
        secret: str = "",
        key_dir: str = "",
        private_key_file: str = "",
    ) -> None:
        self.algorithm = algorithm
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._directory: KeyDirectory | None = None
        self._checked_at = 0.0
        self._loaded_mtime = -1.0
        self.reload_failure: ReloadFailure | None = None
        if algorithm in HMAC_ALGORITHMS:
            self._set(SigningKey(hmac_kid(secret), algorithm, secret, secret), [])
        elif private_key_file:
            pem = Path(private_key_file).read_bytes()
            key = _load_pem(Path(private_key_file), algorithm, thumbprint_kid(pem), None)
            self._set(key, [key])
        else:
            self._directory = KeyDirectory(Path(key_dir), algorithm)
            self._reload()

    def _set(self, active: SigningKey, verifying: list[SigningKey]) -> None:
        self._active = active
        self._by_kid = {key.kid: key for key in [active, *verifying]}

    def _reload(self) -> None:
        assert self._directory is not None  # noqa: S101 - only called for a directory
        mtime = self._directory.mtime()
        active, verifying = self._directory.load(keep_seconds=self.keep_seconds)
        self._set(active, verifying)
        self._loaded_mtime = mtime

    def refresh(self) -> None:
        """Pick up a rotation (checks the manifest at most once a second)."""
        if self._directory is None:
            return
        now = time.monotonic()
        if now - self._checked_at < _RELOAD_INTERVAL_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            try:
                if self._directory.mtime() != self._loaded_mtime:
                    self._reload()
            except Exception as error:  # whatever is wrong with the directory: keep serving
                self._reload_failed(error)
                return
            if self.reload_failure is not None:
                log.info("keys in %s reloaded: the reload error is resolved", self._directory.path)
                self.reload_failure = None
                emit("key_reload_recovered")

    def _reload_failed(self, error: Exception) -> None:
        # The mtime stays unrecorded, so the next check (a second later) tries again and
        # picks up the repair, whether of the manifest or of a key file.
        reason, detail = type(error).__name__, str(error)
        previous = self.reload_failure
        if previous is None or (previous.reason, previous.detail) != (reason, detail):
            log.error(
                "cannot reload the keys in %s (%s: %s); still serving the last good keys",
                self._directory.path if self._directory else "-",
                reason,
                detail,
            )
            since = previous.since if previous else int(time.time())
            self.reload_failure = ReloadFailure(reason, detail, since)
        emit("key_reload_failed", reason=reason)

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._active

    def verifying_key(self, kid: str | None) -> Any:
        """The key for ``kid``; an unknown or missing kid makes the token invalid."""
        key = self._by_kid.get(kid or "")
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return key.verifying_key

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: asymmetric keys still verifying; never an HMAC secret."""
        keys = [jwk for key in self._by_kid.values() if (jwk := key.public_jwk()) is not None]
        return {"keys": keys}
