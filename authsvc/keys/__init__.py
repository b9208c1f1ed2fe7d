"""Signing keys: the HMAC secret, or asymmetric keys (RS256, ES256, EdDSA) with rotation.

Asymmetric keys form a ring, read from one of two sources:

- a key directory (:mod:`.directory`): one ``<kid>.pem`` private key per key and a
  ``keyring.json`` manifest (which kid signs, when each older key was retired, which
  key is scheduled to sign when), shared between hosts as a volume;
- Redis (``AUTHSVC_JWT_KEY_STORE=redis``, :mod:`.redis_source`): one record per key,
  its private key encrypted with AES-256-GCM under ``AUTHSVC_KEY_ENCRYPTION_KEY``, the
  kid and the key's metadata bound as associated data, and a sealed manifest binding
  the ring as a whole (:mod:`.sealing`); each host keeps its last good ring on disk
  (:mod:`.snapshot`), so a worker restart survives a bad ring or a Redis outage.

Each key has an activation time. A rotation publishes the new key at once (JWKS and
every verifier) and it signs only from its activation time, a propagation delay later,
so no verifier ever meets a token under a kid it has not loaded. The signer is the
key with the latest activation time that has passed (:func:`.model.ring_at`); the key
before it is retired at that moment and keeps verifying until every token it signed
has expired (retirement + the refresh-token lifetime + leeway), then it leaves the
JWKS and is pruned. Workers (:mod:`.ring`) check the source's version (the manifest's
mtime, or one Redis GET) at most once a second, and once more, rate-limited, when a
token names a kid they do not know.
"""

from __future__ import annotations

from authsvc.config import Settings
from authsvc.keys.directory import MANIFEST, KeyDirectory
from authsvc.keys.model import (
    HMAC_ALGORITHMS,
    KeyRingError,
    KeySource,
    RingState,
    Rotated,
    SigningKey,
    hmac_kid,
    ring_at,
    thumbprint_kid,
    utc_text,
)
from authsvc.keys.redis_source import OpenedRing, RedisKeys, redis_key_source
from authsvc.keys.ring import KeyRing, ReloadFailure
from authsvc.keys.sealing import (
    KeyCipher,
    KeyRecordError,
    KeyRingRollbackError,
    Manifest,
    WrongKeyEncryptionKeyError,
    new_key_encryption_key,
)
from authsvc.keys.snapshot import LastGoodRing, snapshot_path
from authsvc.store import RedisClient

__all__ = [
    "HMAC_ALGORITHMS",
    "MANIFEST",
    "KeyCipher",
    "KeyDirectory",
    "KeyRecordError",
    "KeyRing",
    "KeyRingError",
    "KeyRingRollbackError",
    "KeySource",
    "LastGoodRing",
    "Manifest",
    "OpenedRing",
    "RedisKeys",
    "ReloadFailure",
    "RingState",
    "Rotated",
    "SigningKey",
    "WrongKeyEncryptionKeyError",
    "build_keyring",
    "hmac_kid",
    "new_key_encryption_key",
    "redis_key_source",
    "ring_at",
    "snapshot_path",
    "thumbprint_kid",
    "utc_text",
]


def build_keyring(settings: Settings, client: RedisClient, *, remember: bool = True) -> KeyRing:
    """The KeyRing for ``settings``: secret, PEM file, key directory or Redis ring.

    The Redis ring goes through :class:`LastGoodRing`; with ``remember`` (a serving
    process) its snapshot lives in the instance folder, without (an admin command run
    from anywhere) it neither reads nor writes one.
    """
    source: KeySource | None = None
    redis_keys = redis_key_source(settings, client)
    if redis_keys is not None:
        path = snapshot_path(settings.instance_path) if remember else None
        source = LastGoodRing(redis_keys, path)
    return KeyRing(
        algorithm=settings.jwt_algorithm,
        keep_seconds=settings.key_retention_seconds,
        secret=settings.jwt_secret,
        key_dir=settings.jwt_key_dir,
        private_key_file=settings.jwt_private_key_file,
        source=source,
    )
