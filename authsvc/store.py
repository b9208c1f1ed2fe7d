"""Everything Redis: key names, TTLs and the Lua scripts that make each step atomic.

The scripts live one per file in ``authsvc/lua/``; this docstring is where keys are named.

No Flask here. Callers pass plain values and get plain values back.

Key layout (``P`` is the configured prefix, ``U`` a user id). Every key of one user
shares the hash tag ``{u:U}``, so the multi-key scripts run unchanged on Redis Cluster:

``P:{u:U}:user``          hash  username, pw (argon2 hash), roles, disabled, nbf (ms), created
``P:{u:U}:sessions``      zset  sid -> absolute expiry (ms); the per-user session index
``P:{u:U}:s:<sid>``       hash  created, auth (ms, the session's not-before), last (ms),
                                exp (ms), jti/ajti/iat (current pair), pjti/rot (previous
                                refresh jti and when it was first rotated), cid
                                (client id), scope (space-separated), attl (access-token
                                lifetime, s), tr (the client's transports at login,
                                space-separated; absent: any), jkt (DPoP: the thumbprint
                                of the key the session is bound to; absent: bearer);
                                cid/scope/attl absent: a session opened before clients
                                existed; TTL = exp
``P:{u:U}:s:<sid>:meta``  string JSON {device_id, user_agent, ip}; kept apart so the hash
                                stays in Redis's compact listpack encoding; TTL = exp
``P:{u:U}:deny:<jti>``    string an access token revoked by logout; TTL = exp - now + leeway
``P:{u:U}:dpop:<hash>``   string a DPoP proof already presented (hash of jkt and jti) -> the
                                attempt id; TTL = until the proof's iat window closes
``P:uname:<username>``    string username -> user id ("pending:<uid>:<deadline ms>", with a
                                TTL, while the user is being created)
``P:users``               set   every user id (admin listing, never a keyspace scan)
``P:throttle:{a:<name>}:known`` zset  network -> ms until which the account is known there
                                (a login succeeded from it); at most 20; TTL = the latest
``P:throttle:{a:<name>}:any``  zset  attempt ids from networks the account is not known on
``P:throttle:{a:<name>}:net:<net>``  zset  attempt ids from one known network
``P:throttle:net:<net>``       zset  attempt ids from one client network, any account;
                                every attempt bucket: TTL = window, at most limit members
``P:{clients}:c:<id>``     hash  a registered client: name, scopes, transports (space-separated),
                                attl, rttl (s; empty: the service's), created (ms); a
                                confidential client also: sec (its secret's hash), psec and
                                psecexp (the previous secret's hash and until when, ms, it
                                is still accepted), cep (random epoch, new each time the
                                client becomes confidential; its machine tokens' jti starts
                                with it); no TTL (authsvc/client_store.py)
``P:{clients}:deny:<id>:<jti>`` string a revoked machine (client-credentials) token;
                                TTL = exp - now + leeway
``P:{clients}:ids``        set   every registered client id (listing, never a keyspace scan)
``P:{keyring}:keys``           hash  kid -> signing-key record (private key encrypted), #manifest
``P:{keyring}:version``        string the key ring's change counter (keyring_store.py)

A session is alive while its hash exists, its user exists and is enabled, and its
``auth`` is not older than the user's ``nbf``. Logout-all and password changes move
``nbf`` strictly forward: one write, whatever the number of sessions or tokens. No
script writes a user hash that does not exist (a delete is final).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

# What the store runs on: one server (or a Sentinel-managed master) or a Redis Cluster.
RedisClient = redis.Redis | RedisCluster

# The Lua scripts, one file each in authsvc/lua/ (KEYS, ARGV and the answer at the top
# of each); lib/ holds the functions several scripts share, prepended by _script.
_LUA = resources.files("authsvc") / "lua"
_HEADER = re.compile(r"\A(?:--[^\n]*\n)+")


def _script(name: str, *, needs: tuple[str, ...] = ()) -> str:
    """The source of ``lua/<name>.lua``, after the ``lua/lib/<need>.lua`` it calls.

    Read once, at import. Each file's header comment is for its readers and is left
    out: a Cluster's login pipelines send the throttle scripts' whole text (EVAL).
    """
    parts = [_LUA / "lib" / f"{lib}.lua" for lib in needs] + [_LUA / f"{name}.lua"]
    return "".join(_HEADER.sub("", part.read_text(encoding="utf-8")) for part in parts)


_CHECK_ACCESS_LUA = _script("check_access", needs=("liveness", "proof"))
_ROTATE_LUA = _script("rotate", needs=("liveness", "proof"))
_PEEK_REFRESH_LUA = _script("peek_refresh", needs=("liveness",))
_END_ALL_LUA = _script("end_all", needs=("liveness",))
_UPDATE_USER_LUA = _script("update_user")
_REHASH_LUA = _script("rehash")
_CREATE_SESSION_LUA = _script("create_session", needs=("proof",))
_CREATE_CLIENT_LUA = _script("create_client")
_UPDATE_CLIENT_LUA = _script("update_client")
_DELETE_CLIENT_LUA = _script("delete_client")
_RESERVE_NAME_LUA = _script("reserve_name")
_CONFIRM_NAME_LUA = _script("confirm_name")
_RELEASE_NAME_LUA = _script("release_name")

# How long a half-made user holds its name: far above the one round trip between.
NAME_RESERVATION_MS = 30_000
_PENDING = "pending:"


class RotationStatus(Enum):
    """What the rotate script decided about a presented refresh token."""

    ROTATED = "rotated"
    GRACE = "grace"
    REUSED = "reused"
    GONE = "gone"
    REVOKED = "revoked"
    IDLE = "idle"
    INVALID_SCOPE = "invalid_scope"  # a wider scope was asked for; nothing changed
    # DPoP: no proof by the session's key, or a proof already seen; nothing changed.
    KEY_MISMATCH = "key_mismatch"
    REPLAY = "replay"
    TRANSPORT_NOT_ALLOWED = "transport_not_allowed"  # the client's transports; nothing changed


class RevocationStatus(Enum):
    """What :meth:`Store.end_all_sessions` did."""

    DONE = "ok"
    GONE = "gone"  # no such user (deleted meanwhile): nothing was written
    # Compare-and-set refused (the stored hash is not the verified one); nothing written.
    REVOKED = "revoked"  # ... and the kept session is dead: an admin reset ended it
    CHANGED = "changed"  # ... and the kept session is alive: a rehash on a parallel login


class AccessStatus(Enum):
    """What the access check decided about an access token."""

    OK = "ok"
    DENIED = "denied"
    GONE = "gone"
    REVOKED = "revoked"
    KEY_MISMATCH = "key_mismatch"  # DPoP: the session is bound to another key (or none)
    REPLAY = "replay"  # DPoP: this proof was already presented


@dataclass(frozen=True)
class User:
    """A stored account."""

    id: str
    username: str
    password_hash: str = field(repr=False)  # never in a printed record or log line
    roles: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class CurrentPair:
    """The identifiers of a session's current token pair; enough to mint it (again)."""

    refresh_jti: str
    access_jti: str
    issued_at: int  # seconds
    session_expires_ms: int
    roles: tuple[str, ...]
    username: str
    # None for a session opened before clients existed (the default client's).
    client_id: str | None = None
    scope: str | None = None
    access_ttl: int | None = None
    jkt: str | None = None  # the key the session is bound to (DPoP); None: bearer


@dataclass(frozen=True)
class ProofUse:
    """A verified DPoP proof as the store needs it: the key and the replay memory."""

    jkt: str  # RFC 7638 thumbprint of the proof's key
    replay_id: str  # hashed jti (authsvc.dpop.Proof.replay_id)
    ttl_ms: int  # how long the proof could still be accepted
    # Unique per call: a command redis-py resends is recognised, not taken for a replay.
    attempt: str = ""


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token; ``pair`` is set for ROTATED and GRACE."""

    status: RotationStatus
    pair: CurrentPair | None = None


@dataclass(frozen=True)
class SessionInfo:
    """One live session, as listed to its owner."""

    session_id: str
    device_id: str | None
    user_agent: str | None
    ip: str | None
    created_ms: int
    last_refresh_ms: int
    expires_ms: int
    client_id: str | None = None  # None: opened before clients existed
    bound: bool = False  # bound to a device key (DPoP)


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


def now_ms() -> int:
    """Wall-clock milliseconds; every host must run NTP since not-before compares them."""
    return time.time_ns() // 1_000_000


def _roles(raw: str | None) -> tuple[str, ...]:
    return tuple(r for r in (raw or "").split(",") if r)


class Store:
    """The revocation store: users, sessions, denylist and login throttles in Redis."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "authsvc",
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.clock = clock
        self._check_access = client.register_script(_CHECK_ACCESS_LUA)
        self._rotate = client.register_script(_ROTATE_LUA)
        self._end_all = client.register_script(_END_ALL_LUA)
        self._peek_refresh = client.register_script(_PEEK_REFRESH_LUA)
        self._create_session = client.register_script(_CREATE_SESSION_LUA)
        self._rehash = client.register_script(_REHASH_LUA)
        self._update_user = client.register_script(_UPDATE_USER_LUA)
        self._create_client = client.register_script(_CREATE_CLIENT_LUA)
        self._update_client = client.register_script(_UPDATE_CLIENT_LUA)
        self._delete_client = client.register_script(_DELETE_CLIENT_LUA)
        self._reserve_name = client.register_script(_RESERVE_NAME_LUA)
        self._confirm_name = client.register_script(_CONFIRM_NAME_LUA)
        self._release_name = client.register_script(_RELEASE_NAME_LUA)

    # -- key names --------------------------------------------------------------
    def _user_key(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:user"

    def _sessions_key(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:sessions"

    def _session_key(self, uid: str, sid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:s:{sid}"

    def _meta_key(self, uid: str, sid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:s:{sid}:meta"

    def _denied_key(self, uid: str, jti: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}:deny:{jti}"

    def _proof_key(self, uid: str, proof: ProofUse) -> str:
        # In the user's slot, so the session scripts can remember it (Cluster).
        return f"{self.prefix}:{{u:{uid}}}:dpop:{proof.replay_id}"

    def _users_key(self) -> str:
        return f"{self.prefix}:users"

    def _username_key(self, username: str) -> str:
        return f"{self.prefix}:uname:{username}"

    def _client_key(self, client_id: str) -> str:
        return f"{self.prefix}:{{clients}}:c:{client_id}"

    def _client_ids_key(self) -> str:
        return f"{self.prefix}:{{clients}}:ids"

    def _network_bucket_key(self, network: str) -> str:
        return f"{self.prefix}:throttle:net:{network}"

    def _account_throttle_keys(self, username: str, network: str) -> list[str]:
        # One hash tag per account: its three keys share a cluster slot. (A "}" in a
        # login's username cuts the tag at the same place in all three.)
        account = f"{self.prefix}:throttle:{{a:{username}}}"
        return [f"{account}:known", f"{account}:any", f"{account}:net:{network}"]

    def session_keys(self, uid: str, sid: str) -> list[str]:
        """The keys one session occupies (for memory accounting and tests)."""
        return [self._session_key(uid, sid), self._meta_key(uid, sid)]

    # -- users --------------------------------------------------------------------
    def create_user(
        self, uid: str, username: str, password_hash: str, roles: tuple[str, ...]
    ) -> bool:
        """Store a new user; False when the username is taken.

        The name and the user live in different Cluster slots, so this is three steps:
        reserve the name as pending (with a deadline and a TTL), write the user with its
        entries in the user set and the username index, make the reservation permanent.
        A crash in between leaves no name reserved for ever: a pending name past its
        deadline is free, and a user whose name never became permanent is not listed
        (:meth:`list_users`, :meth:`user_page`). Since the index entry is written before
        the name is confirmed, no confirmed user is ever missing from the listing, even
        when Redis fails right after confirming.
        """
        pending = self.reserve_username(username, uid)
        if pending is None:
            return False
        try:
            self._write_new_user(uid, username, password_hash, roles)
            confirmed = self._confirm_name(keys=[self._username_key(username)], args=[pending, uid])
        except redis.RedisError:
            # Do not leave the name reserved by a user that was never written.
            self._release_name(keys=[self._username_key(username)], args=[pending])
            raise
        if not confirmed:  # the reservation outlived its deadline and was taken
            self._delete_user_record(uid, username)
            return False
        return True

    def reserve_username(self, username: str, uid: str) -> str | None:
        """Step one of :meth:`create_user`: the pending reservation's value, None if taken."""
        pending = f"{_PENDING}{uid}:{self.clock() + NAME_RESERVATION_MS}"
        reserved = self._reserve_name(
            keys=[self._username_key(username)],
            args=[pending, self.clock(), NAME_RESERVATION_MS],
        )
        return pending if reserved else None

    def _delete_user_record(self, uid: str, username: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(self._users_key(), uid)
        pipe.zrem(self._username_index_key(), _index_member(username, uid))
        pipe.delete(self._user_key(uid))
        pipe.execute()

    def _write_new_user(
        self, uid: str, username: str, password_hash: str, roles: tuple[str, ...]
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(self._users_key(), uid)
        # Listed only once the name is confirmed (user_page checks the name's owner).
        pipe.zadd(self._username_index_key(), {_index_member(username, uid): 0})
        pipe.hset(
            self._user_key(uid),
            mapping={
                "username": username,
                "pw": password_hash,
                "roles": ",".join(roles),
                "disabled": "0",
                "nbf": "0",
                "created": str(self.clock()),
            },
        )
        pipe.execute()

    def find_user_id(self, username: str) -> str | None:
        """The id of ``username`` (already normalised), or None (also while being created)."""
        uid = cast("str | None", self.redis.get(self._username_key(username)))
        return None if uid is None or uid.startswith(_PENDING) else uid

    def get_user(self, uid: str) -> User | None:
        """The user with id ``uid``, or None."""
        raw = cast("dict[str, str]", self.redis.hgetall(self._user_key(uid)))
        if not raw.get("username"):
            return None
        return User(
            id=uid,
            username=raw["username"],
            password_hash=raw.get("pw", ""),
            roles=_roles(raw.get("roles")),
            disabled=raw.get("disabled") == "1",
        )

    def list_users(self) -> list[User]:
        """Every user, from the user index (an admin path; nothing scans the keyspace)."""
        uids = cast("set[str]", self.redis.smembers(self._users_key()))
        users = [user for uid in uids if (user := self.get_user(uid)) is not None]
        # Only users their name points at: not one whose creation crashed half-way.
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.get(self._username_key(user.username))
        owners = pipe.execute() if users else []
        named = [user for user, owner in zip(users, owners, strict=True) if owner == user.id]
        return sorted(named, key=lambda u: u.username)

    def rehash_password(self, uid: str, verified_hash: str, new_hash: str) -> bool:
        """Upgrade the stored hash, unless the password changed since it was verified."""
        return bool(self._rehash(keys=[self._user_key(uid)], args=[verified_hash, new_hash]))

    def set_password_hash(self, uid: str, password_hash: str) -> bool:
        """Replace the stored hash (tests, migrations) without ending sessions.

        False, writing nothing, when the user does not exist (it was deleted).
        """
        return bool(self._update_user(keys=[self._user_key(uid)], args=["pw", password_hash]))

    def set_disabled(self, uid: str, disabled: bool) -> bool:
        """Disable (ending every session at once) or re-enable an account.

        False, writing nothing, when the user does not exist (it was deleted).
        """
        if disabled:
            return self.end_all_sessions(uid, disable=True) is RevocationStatus.DONE
        return bool(self._update_user(keys=[self._user_key(uid)], args=["disabled", "0"]))

    def delete_user(self, uid: str, username: str) -> None:
        """Remove the account, its sessions and the networks it was known on.

        The sessions die with the user either way; deleting them frees memory at once.
        """
        sids = cast("list[str]", self.redis.zrange(self._sessions_key(uid), 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self._username_key(username))
        # The networks it was known on must not carry over to a new owner of the name.
        pipe.delete(self._account_throttle_keys(username, "")[0])
        pipe.srem(self._users_key(), uid)
        pipe.zrem(self._username_index_key(), _index_member(username, uid))
        # A raw UNLINK: redis-py's cluster pipeline refuses unlink() of several keys,
        # though these share the user's slot.
        pipe.execute_command(
            "UNLINK",
            self._user_key(uid),
            self._sessions_key(uid),
            *(key for sid in sids for key in self.session_keys(uid, sid)),
        )
        pipe.execute()

    # -- sessions -----------------------------------------------------------------
    def create_session(self, uid: str, sid: str, **fields: Any) -> bool:
        """Record a new session (refresh-token family) with its first token pair.

        ``fields`` are :meth:`session_script_args`'s. False (nothing written) when the
        DPoP ``proof`` among them was already seen.
        """
        keys, args = self.session_script_args(uid, sid, **fields)
        return bool(int(self._create_session(keys=keys, args=args)))

    def session_script_args(
        self,
        uid: str,
        sid: str,
        *,
        refresh_jti: str,
        access_jti: str,
        issued_at: int,
        expires_ms: int,
        device_id: str | None,
        user_agent: str | None,
        ip: str | None,
        auth_ms: int | None = None,
        client_id: str | None = None,
        scope: str = "",
        access_ttl: int = 0,
        transports: tuple[str, ...] = ("body", "cookie"),
        proof: ProofUse | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV of ``create_session.lua`` for a new session.

        ``auth_ms``, the session's not-before, is when the credentials were checked
        (default now): a logout-all or password reset that lands while a login is being
        verified must still cut that login off. ``client_id``, ``scope`` and
        ``access_ttl`` are what every refresh of the session mints with, ``transports``
        the ways its refresh token may come (without a ``client_id`` none of them is
        recorded, as for a session from before clients). With a DPoP ``proof`` the
        session is bound to its key, and the proof is remembered against replay.
        """
        now = self.clock()
        meta = json.dumps(
            {"device_id": device_id, "user_agent": user_agent, "ip": ip}, separators=(",", ":")
        )
        keys = [self._session_key(uid, sid), self._meta_key(uid, sid), self._sessions_key(uid)]
        if proof is not None:
            keys.append(self._proof_key(uid, proof))
        args = [
            *(sid, now, expires_ms, refresh_jti, access_jti, issued_at, meta, auth_ms or now),
            *(client_id or "", scope, access_ttl, " ".join(transports)),
            *((proof.jkt, proof.ttl_ms, proof.attempt) if proof else ("", 0, "")),
        ]
        return keys, args

    def rotate(
        self,
        uid: str,
        sid: str,
        presented_jti: str,
        *,
        new_refresh_jti: str,
        new_access_jti: str,
        issued_at: int,
        grace_ms: int,
        idle_ms: int,
        unused_ms: int = 0,
        scope: str = "",
        transport: str = "body",
        proof: ProofUse | None = None,
    ) -> Rotation:
        """Present a refresh token's jti: rotate, hand back the issued pair, or end the family.

        The previous jti gets the pair already issued (GRACE): in a session bound to a
        key (DPoP) at any time, with a ``proof`` by that key; in a bearer session within
        ``grace_ms`` of its rotation. A lost reply converges instead of being judged
        reuse. In a bound session, a presentation without a proof by its key changes
        nothing (KEY_MISMATCH), nor does a replayed proof (REPLAY). One atomic script,
        one round trip; ``unused_ms`` is ignored (kept for callers).
        A non-empty ``scope`` narrows the session's on rotation; one that is not a subset
        of it is INVALID_SCOPE, and nothing changes; so is a ``transport`` (``body`` or
        ``cookie``) the session's client does not allow (TRANSPORT_NOT_ALLOWED), before
        any other judgement: a token sent the wrong way is never counted as reuse.
        """
        keys = [
            self._session_key(uid, sid),
            self._meta_key(uid, sid),
            self._sessions_key(uid),
            self._user_key(uid),
        ]
        if proof is not None:
            keys.append(self._proof_key(uid, proof))
        result = self._rotate(
            keys=keys,
            args=[
                sid,
                presented_jti,
                self.clock(),
                grace_ms,
                idle_ms,
                new_refresh_jti,
                new_access_jti,
                issued_at,
                unused_ms,
                scope,
                transport,
                *((proof.jkt, proof.ttl_ms, proof.attempt) if proof else ("", 0, "")),
            ],
        )
        status = RotationStatus(_text(result[0]))
        if status not in (RotationStatus.ROTATED, RotationStatus.GRACE):
            return Rotation(status)
        jti, ajti, iat, exp_ms, roles, username = (_text(v) for v in result[1:7])
        # None for a session opened before clients existed.
        cid, session_scope, attl, jkt = (None if v is None else _text(v) for v in result[7:11])
        return Rotation(
            status,
            CurrentPair(
                refresh_jti=jti,
                access_jti=ajti,
                issued_at=int(iat),
                session_expires_ms=int(exp_ms),
                roles=_roles(roles),
                username=username,
                client_id=cid or None,
                scope=session_scope,
                access_ttl=int(attl) if attl else None,
                jkt=jkt or None,
            ),
        )

    def check_access(
        self,
        uid: str,
        sid: str,
        jti: str,
        *,
        proof: ProofUse | None = None,
        jkt: str | None = None,
    ) -> tuple[AccessStatus, str | None]:
        """Denylist, session alive, user and session not-before: one round trip.

        Returns the status and, when OK, the current username. With a DPoP ``proof`` the
        session must be bound to its key and the proof must be new (remembered here);
        ``jkt`` alone (introspection, no proof) checks the binding and remembers nothing.
        """
        keys = [self._denied_key(uid, jti), self._session_key(uid, sid), self._user_key(uid)]
        if proof is not None:
            keys.append(self._proof_key(uid, proof))
            jkt = proof.jkt
        result = self._check_access(
            keys=keys,
            args=[jti, jkt or "", *((proof.ttl_ms, proof.attempt) if proof else (0, ""))],
        )
        status = AccessStatus(_text(result[0]))
        return status, (_text(result[1]) if len(result) > 1 else None)

    def current_refresh_owner(
        self, uid: str, sid: str, jti: str, *, idle_ms: int, grace_ms: int = 0
    ) -> tuple[str, str | None] | None:
        """(username, jkt) when /refresh would hand ``jti`` a pair, else None.

        That is the live session's current refresh token, or its parent where
        :meth:`rotate` gives the parent the issued pair (bound: always; bearer: within
        ``grace_ms``). Read-only (introspection): nothing rotates.
        """
        owner = self._peek_refresh(
            keys=[self._session_key(uid, sid), self._user_key(uid)],
            args=[jti, self.clock(), idle_ms, grace_ms],
        )
        if not owner:
            return None
        return _text(owner[0]), (_text(owner[1]) or None)

    def deny_access_token(self, uid: str, jti: str, *, ttl_ms: int) -> None:
        """Denylist one access token until it expires (token revocation)."""
        self.redis.set(self._denied_key(uid, jti), "1", px=max(ttl_ms, 1))

    def end_session(
        self, uid: str, sid: str, *, deny_jti: str | None = None, deny_ttl_ms: int = 0
    ) -> bool:
        """Delete one session (and optionally denylist an access token); True if it existed."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._session_key(uid, sid), self._meta_key(uid, sid))
        pipe.zrem(self._sessions_key(uid), sid)
        if deny_jti and deny_ttl_ms > 0:
            pipe.set(self._denied_key(uid, deny_jti), "1", px=deny_ttl_ms)
        deleted = pipe.execute()[0]
        return bool(deleted)

    def end_all_sessions(
        self,
        uid: str,
        *,
        keep_sid: str | None = None,
        new_password_hash: str | None = None,
        disable: bool = False,
        verified_hash: str | None = None,
    ) -> RevocationStatus:
        """Move the user's not-before past now: every session (but ``keep_sid``) dies. O(1).

        With ``new_password_hash`` the password changes, with ``disable`` the account is
        disabled, in the same atomic step. With ``verified_hash`` the whole step is a
        compare-and-set: it happens only while the stored hash is still that one. The
        not-before only moves forward, strictly past its old value, so every session
        that existed before this call dies even within one millisecond or from a host
        whose clock lags. A user that does not exist is not written (GONE). The dead
        sessions' keys are left to their TTL and to pruning in :meth:`list_sessions`;
        what revokes them is the single ``nbf`` write.
        """
        keys = [self._user_key(uid)]
        if keep_sid is not None:
            keys.append(self._session_key(uid, keep_sid))
        result = self._end_all(
            keys=keys,
            args=[
                self.clock(),
                new_password_hash or "",
                "1" if disable else "0",
                verified_hash or "",
            ],
        )
        return RevocationStatus(_text(result))

    def list_sessions(self, uid: str, *, idle_ms: int) -> list[SessionInfo]:
        """The user's live sessions, newest first; dead index entries are pruned on the way.

        Dead means: gone, cut off by the user's not-before, or idle longer than ``idle_ms``.
        """
        now = self.clock()
        sids = cast("list[str]", self.redis.zrangebyscore(self._sessions_key(uid), now, "+inf"))
        if not sids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self._user_key(uid), "nbf")
        for sid in sids:
            pipe.hmget(self._session_key(uid, sid), "created", "auth", "last", "exp", "cid", "jkt")
            pipe.get(self._meta_key(uid, sid))
        replies = pipe.execute()
        user_nbf = int(replies[0] or 0)
        live, dead = [], []
        for index, sid in enumerate(sids):
            (created, auth, last, exp, cid, jkt), meta_raw = (
                replies[1 + 2 * index],
                replies[2 + 2 * index],
            )
            if created is None or int(auth) <= user_nbf or now - int(last) > idle_ms:
                dead.append(sid)
                continue
            meta: dict[str, Any] = json.loads(meta_raw) if meta_raw else {}
            live.append(
                SessionInfo(
                    session_id=sid,
                    device_id=meta.get("device_id"),
                    user_agent=meta.get("user_agent"),
                    ip=meta.get("ip"),
                    created_ms=int(created),
                    last_refresh_ms=int(last),
                    expires_ms=int(exp),
                    client_id=_text(cid) if cid else None,
                    bound=bool(jkt),
                )
            )
        if dead:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self._sessions_key(uid), *dead)
            # Raw DEL: the cluster pipeline refuses delete() of several (same-slot) keys.
            pipe.execute_command(
                "DEL", *(key for sid in dead for key in self.session_keys(uid, sid))
            )
            pipe.execute()
        return sorted(live, key=lambda s: s.created_ms, reverse=True)

    # -- registered clients -------------------------------------------------------
    def create_client(self, client: RegisteredClient) -> bool:
        """Store a new client; False (writing nothing) when the id is taken."""
        return bool(
            self._create_client(
                keys=[self._client_key(client.id), self._client_ids_key()],
                args=[client.id, *_client_fields(client), "created", self.clock()],
            )
        )

    def update_client(self, client: RegisteredClient) -> bool:
        """Replace a client's settings; False (writing nothing) when it does not exist."""
        return bool(
            self._update_client(keys=[self._client_key(client.id)], args=_client_fields(client))
        )

    def get_client(self, client_id: str) -> RegisteredClient | None:
        """The client ``client_id``, or None: one HGETALL."""
        raw = cast("dict[str, str]", self.redis.hgetall(self._client_key(client_id)))
        return client_from_fields(client_id, raw) if raw else None

    def list_clients(self) -> list[RegisteredClient]:
        """Every registered client by id, from the id set (never a keyspace scan)."""
        ids = cast("set[str]", self.redis.smembers(self._client_ids_key()))
        clients = [client for cid in ids if (client := self.get_client(cid)) is not None]
        return sorted(clients, key=lambda c: c.id)

    def delete_client(self, client_id: str) -> bool:
        """Remove a client; True when it existed."""
        return bool(
            self._delete_client(
                keys=[self._client_key(client_id), self._client_ids_key()], args=[client_id]
            )
        )

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())

    # -- administration -----------------------------------------------------------
    # ``P:usernames`` zset: one member "<username> <user id>" per user, every score 0, so
    # ZRANGE BYLEX pages the accounts in name order and finds a name prefix in
    # O(log N + page); the space sorts below every username character, so "ab" lists
    # before "ab-1". Written with the user record, before its name is confirmed, and
    # removed with it; a page lists a member only while the name points at its user
    # (skipping one still being created, dropping one whose creation or user is gone),
    # and an index that is missing (data from before it existed) is rebuilt from the
    # ``P:users`` set by SSCAN.
    def _username_index_key(self) -> str:
        return f"{self.prefix}:usernames"

    def unindex_username(self, uid: str, username: str) -> None:
        """Remove a user from the username index (:meth:`delete_user` does it too)."""
        self.redis.zrem(self._username_index_key(), _index_member(username, uid))

    def rebuild_username_index(self, batch: int = 1000) -> int:
        """Add every user of the ``P:users`` set to the index (SSCAN, never SCAN); idempotent.

        Returns how many users were indexed. Members of deleted users are not looked
        for here: a page drops them when it meets them.
        """
        indexed = 0
        uids: list[str] = []
        for uid in self.redis.sscan_iter(self._users_key(), count=batch):
            uids.append(uid)
            if len(uids) >= batch:
                indexed += self._index_users(uids)
                uids = []
        return indexed + self._index_users(uids)

    def _index_users(self, uids: list[str]) -> int:
        if not uids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for uid in uids:
            pipe.hget(self._user_key(uid), "username")
        names = pipe.execute()
        members = {
            _index_member(name, uid): 0 for uid, name in zip(uids, names, strict=True) if name
        }
        if members:
            self.redis.zadd(self._username_index_key(), members)
        return len(members)

    def user_page(self, *, prefix: str, after: str | None, limit: int) -> UserPage:
        """Up to ``limit`` users whose name starts with ``prefix``, in name order.

        ``after`` is the ``last`` of the previous page (exclusive). Two round trips:
        the index range (with the index and user counts), then the users' records and
        their names' owners.
        """
        key = self._username_index_key()
        low = f"({after}" if after is not None and after > prefix else f"[{prefix}"
        # 0x7f sorts above every character a member may hold: "[ab\x7f" ends prefix "ab".
        high = f"[{prefix}\x7f" if prefix else "+"
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(key, low, high, bylex=True, offset=0, num=limit + 1)
        pipe.exists(key)
        pipe.scard(self._users_key())
        members, index_exists, user_count = pipe.execute()
        if not index_exists and user_count:
            # Users from before the index existed: build it once, then read again.
            self.rebuild_username_index()
            members = self.redis.zrange(key, low, high, bylex=True, offset=0, num=limit + 1)
        more = len(members) > limit
        members = members[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(self._user_key(_member_uid(member)), "username", "roles", "disabled")
            pipe.get(self._username_key(member.rpartition(" ")[0]))
        replies = pipe.execute()
        users, stale = [], []
        for index, member in enumerate(members):
            (name, roles, disabled), owner = replies[2 * index], replies[2 * index + 1]
            uid = _member_uid(member)
            if owner != uid:
                # Still being created (its name pending for it): not listed yet. Else
                # its creation failed or it was deleted: the entry is dropped.
                if not (owner or "").startswith(f"{_PENDING}{uid}:"):
                    stale.append(member)
                continue
            if name is None:
                stale.append(member)
                continue
            users.append(
                UserSummary(
                    id=_member_uid(member),
                    username=name,
                    roles=_roles(roles),
                    disabled=disabled == "1",
                )
            )
        if stale:
            self.redis.zrem(key, *stale)
        return UserPage(users=users, last=members[-1] if more else None)


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class UserSummary:
    """A user as listed to an administrator (no password hash)."""

    id: str
    username: str
    roles: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True)
class UserPage:
    """One page of the user listing; ``last`` is where the next page starts (None: done)."""

    users: list[UserSummary]
    last: str | None


def _index_member(username: str, uid: str) -> str:
    return f"{username} {uid}"


def _member_uid(member: str) -> str:
    return member.rpartition(" ")[2]
