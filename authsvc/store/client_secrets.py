"""Redis state of confidential clients: secret hashes and revoked machine tokens.

No Flask here. The keys are named in :mod:`authsvc.store.layout`'s docstring: the secret
fields live in the client's own hash (``P:{clients}:c:<id>``: ``sec``, ``psec``,
``psecexp``, ``cep``), a revoked machine token is ``P:{clients}:deny:<id>:<jti>``, so
every script touches the one ``{clients}`` Cluster slot.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum
from typing import cast

from authsvc.store import RegisteredClient, Store, _script, _text, client_from_fields
from authsvc.store.base import Script

_CHECK_CLIENT_TOKEN_LUA = _script("check_client_token")
_SET_CLIENT_SECRET_LUA = _script("set_client_secret")
_SECRET_FIELDS = ("sec", "psec", "psecexp")


class MachineTokenStatus(Enum):
    """What :meth:`ClientSecretStore.check_token` found."""

    OK = "ok"
    DENIED = "denied"  # revoked by jti
    GONE = "gone"  # the client is deleted or no longer confidential
    REVOKED = "revoked"  # issued before the client became confidential again


@dataclass(frozen=True)
class SecretState:
    """The stored secret hashes of a client (empty strings: none)."""

    current: str = ""
    previous: str = ""
    previous_until_ms: int = 0
    # Random, new each time the client becomes confidential; its machine tokens' jti
    # starts with it, so tokens of an earlier confidential life are dead.
    epoch: str = ""

    @property
    def confidential(self) -> bool:
        """Whether the client has a secret (and may use client_credentials)."""
        return bool(self.current)


class ClientSecretStore:
    """Secret hashes and the machine-token denylist, over the app's :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._check = Script(store.redis, _CHECK_CLIENT_TOKEN_LUA)
        self._set = Script(store.redis, _SET_CLIENT_SECRET_LUA)

    def _client_key(self, client_id: str) -> str:
        return self.store.layout.client(client_id)

    def _denied_key(self, client_id: str, jti: str) -> str:
        return self.store.layout.client_denied(client_id, jti)

    def set_secret(self, client_id: str, secret_hash: str, *, overlap_ms: int) -> bool:
        """Store a new secret hash; the current one stays valid ``overlap_ms`` more.

        False (writing nothing) when the client does not exist.
        """
        return bool(
            self._set(
                keys=[self._client_key(client_id)],
                args=[
                    secret_hash,
                    max(overlap_ms, 0),
                    self.store.clock(),
                    secrets.token_urlsafe(8),
                ],
            )
        )

    def clear_secret(self, client_id: str) -> bool:
        """Drop both secrets (the client becomes public); True when it had one."""
        return bool(self.redis.hdel(self._client_key(client_id), *_SECRET_FIELDS))

    def client_and_secret(self, client_id: str) -> tuple[RegisteredClient | None, SecretState]:
        """The client and its secret hashes in one HGETALL (None: no such client)."""
        raw = cast("dict[str, str]", self.redis.hgetall(self._client_key(client_id)))
        if not raw:
            return None, SecretState()
        client = client_from_fields(client_id, raw)
        state = SecretState(
            current=raw.get("sec", ""),
            previous=raw.get("psec", ""),
            previous_until_ms=int(raw.get("psecexp") or 0),
            epoch=raw.get("cep", ""),
        )
        return client, state

    def check_token(self, client_id: str, jti: str) -> tuple[MachineTokenStatus, frozenset[str]]:
        """Is this machine token live? The status and the client's allowed scopes now.

        One round trip: the jti denylist, the client's existence, secret and epoch
        (``jti`` is ``<epoch>.<random>``).
        """
        result = self._check(
            keys=[self._denied_key(client_id, jti), self._client_key(client_id)],
            args=[jti.partition(".")[0]],
        )
        status = MachineTokenStatus(_text(result[0]))
        scopes = frozenset(_text(result[1]).split()) if len(result) > 1 else frozenset()
        return status, scopes

    def deny_token(self, client_id: str, jti: str, *, ttl_ms: int) -> None:
        """Revoke one machine token until it expires."""
        self.redis.set(self._denied_key(client_id, jti), "1", px=max(ttl_ms, 1))
