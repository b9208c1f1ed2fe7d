"""Everything Redis: key names, TTLs and the Lua scripts that make each step atomic.

The store is split by concern, each a small class over the Redis client and the key
layout (:mod:`authsvc.store.layout`, whose docstring names every key):

- :class:`Sessions` (``sessions.py``): creation, rotation, the access check, the
  denylist, ending one or all sessions, listing;
- :class:`Users` (``users.py``): accounts, usernames and the admin listing's index;
- :class:`Clients` (``clients.py``): registered clients;
- ``login.py`` (``LoginStore``): a login's throttle and look-up, then its settling;
- ``client_secrets.py`` (``ClientSecretStore``): confidential clients' secrets and
  machine tokens; ``keyring.py`` (``KeyRecords``): the key ring's records;
  ``devices.py`` (``DeviceCodes``): the device authorization grant's codes;
- ``scripts.py``: the Lua sources (one file each in ``authsvc/lua/``);
- ``base.py``: the Redis client type, the clock, reply decoding.

:class:`Store` is the facade the service layer holds: one of each, and the methods it
calls. No Flask here. Callers pass plain values and get plain values back.
"""

from __future__ import annotations

from collections.abc import Callable

from authsvc.store.base import RedisClient, Script, _roles, _text, now_ms
from authsvc.store.clients import Clients, RegisteredClient, _client_fields, client_from_fields
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import _HEADER, _LUA, _script
from authsvc.store.sessions import (
    AccessStatus,
    CurrentPair,
    ProofUse,
    RevocationStatus,
    Rotation,
    RotationStatus,
    SessionInfo,
    Sessions,
)
from authsvc.store.users import (
    _PENDING,
    NAME_RESERVATION_MS,
    User,
    UserPage,
    Users,
    UserSummary,
)

__all__ = [
    "NAME_RESERVATION_MS",
    "_HEADER",
    "_LUA",
    "_PENDING",
    "AccessStatus",
    "Clients",
    "CurrentPair",
    "KeyLayout",
    "ProofUse",
    "RedisClient",
    "RegisteredClient",
    "RevocationStatus",
    "Rotation",
    "RotationStatus",
    "SessionInfo",
    "Sessions",
    "Store",
    "User",
    "UserPage",
    "UserSummary",
    "Users",
    "_client_fields",
    "_roles",
    "_script",
    "_text",
    "client_from_fields",
    "now_ms",
]


class Store:
    """The revocation store: users, sessions, denylist and clients in Redis.

    A facade: ``sessions``, ``users`` and ``clients`` do the work; the methods the
    service layer calls are theirs, bound here under their old names.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "authsvc",
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.layout = KeyLayout(prefix)
        self.sessions = Sessions(client, self.layout, clock=clock)
        self.users = Users(client, self.layout, clock=clock)
        self.clients = Clients(client, self.layout, clock=clock)
        self.clock = clock  # the property below: one clock for every part
        # Bound methods, so the callers' arguments stay type-checked against the parts.
        self.session_keys = self.layout.session_keys
        self.create_session = self.sessions.create_session
        self.session_script_args = self.sessions.session_script_args
        self.rotate = self.sessions.rotate
        self.check_access = self.sessions.check_access
        self.current_refresh_owner = self.sessions.current_refresh_owner
        self.deny_access_token = self.sessions.deny_access_token
        self.end_session = self.sessions.end_session
        self.end_all_sessions = self.sessions.end_all_sessions
        self.list_sessions = self.sessions.list_sessions
        self.create_user = self.users.create_user
        self.reserve_username = self.users.reserve_username
        self.find_user_id = self.users.find_user_id
        self.get_user = self.users.get_user
        self.list_users = self.users.list_users
        self.rehash_password = self.users.rehash_password
        self.set_password_hash = self.users.set_password_hash
        self.delete_user = self.users.delete_user
        self.unindex_username = self.users.unindex_username
        self.rebuild_username_index = self.users.rebuild_username_index
        self.user_page = self.users.user_page
        self.create_client = self.clients.create_client
        self.update_client = self.clients.update_client
        self.get_client = self.clients.get_client
        self.list_clients = self.clients.list_clients
        self.delete_client = self.clients.delete_client

    @property
    def clock(self) -> Callable[[], int]:
        """Milliseconds now; setting it (tests move time) sets every part's."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        for part in (self.sessions, self.users, self.clients):
            part.clock = clock

    # Tests reach these two steps of user creation (a crash between them, a lost reply).
    @property
    def _write_new_user(self) -> Callable[[str, str, str, tuple[str, ...]], None]:
        return self.users._write_new_user

    @_write_new_user.setter
    def _write_new_user(self, write: Callable[[str, str, str, tuple[str, ...]], None]) -> None:
        self.users._write_new_user = write  # type: ignore[method-assign,assignment]

    @property
    def _confirm_name(self) -> Script:
        return self.users._confirm_name

    def _client_key(self, client_id: str) -> str:
        return self.layout.client(client_id)

    def set_disabled(self, uid: str, disabled: bool) -> bool:
        """Disable (ending every session at once) or re-enable an account.

        False, writing nothing, when the user does not exist (it was deleted).
        """
        if disabled:
            return self.end_all_sessions(uid, disable=True) is RevocationStatus.DONE
        return self.users.enable(uid)

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())
