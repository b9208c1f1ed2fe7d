"""Registered clients: the applications that log users in, and what they may ask for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from authsvc.store.base import RedisClient, Script, now_ms
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import _CREATE_CLIENT_LUA, _DELETE_CLIENT_LUA, _UPDATE_CLIENT_LUA


@dataclass(frozen=True)
class RegisteredClient:
    """A stored client (an application that logs users in): what it may ask for.

    ``access_ttl`` / ``refresh_ttl`` None: the service's configured lifetimes.
    """

    id: str
    name: str
    scopes: tuple[str, ...]
    transports: tuple[str, ...]
    access_ttl: int | None = None
    refresh_ttl: int | None = None
    dpop: str = "optional"  # "required": a login must bind the session to a key
    # Grants beyond the password login, e.g. "device_code" (RFC 8628); none by default.
    grants: tuple[str, ...] = ()


def client_from_fields(client_id: str, raw: dict[str, str]) -> RegisteredClient:
    """A client from its stored hash fields (``_client_fields``'s inverse)."""
    return RegisteredClient(
        id=client_id,
        name=raw.get("name", ""),
        scopes=tuple(raw.get("scopes", "").split()),
        transports=tuple(raw.get("transports", "").split()),
        access_ttl=int(raw["attl"]) if raw.get("attl") else None,
        refresh_ttl=int(raw["rttl"]) if raw.get("rttl") else None,
        dpop=raw.get("dpop") or "optional",  # clients from before DPoP: optional
        grants=tuple(raw.get("grants", "").split()),
    )


def _client_fields(client: RegisteredClient) -> list[str]:
    """The hash fields of ``client`` as HSET arguments (an empty lifetime: the service's)."""
    return [
        *("name", client.name),
        *("scopes", " ".join(client.scopes)),
        *("transports", " ".join(client.transports)),
        *("attl", str(client.access_ttl or "")),
        *("rttl", str(client.refresh_ttl or "")),
        *("dpop", client.dpop),
        *("grants", " ".join(client.grants)),
    ]


class Clients:
    """Registered clients by id, with the id set that lists them (never a keyspace scan)."""

    def __init__(
        self, client: RedisClient, keys: KeyLayout, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock
        self._create_client = Script(client, _CREATE_CLIENT_LUA)
        self._update_client = Script(client, _UPDATE_CLIENT_LUA)
        self._delete_client = Script(client, _DELETE_CLIENT_LUA)

    def create_client(self, client: RegisteredClient) -> bool:
        """Store a new client; False (writing nothing) when the id is taken."""
        return bool(
            self._create_client(
                keys=[self.keys.client(client.id), self.keys.client_ids()],
                args=[client.id, *_client_fields(client), "created", self.clock()],
            )
        )

    def update_client(self, client: RegisteredClient) -> bool:
        """Replace a client's settings; False (writing nothing) when it does not exist."""
        return bool(
            self._update_client(keys=[self.keys.client(client.id)], args=_client_fields(client))
        )

    def get_client(self, client_id: str) -> RegisteredClient | None:
        """The client ``client_id``, or None: one HGETALL."""
        raw = cast("dict[str, str]", self.redis.hgetall(self.keys.client(client_id)))
        return client_from_fields(client_id, raw) if raw else None

    def list_clients(self) -> list[RegisteredClient]:
        """Every registered client by id, from the id set (never a keyspace scan)."""
        ids = cast("set[str]", self.redis.smembers(self.keys.client_ids()))
        clients = [client for cid in ids if (client := self.get_client(cid)) is not None]
        return sorted(clients, key=lambda c: c.id)

    def delete_client(self, client_id: str) -> bool:
        """Remove a client; True when it existed."""
        return bool(
            self._delete_client(
                keys=[self.keys.client(client_id), self.keys.client_ids()], args=[client_id]
            )
        )
