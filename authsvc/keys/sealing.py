"""Sealing for the key ring in Redis: each private key under AES-256-GCM, the ring under a MAC.

A record's kid and metadata are the associated data of its ciphertext; the manifest
lists every kid with its activation time and a generation that only grows, so the
ring is bound as a whole (no old record put back, no old ring restored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authsvc.keys.model import KeyRingError, SigningKey, key_from_pem


class KeyRecordError(KeyRingError):
    """A key record in Redis that fails authentication or cannot be parsed."""


class WrongKeyEncryptionKeyError(KeyRingError):
    """The key ring in Redis was encrypted under another key-encryption key."""


class KeyRingRollbackError(KeyRecordError):
    """The ring in Redis goes backwards: a record its manifest does not list, or an old manifest.

    Every record may be genuine (sealed under our KEK): it is refused because the ring
    as a whole is not the newest one this host knows of.
    """


@dataclass(frozen=True)
class Manifest:
    """The ring as a whole, sealed by whoever changed it last: every kid and when it signs.

    ``generation`` grows with every change (it is the ring's version after the change):
    a worker remembers the highest it has seen and refuses an older manifest.
    """

    generation: int
    keys: dict[str, int]  # kid -> activates_at


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
        # A key of its own for the manifest's MAC: never the AES key itself.
        self._manifest_key = hmac.new(raw, b"authsvc keyring manifest v1", hashlib.sha256).digest()

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
        key = key_from_pem(pem, algorithm, kid, f"key {kid}")
        return replace(key, activates_at=activates_at)

    def _manifest_tag(self, body: dict[str, Any]) -> str:
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return _b64(hmac.new(self._manifest_key, text, hashlib.sha256).digest())

    def seal_manifest(self, manifest: Manifest) -> str:
        """The manifest record stored beside the keys: JSON with an HMAC-SHA256 tag."""
        body = {"v": 1, "generation": manifest.generation, "keys": manifest.keys}
        body["kek"] = self.kek_id
        return json.dumps({**body, "tag": self._manifest_tag(body)}, sort_keys=True)

    def open_manifest(self, record: str) -> Manifest:
        """The manifest in ``record``; raises unless our KEK sealed exactly this text."""
        try:
            data = json.loads(record)
            body = {name: data[name] for name in ("v", "generation", "keys", "kek")}
            tag = str(data["tag"])
            keys = {str(kid): int(at) for kid, at in body["keys"].items()}
            generation = int(body["generation"])
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise KeyRecordError("the key ring's manifest is malformed") from error
        if body["kek"] != self.kek_id:
            raise WrongKeyEncryptionKeyError(
                f"the key ring's manifest is sealed under another key-encryption key "
                f"(id {body['kek']}); AUTHSVC_KEY_ENCRYPTION_KEY has id {self.kek_id}"
            )
        if not hmac.compare_digest(tag, self._manifest_tag(body)):
            raise KeyRecordError("the key ring's manifest failed authentication: it was altered")
        return Manifest(generation, keys)
