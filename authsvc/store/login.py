"""A login's Redis work: at most two scripts per hash slot, and no attempt left counted.

Before the password hash, :meth:`LoginStore.begin` reserves the attempt in the account's
and the client network's throttle buckets and looks the user up (name, then record);
after a right password, :meth:`LoginStore.finish` hands the attempt back, remembers the
network, upgrades the hash if asked and opens the session. The keys are named in
:mod:`authsvc.store.layout` (its docstring is the key layout).

On one Redis (or a Sentinel-managed master) each step is one script, one round trip:
``login_begin.lua`` and ``login_finish.lua``. On a Redis Cluster the keys live in four
slots (network bucket, username, account buckets, user), so ``begin`` is two pipelines,
one script or read per slot each: the network's reservation with the name, then (only
if the network passed) the account's reservation with the user record; ``finish`` is
one pipeline of one script per slot.

A refused attempt is charged nowhere: ``login_begin`` checks both buckets before it
charges either; on a Cluster the network's refusal stops before the account is asked,
and the account's refusal hands the network's charge straight back.

An attempt whose outcome an outage hid (a Redis error after it may have been counted,
before its password's verdict or after a right one) is handed back by the next login
of the same process, in a pipeline of its own before that login's reservation: the
attempt guessed nothing, so it must not lock anyone out.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from redis.cluster import RedisCluster

from authsvc.store import _HEADER, _LUA, _PENDING, Store, User, _roles, _text
from authsvc.store.base import Script

# The most networks an account is known on; the oldest are forgotten first.
MAX_KNOWN_NETWORKS = 20
# Attempts waiting to be handed back after an outage, per process; the oldest are
# dropped first (each bucket forgets them with its window anyway).
MAX_PENDING_RETURNS = 10_000


def _source(name: str) -> str:
    """``lua/<name>.lua`` without its header comment."""
    return _HEADER.sub("", (_LUA / f"{name}.lua").read_text(encoding="utf-8"))


def _composed(name: str, *, needs: tuple[str, ...] = (), calls: tuple[str, ...] = ()) -> str:
    """``lua/<name>.lua`` after the lib files it ``needs`` and the scripts it ``calls``.

    A called script runs unchanged, as ``local function <script>(KEYS, ARGV)``: the
    login's scripts reuse ``create_session.lua``, ``rehash.lua`` and
    ``settle_account.lua`` rather than copy them.
    """
    libs = [_HEADER.sub("", (_LUA / "lib" / f"{lib}.lua").read_text("utf-8")) for lib in needs]
    functions = [f"local function {called}(KEYS, ARGV)\n{_source(called)}end\n" for called in calls]
    return "".join([*libs, *functions, _source(name)])


_OPEN_SESSION_CALLS = ("rehash", "create_session")
_LOGIN_BEGIN_LUA = _composed("login_begin", needs=("reserve",))
# needs "proof": create_session.lua remembers a DPoP login's proof (lib/proof.lua).
_LOGIN_FINISH_LUA = _composed(
    "login_finish",
    needs=("proof",),
    calls=(*_OPEN_SESSION_CALLS, "open_session", "settle_account"),
)
_OPEN_SESSION_LUA = _composed("open_session", needs=("proof",), calls=_OPEN_SESSION_CALLS)
_RESERVE_NETWORK_LUA = _composed("reserve_network", needs=("reserve",))
_RESERVE_ACCOUNT_LUA = _composed("reserve_account", needs=("reserve",))
_SETTLE_ACCOUNT_LUA = _source("settle_account")


@dataclass(frozen=True)
class Attempt:
    """One login attempt: the account's name, the client's network and a random id.

    ``network`` is the client's address, IPv6 grouped by prefix (the service's choice);
    the id (one per attempt) makes a resent command count nothing twice.
    """

    name: str
    network: str
    id: str


@dataclass(frozen=True)
class Limits:
    """The login throttle's budgets (docs/concepts/sessions.md, "Login throttling")."""

    account: int  # attempts per account per window, from networks it is not known on
    network: int  # attempts per client network per window, any account
    window_ms: int


@dataclass(frozen=True)
class Begun:
    """What :meth:`LoginStore.begin` found: ms to wait (0: go ahead) and the user, if any."""

    wait_ms: int
    user: User | None = None


@dataclass(frozen=True)
class _Return:
    """An attempt to hand back: its buckets, and when they have forgotten it anyway."""

    keys: tuple[str, ...]
    attempt: str
    until: float  # time.monotonic()


class LoginStore:
    """A login's reservation, user lookup, settlement and session, over one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        # On a Cluster the login's keys live in different slots: one script per slot.
        self.cluster = isinstance(store.redis, RedisCluster)
        register = partial(Script, self.redis)
        self._begin = register(_LOGIN_BEGIN_LUA)
        self._finish = register(_LOGIN_FINISH_LUA)
        self._open_session = register(_OPEN_SESSION_LUA)
        self._reserve_network = register(_RESERVE_NETWORK_LUA)
        self._reserve_account = register(_RESERVE_ACCOUNT_LUA)
        self._settle_account = register(_SETTLE_ACCOUNT_LUA)
        start, _, end = store.layout.user("\0").partition("\0")
        self._user_key_around = (start, end)
        self._returns: deque[_Return] = deque(maxlen=MAX_PENDING_RETURNS)
        self._returns_lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------
    def _account_keys(self, name: str, network: str) -> list[str]:
        return self.store.layout.account_throttle(name, network)

    def _network_key(self, network: str) -> str:
        return self.store.layout.network_bucket(network)

    # -- before the password check --------------------------------------------------------
    def begin(self, attempt: Attempt, limits: Limits, *, lookup: bool = True) -> Begun:
        """Count ``attempt``, then (with ``lookup``) find the user; a refusal charged nothing.

        The attempt counts for its account and its client network. On the account side
        it counts in the network's own bucket when the account logged in from there
        before, else in the bucket every other network shares. It counts until
        :meth:`finish` (or :meth:`settle`): a wrong password needs no call.
        """
        self._hand_back_pending()
        name, network = attempt.name, attempt.network
        if self.cluster:
            return self._begin_per_slot(attempt, limits, lookup=lookup)
        start, end = self._user_key_around if lookup else ("", "")
        reply = self._begin(
            keys=[
                *self._account_keys(name, network),
                self._network_key(network),
                self.store.layout.username(name),
            ],
            args=[
                *(network, attempt.id, limits.account, limits.network, limits.window_ms),
                *(self.store.clock(), start, end),
            ],
        )
        if int(reply[0]) > 0 or len(reply) == 1:
            return Begun(int(reply[0]))
        uid, username, password_hash, roles, disabled = (_text(value) for value in reply[1:6])
        return Begun(0, _user(uid, username, password_hash, roles, disabled))

    def _begin_per_slot(self, attempt: Attempt, limits: Limits, *, lookup: bool) -> Begun:
        name, network = attempt.name, attempt.network
        # The network first: a network that refuses never reaches the account's
        # buckets, so a guesser's refused attempts cannot crowd an account's owner out.
        pipe = self.redis.pipeline(transaction=False)
        _eval_in(
            pipe,
            self._reserve_network,
            keys=[self._network_key(network)],
            args=[attempt.id, limits.network, limits.window_ms],
        )
        if lookup:
            pipe.get(self.store.layout.username(name))
        network_wait, *found = pipe.execute()
        if int(network_wait) > 0:
            return Begun(int(network_wait))
        uid = _text(found[0]) if found and found[0] is not None else None
        if uid is not None and uid.startswith(_PENDING):
            uid = None  # a user being created: not a user yet
        pipe = self.redis.pipeline(transaction=False)
        _eval_in(
            pipe,
            self._reserve_account,
            keys=self._account_keys(name, network),
            args=[network, attempt.id, limits.account, limits.window_ms, self.store.clock()],
        )
        if uid is not None:
            pipe.hmget(self.store.layout.user(uid), "username", "pw", "roles", "disabled")
        account_wait, *record = pipe.execute()
        if int(account_wait) > 0:
            # Refused by the account: the network's charge goes straight back (or with
            # the next login, if Redis fails right now: the answer is still a refusal).
            until = time.monotonic() + limits.window_ms / 1000
            network_only = _Return((self._network_key(network),), attempt.id, until)
            self._hand_back([network_only], fail=False)
            return Begun(int(account_wait))
        if uid is None or not record or record[0][0] is None:
            return Begun(0)
        username, password_hash, roles, disabled = (_text(v or "") for v in record[0])
        return Begun(0, _user(uid, username, password_hash, roles, disabled or "0"))

    # -- after a right password ---------------------------------------------------------
    def finish(
        self,
        uid: str,
        sid: str,
        *,
        attempt: Attempt,
        known_ms: int,
        verified_hash: str,
        new_hash: str | None,
        **session: Any,
    ) -> bool:
        """Settle a success and open session ``sid`` of ``uid``: one script per slot.

        The attempt is handed back to both budgets, this network's failures on the
        account are forgiven, and for ``known_ms`` its attempts count in a bucket of its
        own. ``new_hash`` replaces ``verified_hash`` unless the password changed
        meanwhile (compare-and-set). ``session`` is :meth:`Store.session_script_args`'s.
        False when the session's DPoP proof was already seen (no session was opened).
        """
        network = attempt.network
        settle_keys, settle_args = self._settle_script_args(attempt, known_ms)
        session_keys, session_args = self.store.session_script_args(uid, sid, **session)
        open_keys = [self.store.layout.user(uid), *session_keys]
        open_args = [verified_hash, new_hash or "", *session_args]
        if not self.cluster:
            created = self._finish(
                keys=[*settle_keys, self._network_key(network), *open_keys],
                args=[*settle_args, *open_args],
            )
            return bool(int(created))
        pipe = self.redis.pipeline(transaction=False)
        _eval_in(pipe, self._settle_account, keys=settle_keys, args=settle_args)
        pipe.zrem(self._network_key(network), attempt.id)
        _eval_in(pipe, self._open_session, keys=open_keys, args=open_args)
        return bool(int(pipe.execute()[-1]))

    def settle(self, attempt: Attempt, *, known_ms: int) -> None:
        """The settlement of :meth:`finish` alone, in one pipeline (a password change)."""
        keys, args = self._settle_script_args(attempt, known_ms)
        pipe = self.redis.pipeline(transaction=False)
        _eval_in(pipe, self._settle_account, keys=keys, args=args)
        pipe.zrem(self._network_key(attempt.network), attempt.id)
        pipe.execute()

    def _settle_script_args(self, attempt: Attempt, known_ms: int) -> tuple[list[str], list[Any]]:
        now = self.store.clock()
        keys = self._account_keys(attempt.name, attempt.network)
        return keys, [attempt.network, attempt.id, now + known_ms, now, MAX_KNOWN_NETWORKS]

    # -- attempts an outage cut off -------------------------------------------------------
    def hand_back_later(self, attempt: Attempt, *, window_ms: int) -> None:
        """Queue ``attempt`` to be handed back by this process's next login.

        For an attempt whose outcome an outage hid: it may have been counted (the
        reply was lost, or Redis went away before the success was settled). Handing
        back an attempt that was never counted, or was settled, changes nothing.
        """
        _known, shared, own = self._account_keys(attempt.name, attempt.network)
        entry = _Return(
            (shared, own, self._network_key(attempt.network)),
            attempt.id,
            time.monotonic() + window_ms / 1000,
        )
        with self._returns_lock:
            self._returns.append(entry)

    def pending_returns(self) -> int:
        """How many attempts wait to be handed back (tests, metrics)."""
        with self._returns_lock:
            return len(self._returns)

    def _hand_back_pending(self) -> None:
        if not self._returns:  # the common case: no lock, no round trip
            return
        with self._returns_lock:
            now = time.monotonic()
            entries = [entry for entry in self._returns if entry.until > now]
            self._returns.clear()
        if entries:
            # Redis failing here fails the login too (it would time out again anyway).
            self._hand_back(entries, fail=True)

    def _hand_back(self, entries: list[_Return], *, fail: bool) -> None:
        """ZREM each attempt from its buckets in one pipeline; queued again if Redis fails.

        The error is raised only with ``fail``.
        """
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries:
            for key in entry.keys:
                pipe.zrem(key, entry.attempt)
        try:
            pipe.execute()
        except redis.RedisError:
            with self._returns_lock:
                self._returns.extend(entries)
            if fail:
                raise


def _user(uid: str, username: str, password_hash: str, roles: str, disabled: str) -> User:
    return User(
        id=uid,
        username=username,
        password_hash=password_hash,
        roles=_roles(roles),
        disabled=disabled == "1",
    )


def _eval_in(pipe: Any, script: Script, *, keys: list[str], args: list[Any]) -> None:
    """Queue ``script`` in a pipeline as a plain EVAL.

    redis-py's cluster pipeline cannot load a script missing from a node (a restarted
    or just-promoted master has none), and its plain pipeline would spend a round trip
    on SCRIPT EXISTS first.
    """
    pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
