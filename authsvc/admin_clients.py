"""Registered clients over HTTP (``/api/v1/admin/clients``): the registry, audited.

The rules are :class:`~authsvc.clients.ClientRegistry`'s, shared with the ``authsvc
client`` command; this module turns its refusals into the envelope's slugs (an invalid
setting, a taken id or a change to the built-in client: ``validation_failed`` naming
the field; an unknown client: ``not_found``) and names the acting admin in an audit
line for every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from authsvc.client_credentials import ClientCredentials
from authsvc.clients import DEFAULT_CLIENT_ID, ClientRegistry, InvalidClient
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.service import Actor
from authsvc.store import RegisteredClient


def client_data(client: RegisteredClient) -> dict[str, Any]:
    """A client as the admin API shows it (:class:`~authsvc.schemas.ClientSchema`)."""
    return {
        "client_id": client.id,
        "name": client.name,
        "scopes": list(client.scopes),
        "transports": list(client.transports),
        "grants": list(client.grants),
        "access_ttl": client.access_ttl,
        "refresh_ttl": client.refresh_ttl,
        "dpop": client.dpop,
        "builtin": client.id == DEFAULT_CLIENT_ID,
    }


@contextmanager
def _registry_errors() -> Iterator[None]:
    try:
        yield
    except InvalidClient as error:
        raise AuthError("validation_failed", fields={error.field: [str(error)]}) from error
    except LookupError as error:
        raise AuthError("not_found") from error


class ClientAdminService:
    """What the admin API does with registered clients, over the app's registry."""

    def __init__(
        self, clients: ClientRegistry, credentials: ClientCredentials | None = None
    ) -> None:
        self.clients = clients
        self.credentials = credentials

    def list(self) -> dict[str, Any]:
        """Every client: the built-in ``default`` first, then the registered ones by id."""
        return {"clients": [client_data(client) for client in self.clients.list()]}

    def show(self, client_id: str) -> dict[str, Any]:
        """One client's settings (the built-in one included)."""
        return self._call(lambda: self.clients.get(client_id))

    def create(self, fields: dict[str, Any], actor: Actor) -> dict[str, Any]:
        """Register a client from the loaded :class:`~authsvc.schemas.NewClientSchema`."""
        client = self._call(lambda: self.clients.add(**fields))
        emit("client_created", client_id=client["client_id"], **actor.fields())
        return client

    def update(self, client_id: str, fields: dict[str, Any], actor: Actor) -> dict[str, Any]:
        """Change the settings sent (a null lifetime: back to the service's)."""
        # The registry leaves a None setting as it is and takes 0 for "the service's".
        changes: dict[str, Any] = {
            name: 0 if value is None and name.endswith("_ttl") else value
            for name, value in fields.items()
        }
        client = self._call(lambda: self.clients.update(client_id, **changes))
        emit(
            "client_updated",
            client_id=client_id,
            changed=",".join(sorted(fields)) or None,
            **actor.fields(),
        )
        return client

    def delete(self, client_id: str, actor: Actor) -> None:
        """Remove a registered client: it can no longer log in (live sessions run out)."""
        with _registry_errors():
            self.clients.delete(client_id)
        emit("client_deleted", client_id=client_id, **actor.fields())

    def issue_secret(self, client_id: str, overlap_seconds: int, actor: Actor) -> dict[str, Any]:
        """A new secret (shown once; the client becomes confidential), the old one overlapping."""
        assert self.credentials is not None  # noqa: S101 - always given by the factory
        credentials = self.credentials
        with _registry_errors():
            issued = credentials.issue_secret(client_id, overlap_seconds=overlap_seconds)
        emit(
            "client_secret_issued",
            client_id=client_id,
            previous_valid_until=issued.previous_valid_until,
            **actor.fields(),
        )
        return issued.as_dict()

    def remove_secret(self, client_id: str, actor: Actor) -> None:
        """Make a client public: its secrets go, its machine tokens stop working."""
        assert self.credentials is not None  # noqa: S101 - always given by the factory
        credentials = self.credentials
        with _registry_errors():
            credentials.remove_secret(client_id)
        emit("client_secret_removed", client_id=client_id, **actor.fields())

    @staticmethod
    def _call(action: Callable[[], RegisteredClient]) -> dict[str, Any]:
        with _registry_errors():
            return client_data(action())
