"""Sessions: creation, rotation, the access check, the denylist, ending and listing.

Every session key lives in its user's slot (:mod:`authsvc.store.layout`), so each of
these steps is one script or one pipeline on one Redis node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from authsvc.store.base import RedisClient, Script, _roles, _text, now_ms
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import (
    _CHECK_ACCESS_LUA,
    _CREATE_SESSION_LUA,
    _END_ALL_LUA,
    _PEEK_REFRESH_LUA,
    _ROTATE_LUA,
)


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
    """What :meth:`Sessions.end_all_sessions` did."""

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


class Sessions:
    """A user's sessions (refresh-token families) and the access tokens they mint."""

    def __init__(
        self, client: RedisClient, keys: KeyLayout, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock
        self._check_access = Script(client, _CHECK_ACCESS_LUA)
        self._rotate = Script(client, _ROTATE_LUA)
        self._end_all = Script(client, _END_ALL_LUA)
        self._peek_refresh = Script(client, _PEEK_REFRESH_LUA)
        self._create_session = Script(client, _CREATE_SESSION_LUA)

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
        keys = [self.keys.session(uid, sid), self.keys.meta(uid, sid), self.keys.sessions(uid)]
        if proof is not None:
            keys.append(self.keys.proof(uid, proof.replay_id))
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
            self.keys.session(uid, sid),
            self.keys.meta(uid, sid),
            self.keys.sessions(uid),
            self.keys.user(uid),
        ]
        if proof is not None:
            keys.append(self.keys.proof(uid, proof.replay_id))
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
        keys = [self.keys.denied(uid, jti), self.keys.session(uid, sid), self.keys.user(uid)]
        if proof is not None:
            keys.append(self.keys.proof(uid, proof.replay_id))
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
            keys=[self.keys.session(uid, sid), self.keys.user(uid)],
            args=[jti, self.clock(), idle_ms, grace_ms],
        )
        if not owner:
            return None
        return _text(owner[0]), (_text(owner[1]) or None)

    def deny_access_token(self, uid: str, jti: str, *, ttl_ms: int) -> None:
        """Denylist one access token until it expires (token revocation)."""
        self.redis.set(self.keys.denied(uid, jti), "1", px=max(ttl_ms, 1))

    def end_session(
        self, uid: str, sid: str, *, deny_jti: str | None = None, deny_ttl_ms: int = 0
    ) -> bool:
        """Delete one session (and optionally denylist an access token); True if it existed."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.session(uid, sid), self.keys.meta(uid, sid))
        pipe.zrem(self.keys.sessions(uid), sid)
        if deny_jti and deny_ttl_ms > 0:
            pipe.set(self.keys.denied(uid, deny_jti), "1", px=deny_ttl_ms)
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
        keys = [self.keys.user(uid)]
        if keep_sid is not None:
            keys.append(self.keys.session(uid, keep_sid))
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
        sids = cast("list[str]", self.redis.zrangebyscore(self.keys.sessions(uid), now, "+inf"))
        if not sids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.user(uid), "nbf")
        for sid in sids:
            pipe.hmget(self.keys.session(uid, sid), "created", "auth", "last", "exp", "cid", "jkt")
            pipe.get(self.keys.meta(uid, sid))
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
            pipe.zrem(self.keys.sessions(uid), *dead)
            # Raw DEL: the cluster pipeline refuses delete() of several (same-slot) keys.
            pipe.execute_command(
                "DEL", *(key for sid in dead for key in self.keys.session_keys(uid, sid))
            )
            pipe.execute()
        return sorted(live, key=lambda s: s.created_ms, reverse=True)
