"""Signing keys: the HMAC secret, or asymmetric keys (RS256, ES256, EdDSA) with rotation.

Asymmetric keys form a ring, read from one of two sources:

- a key directory: one ``<kid>.pem`` private key per key and a ``keyring.json``
  manifest (which kid signs, when each older key was retired, which key is scheduled
  to sign when), shared between hosts as a volume;
- Redis (``AUTHSVC_JWT_KEY_STORE=redis``): one record per key, its private key
  encrypted with AES-256-GCM under ``AUTHSVC_KEY_ENCRYPTION_KEY``, the kid and the
  key's metadata bound as associated data; no shared filesystem needed.

Each key has an activation time. A rotation publishes the new key at once (JWKS and
every verifier) and it signs only from its activation time, a propagation delay later,
so no verifier ever meets a token under a kid it has not loaded. The signer is the
key with the latest activation time that has passed; the key before it is retired at
that moment and keeps verifying until every token it signed has expired (retirement +
the refresh-token lifetime + leeway), then it leaves the JWKS and is pruned. Workers
check the source's version (the manifest's mtime, or one Redis GET) at most once a
second, and once more, rate-limited, when a token names a kid they do not know.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jwt
import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authsvc.config import MIN_SECRET_BYTES_BY_ALGORITHM, Settings
from authsvc.events import emit
from authsvc.store import KeyRecords, RedisClient

_REDIS_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

log = logging.getLogger("authsvc.keys")
HMAC_ALGORITHMS = tuple(MIN_SECRET_BYTES_BY_ALGORITHM)
MANIFEST = "keyring.json"
_RELOAD_INTERVAL_SECONDS = 1.0
# An unknown kid rereads the source at most this often per worker: a flood of made-up
# kids costs one Redis GET (or one stat) a second, not one per request.
_FORCED_RELOAD_INTERVAL_SECONDS = 1.0
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


def _new_kid() -> str:
    return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def _new_pem(algorithm: str) -> bytes:
    return _generate_private_key(algorithm).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_from_pem(pem: bytes, algorithm: str, kid: str, where: str) -> SigningKey:
    private = serialization.load_pem_private_key(pem, password=None)
    expected = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey}.get(
        algorithm, ed25519.Ed25519PrivateKey
    )
    if not isinstance(private, expected):
        raise KeyRingError(f"{where} is not a key for {algorithm}")
    return SigningKey(kid, algorithm, pem.decode(), private.public_key())


def _load_pem(path: Path, algorithm: str, kid: str, retired_at: int | None) -> SigningKey:
    key = _key_from_pem(path.read_bytes(), algorithm, kid, str(path))
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
    """What a rotation did: the new kid, when it starts signing, the kids pruned."""

    kid: str
    activates_at: int
    pruned: list[str]


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


def _expired(keys: list[SigningKey], state: RingState) -> list[str]:
    kept = {key.kid for key in state.verifying}
    return sorted(key.kid for key in keys if key.kid not in kept)


class KeyDirectory:
    """The on-disk key ring: generate, rotate, prune, read. Used by the CLI and KeyRing.

    ``keyring.json``: ``{"active": kid, "retired": {kid: retired_at}, "scheduled":
    {kid: activates_at}}``. A scheduled key whose time has come is the signer on read;
    the next write (rotate, prune) records it as active and retires its predecessor.
    """

    def __init__(self, path: Path, algorithm: str) -> None:
        self.path = path
        self.algorithm = algorithm

    def describe(self) -> str:
        """The directory's path."""
        return str(self.path)

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

    def _write_key(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        kid = _new_kid()
        fd = os.open(self.path / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_new_pem(self.algorithm))
        return kid

    def generate(self, *, activate: bool) -> str:
        """Create a new key; it signs from now on when ``activate`` (or when none does)."""
        kid = self._write_key()
        manifest = self._settled(self._manifest(), int(time.time()))
        if activate or not manifest.get("active"):
            self._activate(manifest, kid, int(time.time()))
        self._write_manifest(manifest)
        return kid

    def rotate(self, *, keep_seconds: int, delay: int = 0) -> Rotated:
        """Publish a new key that signs ``delay`` seconds from now; prune expired keys.

        With ``delay`` 0 it signs at once (one host, or a test). Refuses while another
        rotated-in key is still waiting for its turn.
        """
        now = int(time.time())
        manifest = self._settled(self._manifest(), now)
        for waiting, at in manifest.get("scheduled", {}).items():
            raise _still_waiting(waiting, at)
        kid = self._write_key()
        if delay <= 0:
            self._activate(manifest, kid, now)
        else:
            manifest.setdefault("scheduled", {})[kid] = now + delay
        self._write_manifest(manifest)
        return Rotated(kid, now + max(delay, 0), self.prune(keep_seconds=keep_seconds))

    def _settled(self, manifest: dict[str, Any], now: int) -> dict[str, Any]:
        scheduled = manifest.get("scheduled", {})
        for kid, at in sorted(scheduled.items(), key=lambda item: item[1]):
            if at <= now:
                self._activate(manifest, kid, at)
                del scheduled[kid]
        return manifest

    def _activate(self, manifest: dict[str, Any], kid: str, at: int) -> None:
        previous = manifest.get("active")
        if previous and previous != kid:
            manifest.setdefault("retired", {})[previous] = at
        manifest["active"] = kid

    def prune(self, *, keep_seconds: int) -> list[str]:
        """Delete retired keys whose last token has expired; returns their kids."""
        now = int(time.time())
        before = self._manifest()
        manifest = self._settled(json.loads(json.dumps(before)), now)
        expired = [
            kid
            for kid, retired_at in manifest.get("retired", {}).items()
            if retired_at + keep_seconds < now
        ]
        for kid in expired:
            del manifest["retired"][kid]
            (self.path / f"{kid}.pem").unlink(missing_ok=True)
        if manifest != before:
            self._write_manifest(manifest)
        return expired

    def records(self) -> list[SigningKey]:
        """Every key with its activation time, rebuilt from the manifest.

        Retirements form a chain: a key activated when its predecessor retired. A
        retired key whose file is gone is skipped (pruned by hand); a missing active
        or scheduled key is an error.
        """
        manifest = self._manifest()
        active_kid = manifest.get("active")
        if not active_kid:
            raise KeyRingError(f"no signing key in {self.path}: run `authsvc keys generate` first")
        keys: list[SigningKey] = []
        activated = 0
        retired = manifest.get("retired", {})
        for kid, retired_at in sorted(retired.items(), key=lambda item: (item[1], item[0])):
            if (self.path / f"{kid}.pem").exists():
                keys.append(self._key(kid, activated))
            activated = retired_at
        keys.append(self._key(active_kid, activated))
        keys.extend(self._key(kid, at) for kid, at in manifest.get("scheduled", {}).items())
        return keys

    def _key(self, kid: str, activates_at: int) -> SigningKey:
        key = _load_pem(self.path / f"{kid}.pem", self.algorithm, kid, None)
        return replace(key, activates_at=int(activates_at))

    def version(self) -> float:
        """The manifest's mtime: every change rewrites it."""
        return self.mtime()

    def mtime(self) -> float:
        """The manifest's modification time (0 when absent)."""
        try:
            return (self.path / MANIFEST).stat().st_mtime
        except FileNotFoundError:
            return 0.0


class KeyRecordError(KeyRingError):
    """A key record in Redis that fails authentication or cannot be parsed."""


class WrongKeyEncryptionKeyError(KeyRingError):
    """The key ring in Redis was encrypted under another key-encryption key."""


_RECORD_META = ("v", "kid", "alg", "activates_at", "created", "kek")
_AAD_CONTEXT = b"authsvc-keyring-v1\x00"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4))


def new_key_encryption_key() -> str:
    """A fresh AUTHSVC_KEY_ENCRYPTION_KEY: 32 random bytes, URL-safe base64."""
    return _b64(secrets.token_bytes(32))


class KeyCipher:
    """Seals private keys for Redis: AES-256-GCM under the key-encryption key (KEK).

    The kid, algorithm, activation time, creation time and the KEK's id are the
    associated data: a record cannot be moved under another kid, nor its activation
    time changed, nor a key of the attacker's own slipped in, without the KEK.
    """

    def __init__(self, encoded_kek: str) -> None:
        try:
            raw = _unb64(encoded_kek)
        except ValueError as error:
            raise KeyRingError("AUTHSVC_KEY_ENCRYPTION_KEY is not URL-safe base64") from error
        if len(raw) != 32:
            raise KeyRingError("AUTHSVC_KEY_ENCRYPTION_KEY must decode to 32 bytes")
        self._aead = AESGCM(raw)
        # Names the KEK without revealing it, so a wrong KEK is told apart from tampering.
        self.kek_id = hmac.new(raw, b"authsvc kek id", hashlib.sha256).hexdigest()[:16]

    @staticmethod
    def _aad(meta: dict[str, Any]) -> bytes:
        return _AAD_CONTEXT + json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()

    def seal(self, key: SigningKey, *, created: int) -> str:
        """The record stored in Redis for ``key`` (JSON; the PEM only as ciphertext)."""
        meta = {
            "v": 1,
            "kid": key.kid,
            "alg": key.algorithm,
            "activates_at": key.activates_at,
            "created": created,
            "kek": self.kek_id,
        }
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, key.signing_key.encode(), self._aad(meta))
        return json.dumps({**meta, "nonce": _b64(nonce), "ciphertext": _b64(sealed)})

    def open(self, kid: str, record: str, algorithm: str) -> SigningKey:
        """The key in the record stored under ``kid``; raises on any doubt."""
        try:
            data = json.loads(record)
            meta = {name: data[name] for name in _RECORD_META}
            nonce, sealed = _unb64(data["nonce"]), _unb64(data["ciphertext"])
            activates_at = int(meta["activates_at"])
        except (ValueError, TypeError, KeyError) as error:
            raise KeyRecordError(f"the record of key {kid} is malformed") from error
        if meta["kek"] != self.kek_id:
            raise WrongKeyEncryptionKeyError(
                f"key {kid} is encrypted under another key-encryption key (id {meta['kek']}); "
                f"AUTHSVC_KEY_ENCRYPTION_KEY has id {self.kek_id}: wrong KEK for this Redis?"
            )
        if meta["kid"] != kid:
            raise KeyRecordError(f"the record stored as key {kid} names key {meta['kid']}")
        try:
            pem = self._aead.decrypt(nonce, sealed, self._aad(meta))
        except InvalidTag as error:
            raise KeyRecordError(
                f"key {kid} failed authentication: its record in Redis was altered"
            ) from error
        if meta["alg"] != algorithm:
            raise KeyRingError(f"key {kid} is {meta['alg']}; AUTHSVC_JWT_ALGORITHM is {algorithm}")
        key = _key_from_pem(pem, algorithm, kid, f"key {kid}")
        return replace(key, activates_at=activates_at)


class RedisKeys:
    """The key ring in Redis, each private key sealed by :class:`KeyCipher`.

    Used by the CLI (generate, rotate, prune, import) and by KeyRing (version, records).
    Every change is one script on one hash-tagged slot (:class:`authsvc.store.KeyRecords`).
    """

    def __init__(
        self,
        records: KeyRecords,
        cipher: KeyCipher,
        algorithm: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = records
        self._cipher = cipher
        self.algorithm = algorithm
        self._clock = clock

    def describe(self) -> str:
        """The Redis hash holding the records."""
        return f"Redis ({self._store.records_key})"

    def version(self) -> str:
        """The ring's change counter: one GET."""
        return self._store.version()

    def records(self) -> list[SigningKey]:
        """Every key, decrypted and authenticated; an empty ring is an error."""
        raw = self._store.all()
        if not raw:
            raise KeyRingError("no signing key in Redis: run `authsvc keys generate` first")
        return [self._cipher.open(kid, record, self.algorithm) for kid, record in raw.items()]

    def _new_key(self, activates_at: int) -> tuple[str, str]:
        pem = _new_pem(self.algorithm)
        kid = _new_kid()
        key = replace(_key_from_pem(pem, self.algorithm, kid, kid), activates_at=activates_at)
        return kid, self._cipher.seal(key, created=int(self._clock()))

    def generate(self) -> str:
        """The first key of an empty ring; it signs at once."""
        if self._store.all():
            raise KeyRingError("the key ring in Redis has keys already: use `authsvc keys rotate`")
        kid, record = self._new_key(int(self._clock()))
        self._store.change(add={kid: record})
        return kid

    def rotate(self, *, keep_seconds: int, delay: int) -> Rotated:
        """Publish a new key that signs ``delay`` seconds from now; prune expired keys."""
        now = self._clock()
        keys = self.records()
        state = ring_at(keys, now, keep_seconds)
        for waiting in state.pending():
            raise _still_waiting(waiting.kid, waiting.activates_at)
        # Strictly after the signer's time, so even a rotation in the same second wins.
        activates_at = max(math.ceil(now) + max(delay, 0), state.active.activates_at + 1)
        kid, record = self._new_key(activates_at)
        pruned = _expired(keys, state)
        self._store.change(add={kid: record}, remove=pruned)
        return Rotated(kid, activates_at, pruned)

    def prune(self, *, keep_seconds: int) -> list[str]:
        """Delete keys whose last token has expired; returns their kids."""
        keys = self.records()
        pruned = _expired(keys, ring_at(keys, self._clock(), keep_seconds))
        if pruned:
            self._store.change(remove=pruned)
        return pruned

    def import_from(self, directory: KeyDirectory, *, keep_seconds: int) -> list[str]:
        """Copy a key directory's live keys (same kids, same times) into an empty ring."""
        if self._store.all():
            raise KeyRingError("the key ring in Redis has keys already: import into an empty one")
        state = ring_at(directory.records(), self._clock(), keep_seconds)
        created = int(self._clock())
        records = {key.kid: self._cipher.seal(key, created=created) for key in state.verifying}
        self._store.change(add=records)
        return list(records)


def redis_key_source(settings: Settings, client: RedisClient) -> RedisKeys | None:
    """The key ring in Redis when ``AUTHSVC_JWT_KEY_STORE=redis``, else None."""
    if settings.jwt_key_store != "redis":
        return None
    return RedisKeys(
        KeyRecords(client, prefix=settings.redis_key_prefix),
        KeyCipher(settings.key_encryption_key),
        settings.jwt_algorithm,
    )


def _still_waiting(kid: str, activates_at: float) -> KeyRingError:
    # One rotation at a time: a second one now would retire a key that never signed.
    return KeyRingError(f"{kid} is published and signs from {utc_text(activates_at)}: rotate after")


def utc_text(unix_time: float) -> str:
    """A Unix time as people read it in CLI output and errors: ``2026-01-01 12:05:30 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_time))


@dataclass(frozen=True)
class ReloadFailure:
    """Why the last reload of the key directory failed; the last good keys still serve."""

    reason: str  # the exception class: safe to show on /readyz (no path, no key)
    detail: str  # the message, for the log
    since: int  # Unix time of the first failure in a row


class KeyRing:
    """The keys one worker signs and verifies with, following its source's changes.

    Every second at most (:meth:`refresh`, before each request) it compares the
    source's version with the one it loaded and rereads on a change; a token under a
    kid it does not know forces one more check, at most once a second. Activation
    times need no reread: the signer changes when the clock reaches them.

    A reload that fails (a manifest naming a missing or unreadable key, a truncated
    manifest, a Redis record that fails authentication, Redis unreachable) keeps the
    last good keys: one error line per distinct failure, the ``key_reload_failed``
    event (metrics) on each try, :attr:`reload_failure` for ``/readyz``. Only the first
    load, in the constructor, raises: a process that never had good keys must not start.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        keep_seconds: int,
        secret: str = "",
        key_dir: str = "",
        private_key_file: str = "",
        source: KeySource | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithm = algorithm
        self.keep_seconds = keep_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._source: KeySource | None = source
        self._keys: list[SigningKey] = []
        self._checked_at = -math.inf
        self._forced_at = -math.inf
        self._loaded_version: object = None
        self.reload_failure: ReloadFailure | None = None
        if algorithm in HMAC_ALGORITHMS:
            self._set_fixed(SigningKey(hmac_kid(secret), algorithm, secret, secret))
        elif private_key_file:
            pem = Path(private_key_file).read_bytes()
            self._set_fixed(_load_pem(Path(private_key_file), algorithm, thumbprint_kid(pem), None))
        else:
            if self._source is None:
                self._source = KeyDirectory(Path(key_dir), algorithm)
            self._checked_at = monotonic()
            self._load()

    def _set_fixed(self, key: SigningKey) -> None:
        self._state = RingState(key, (key,), math.inf)
        self._by_kid = {key.kid: key}

    def _apply(self, keys: list[SigningKey]) -> None:
        state = ring_at(keys, self._clock(), self.keep_seconds)
        # The dict first, then the state: a thread that sees the new signer also knows
        # its kid (the dict alone is never missing a key the state names).
        self._by_kid = {key.kid: key for key in state.verifying}
        self._state = state

    def _load(self, version: object = None) -> None:
        assert self._source is not None  # noqa: S101 - only called with a source
        # The version before the keys: a change in between is seen again next time.
        if version is None:
            version = self._source.version()
        keys = self._source.records()
        self._apply(keys)
        self._keys = keys
        self._loaded_version = version

    def _advance(self) -> None:
        """Recompute the ring when an activation or expiry time has passed (no I/O)."""
        if self._clock() < self._state.next_change:
            return
        with self._lock:
            if self._clock() >= self._state.next_change:
                self._apply(self._keys)

    def refresh(self) -> None:
        """Pick up a change of the source (checks its version at most once a second)."""
        if self._source is None:
            return
        self._advance()
        if self._monotonic() - self._checked_at < _RELOAD_INTERVAL_SECONDS:
            return
        # One thread checks; the others go on with the keys they have.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._monotonic() - self._checked_at >= _RELOAD_INTERVAL_SECONDS:
                self._check()
        finally:
            self._lock.release()

    def _force_check(self) -> None:
        """An unknown kid: check the source now, unless this worker did in the last second."""
        with self._lock:
            if self._monotonic() - self._forced_at < _FORCED_RELOAD_INTERVAL_SECONDS:
                return
            self._forced_at = self._monotonic()
            self._check(raise_outage=True)

    def _check(self, *, raise_outage: bool = False) -> None:
        assert self._source is not None  # noqa: S101 - only called with a source
        self._checked_at = self._monotonic()
        try:
            version = self._source.version()
            if version != self._loaded_version:
                self._load(version)
        except Exception as error:  # whatever is wrong with the source: keep serving
            # The version stays unrecorded, so the next check (a second later) tries
            # again and picks up the repair.
            self._reload_failed(error)
            if raise_outage and isinstance(error, _REDIS_OUTAGE):
                # A token under a kid only Redis could tell about: 503, try again, not
                # a 401 that would sign its holder out.
                raise
            return
        if self.reload_failure is not None:
            log.info("keys in %s reloaded: the reload error is resolved", self._source.describe())
            self.reload_failure = None
            emit("key_reload_recovered")

    def _reload_failed(self, error: Exception) -> None:
        reason, detail = type(error).__name__, str(error)
        previous = self.reload_failure
        if previous is None or (previous.reason, previous.detail) != (reason, detail):
            log.error(
                "cannot reload the keys in %s (%s: %s); still serving the last good keys",
                self._source.describe() if self._source else "-",
                reason,
                detail,
            )
            since = previous.since if previous else int(time.time())
            self.reload_failure = ReloadFailure(reason, detail, since)
        emit("key_reload_failed", reason=reason)

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        self._advance()
        return self._state.active

    def verifying_key(self, kid: str | None) -> Any:
        """The key for ``kid``; an unknown or missing kid makes the token invalid.

        An unknown kid first forces one check of the source (rate-limited per worker):
        a key another host just published is found at once, not a second later.
        """
        self._advance()
        key = self._by_kid.get(kid or "")
        if key is None and kid and self._source is not None:
            self._force_check()
            key = self._by_kid.get(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return key.verifying_key

    def state(self) -> RingState:
        """The ring now: signer, verifying keys (retired and pending), next change."""
        self._advance()
        return self._state

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: every key still verifying, pending ones included.

        Never an HMAC secret.
        """
        keys = [jwk for key in self.state().verifying if (jwk := key.public_jwk()) is not None]
        return {"keys": keys}
