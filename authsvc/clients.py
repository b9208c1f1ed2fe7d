"""Registered clients and scopes: which application logs in, and what its tokens may do.

A *client* is an application that logs users in (the device firmware, the web
front-end, a mobile app): an id, a display name, the scopes it may ask for, the
transports it may use (``body``, ``cookie``) and optional token lifetimes of its own,
each at most the service's. Clients live in Redis (:mod:`authsvc.store`) and are
managed through :class:`ClientRegistry` (the CLI's ``authsvc client ...`` and the
admin API).

A token's ``scope`` is the requested scopes (all the client's when none are asked
for), which must all be allowed to the client (else ``invalid_scope``), intersected
with the scopes granted to the user: every user is granted :data:`DEFAULT_SCOPES`
(``profile``), and each scope named like one of the user's roles (role ``admin``
grants scope ``admin``). A scope the client may ask for but the user lacks is left
out, not refused (RFC 6749 section 3.3); the answer's ``scope`` says what was granted.

The built-in client :data:`DEFAULT_CLIENT` (id ``default``) is used when a login
names no client: it allows ``profile`` only, both transports and the service's
lifetimes. A token without ``azp`` (issued before clients existed) counts as the
default client's with its scope, so such tokens keep working until they expire.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.store import CurrentPair, RegisteredClient, Store

DEFAULT_CLIENT_ID = "default"
# Granted to every user, whatever the roles.
DEFAULT_SCOPES = ("profile",)
# The scope (with the role of the same name) the admin API requires (auth.authorize_admin).
ADMIN_SCOPE = "admin"
TRANSPORTS = ("body", "cookie")
# Grants a client may be allowed beyond the password login: the device flow (RFC 8628).
GRANTS = ("device_code",)
# "required": every login must carry a DPoP proof (a device-bound session); "optional":
# a login with a proof is bound, one without is a bearer session.
DPOP_MODES = ("optional", "required")
DEFAULT_CLIENT = RegisteredClient(
    id=DEFAULT_CLIENT_ID,
    name="Default (logins without client_id)",
    scopes=DEFAULT_SCOPES,
    transports=TRANSPORTS,
)
MAX_SCOPES = 32
MAX_NAME_LENGTH = 128
_CLIENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# RFC 6749 section 3.3 scope-token (%x21 / %x23-5B / %x5D-7E), at most 64 characters.
_SCOPE_TOKEN_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")


def parse_scope(text: str) -> frozenset[str]:
    """The scope tokens of an RFC 6749 ``scope`` parameter; ``invalid_scope`` if malformed.

    Tokens are separated by spaces; an empty list, a token outside the RFC's
    characters or more than :data:`MAX_SCOPES` tokens is refused.
    """
    scopes = frozenset(text.split(" ")) - {""}
    if not scopes or len(scopes) > MAX_SCOPES:
        raise AuthError("invalid_scope")
    if not all(_SCOPE_TOKEN_RE.match(scope) for scope in scopes):
        raise AuthError("invalid_scope")
    return scopes


def format_scope(scopes: Iterable[str]) -> str:
    """A scope set as the ``scope`` claim: sorted, space-separated (deterministic)."""
    return " ".join(sorted(set(scopes)))


def granted_scopes(roles: Iterable[str]) -> frozenset[str]:
    """The scopes a user with ``roles`` may hold: the defaults plus one per role."""
    return frozenset(DEFAULT_SCOPES).union(roles)


def token_scope(session_scope: str | None, roles: Iterable[str]) -> str:
    """The ``scope`` to mint: the session's, less any the user's current roles no longer grant.

    A session from before clients (``session_scope`` None) has the default client's.
    """
    scopes = DEFAULT_CLIENT.scopes if session_scope is None else session_scope.split()
    return format_scope(set(scopes) & granted_scopes(roles))


def grace_scope_fits(asked: str, pair: CurrentPair | None) -> bool:
    """Whether the pair already issued may answer a previous refresh token asking ``asked``.

    The previous token gets that pair again (the grace window, a lost reply), but at
    most what it asks for: ``asked`` must be within the session's scope (as for a
    rotation) and the pair's minted scope within ``asked``. A pair wider than the ask
    cannot be narrowed without rotating, so the caller answers ``invalid_scope`` and
    nothing changes; a retry of the narrowing refresh itself asks the same and fits.
    ``asked`` empty (no scope sent) keeps the session's: any pair fits.
    """
    if not asked or pair is None:
        return True
    wanted = set(asked.split())
    held = set(DEFAULT_CLIENT.scopes if pair.scope is None else pair.scope.split())
    return wanted <= held and set(token_scope(pair.scope, pair.roles).split()) <= wanted


def check_requested(requested: frozenset[str] | None, client: RegisteredClient) -> frozenset[str]:
    """The scopes a login asks for (the client's when none): ``invalid_scope`` unless allowed.

    Every one must be allowed to ``client``: asking for more is a client mistake.
    """
    wanted = frozenset(client.scopes) if requested is None else requested
    if not wanted <= frozenset(client.scopes):
        raise AuthError("invalid_scope")
    return wanted


class InvalidClient(ValueError):
    """A client setting that cannot be: ``field`` names it (for the admin API's answer)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ClientRegistry:
    """The registered clients: lookups for login, management for the CLI and admin API.

    Management methods raise :class:`InvalidClient` (a ``ValueError``) for invalid
    settings, a taken or reserved id or a change to the built-in client, and
    ``LookupError`` for an unknown client, as the user functions of
    :class:`~authsvc.service.AuthService` do.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def resolve(self, client_id: str | None) -> RegisteredClient:
        """The client a login names (the default one for None); ``unknown_client`` if none.

        One Redis read for a named client, none for the default.
        """
        if client_id is None or client_id == DEFAULT_CLIENT_ID:
            return DEFAULT_CLIENT
        client = self._stored(client_id)
        if client is None:
            raise AuthError("unknown_client")
        return client

    @staticmethod
    def is_valid_id(client_id: str) -> bool:
        """Whether ``client_id`` could be registered (else it is never looked up)."""
        return bool(_CLIENT_ID_RE.match(client_id))

    def _stored(self, client_id: str) -> RegisteredClient | None:
        # An id that could never be registered is not looked up.
        return self.store.get_client(client_id) if _CLIENT_ID_RE.match(client_id) else None

    def lifetimes(self, client: RegisteredClient) -> tuple[int, int]:
        """``(access_ttl, refresh_ttl)`` of ``client``'s logins, never above the service's.

        The service's may have been lowered since the client was registered.
        """
        access, refresh = self.settings.access_token_ttl, self.settings.refresh_token_ttl
        return min(client.access_ttl or access, access), min(client.refresh_ttl or refresh, refresh)

    # -- management (CLI, admin API) ------------------------------------------------
    def add(
        self,
        client_id: str,
        name: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        transports: Iterable[str] = TRANSPORTS,
        access_ttl: int | None = None,
        refresh_ttl: int | None = None,
        grants: Iterable[str] = (),
        dpop: str = "optional",
    ) -> RegisteredClient:
        """Register a client; ValueError when a setting is invalid or the id is taken.

        ``access_ttl`` / ``refresh_ttl`` (seconds) None means the service's lifetime;
        ``grants`` the extra grants it may use (:data:`GRANTS`).
        """
        client = self._valid(
            RegisteredClient(
                id=client_id,
                name=name,
                scopes=tuple(sorted(set(scopes))),
                transports=tuple(t for t in TRANSPORTS if t in set(transports)),
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                grants=tuple(sorted(set(grants))),
                dpop=dpop,
            ),
            unknown_transports=set(transports) - set(TRANSPORTS),
        )
        if not self.store.create_client(client):
            raise InvalidClient("client_id", f"client id {client_id!r} is taken")
        return client

    def get(self, client_id: str) -> RegisteredClient:
        """The client ``client_id`` (the built-in default included); LookupError if none."""
        if client_id == DEFAULT_CLIENT_ID:
            return DEFAULT_CLIENT
        client = self._stored(client_id)
        if client is None:
            raise LookupError(f"no client {client_id!r}")
        return client

    def list(self) -> list[RegisteredClient]:
        """Every client: the built-in default first, then the registered ones by id."""
        return [DEFAULT_CLIENT, *self.store.list_clients()]

    def update(
        self,
        client_id: str,
        *,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        transports: Iterable[str] | None = None,
        access_ttl: int | None = None,
        refresh_ttl: int | None = None,
        grants: Iterable[str] | None = None,
        dpop: str | None = None,
    ) -> RegisteredClient:
        """Change some settings of a registered client; None leaves one as it is.

        A lifetime of 0 goes back to the service's. The change applies to new logins:
        live sessions keep the scope and lifetimes they were opened with.
        ValueError for an invalid setting or the built-in client, LookupError if none.
        """
        self._refuse_builtin(client_id)
        current = self.get(client_id)
        wanted_transports = set(current.transports if transports is None else transports)
        client = self._valid(
            RegisteredClient(
                id=client_id,
                name=current.name if name is None else name,
                scopes=tuple(sorted(set(current.scopes if scopes is None else scopes))),
                transports=tuple(t for t in TRANSPORTS if t in wanted_transports),
                access_ttl=current.access_ttl if access_ttl is None else (access_ttl or None),
                refresh_ttl=current.refresh_ttl if refresh_ttl is None else (refresh_ttl or None),
                grants=tuple(sorted(set(current.grants if grants is None else grants))),
                dpop=current.dpop if dpop is None else dpop,
            ),
            unknown_transports=wanted_transports - set(TRANSPORTS),
        )
        if not self.store.update_client(client):
            raise LookupError(f"no client {client_id!r}")
        return client

    def delete(self, client_id: str) -> None:
        """Remove a registered client: its id can no longer log in.

        Live sessions stay until they end or expire. ValueError for the built-in client,
        LookupError if none.
        """
        self._refuse_builtin(client_id)
        if not _CLIENT_ID_RE.match(client_id) or not self.store.delete_client(client_id):
            raise LookupError(f"no client {client_id!r}")

    @staticmethod
    def _refuse_builtin(client_id: str) -> None:
        if client_id == DEFAULT_CLIENT_ID:
            raise InvalidClient(
                "client_id", f"{DEFAULT_CLIENT_ID!r} is the built-in client and cannot be changed"
            )

    def _valid(self, client: RegisteredClient, *, unknown_transports: set[str]) -> RegisteredClient:
        if client.id == DEFAULT_CLIENT_ID:
            raise InvalidClient(
                "client_id", f"client id {DEFAULT_CLIENT_ID!r} is reserved for the built-in client"
            )
        if not _CLIENT_ID_RE.match(client.id):
            raise InvalidClient(
                "client_id", "client id must be 1-64 characters of a-z 0-9 . _ - (lower case)"
            )
        if not client.name.strip() or len(client.name) > MAX_NAME_LENGTH:
            raise InvalidClient("name", f"name must be 1-{MAX_NAME_LENGTH} characters")
        if not client.name.isprintable():
            raise InvalidClient("name", "name must be printable text")
        if len(client.scopes) > MAX_SCOPES or not all(
            _SCOPE_TOKEN_RE.match(scope) for scope in client.scopes
        ):
            raise InvalidClient(
                "scopes",
                f"at most {MAX_SCOPES} scopes, each 1-64 printable ASCII characters "
                'without space, " or \\',
            )
        if client.dpop not in DPOP_MODES:
            raise InvalidClient("dpop", f"dpop must be one of {', '.join(DPOP_MODES)}")
        if unknown_transports or not client.transports:
            raise InvalidClient(
                "transports", f"transports must be one or more of {', '.join(TRANSPORTS)}"
            )
        if not set(client.grants) <= set(GRANTS):
            raise InvalidClient("grants", f"grants must be among: {', '.join(GRANTS)}")
        for label, ttl, maximum in (
            ("access", client.access_ttl, self.settings.access_token_ttl),
            ("refresh", client.refresh_ttl, self.settings.refresh_token_ttl),
        ):
            if ttl is not None and not 1 <= ttl <= maximum:
                raise InvalidClient(
                    f"{label}_ttl",
                    f"{label} token lifetime must be 1 to {maximum} s (the service's maximum)",
                )
        return client
