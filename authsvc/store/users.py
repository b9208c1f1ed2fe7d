"""Users: accounts, their usernames and the admin listing's name index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import redis

from authsvc.store.base import RedisClient, Script, _roles, now_ms
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import (
    _CONFIRM_NAME_LUA,
    _REHASH_LUA,
    _RELEASE_NAME_LUA,
    _RESERVE_NAME_LUA,
    _UPDATE_USER_LUA,
)

# How long a half-made user holds its name: far above the one round trip between.
NAME_RESERVATION_MS = 30_000
_PENDING = "pending:"


@dataclass(frozen=True)
class User:
    """A stored account."""

    id: str
    username: str
    password_hash: str = field(repr=False)  # never in a printed record or log line
    roles: tuple[str, ...]
    disabled: bool


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


class Users:
    """Accounts by id, their unique usernames, and the paged listing by name."""

    def __init__(
        self, client: RedisClient, keys: KeyLayout, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock
        self._rehash = Script(client, _REHASH_LUA)
        self._update_user = Script(client, _UPDATE_USER_LUA)
        self._reserve_name = Script(client, _RESERVE_NAME_LUA)
        self._confirm_name = Script(client, _CONFIRM_NAME_LUA)
        self._release_name = Script(client, _RELEASE_NAME_LUA)

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
            confirmed = self._confirm_name(keys=[self.keys.username(username)], args=[pending, uid])
        except redis.RedisError:
            # Do not leave the name reserved by a user that was never written.
            self._release_name(keys=[self.keys.username(username)], args=[pending])
            raise
        if not confirmed:  # the reservation outlived its deadline and was taken
            self._delete_user_record(uid, username)
            return False
        return True

    def reserve_username(self, username: str, uid: str) -> str | None:
        """Step one of :meth:`create_user`: the pending reservation's value, None if taken."""
        pending = f"{_PENDING}{uid}:{self.clock() + NAME_RESERVATION_MS}"
        reserved = self._reserve_name(
            keys=[self.keys.username(username)],
            args=[pending, self.clock(), NAME_RESERVATION_MS],
        )
        return pending if reserved else None

    def _delete_user_record(self, uid: str, username: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(self.keys.users(), uid)
        pipe.zrem(self.keys.username_index(), _index_member(username, uid))
        pipe.delete(self.keys.user(uid))
        pipe.execute()

    def _write_new_user(
        self, uid: str, username: str, password_hash: str, roles: tuple[str, ...]
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(self.keys.users(), uid)
        # Listed only once the name is confirmed (user_page checks the name's owner).
        pipe.zadd(self.keys.username_index(), {_index_member(username, uid): 0})
        pipe.hset(
            self.keys.user(uid),
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
        uid = cast("str | None", self.redis.get(self.keys.username(username)))
        return None if uid is None or uid.startswith(_PENDING) else uid

    def get_user(self, uid: str) -> User | None:
        """The user with id ``uid``, or None."""
        raw = cast("dict[str, str]", self.redis.hgetall(self.keys.user(uid)))
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
        uids = cast("set[str]", self.redis.smembers(self.keys.users()))
        users = [user for uid in uids if (user := self.get_user(uid)) is not None]
        # Only users their name points at: not one whose creation crashed half-way.
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.get(self.keys.username(user.username))
        owners = pipe.execute() if users else []
        named = [user for user, owner in zip(users, owners, strict=True) if owner == user.id]
        return sorted(named, key=lambda u: u.username)

    def rehash_password(self, uid: str, verified_hash: str, new_hash: str) -> bool:
        """Upgrade the stored hash, unless the password changed since it was verified."""
        return bool(self._rehash(keys=[self.keys.user(uid)], args=[verified_hash, new_hash]))

    def set_password_hash(self, uid: str, password_hash: str) -> bool:
        """Replace the stored hash (tests, migrations) without ending sessions.

        False, writing nothing, when the user does not exist (it was deleted).
        """
        return bool(self._update_user(keys=[self.keys.user(uid)], args=["pw", password_hash]))

    def enable(self, uid: str) -> bool:
        """Re-enable an account (disabling it ends its sessions: :meth:`Store.set_disabled`).

        False, writing nothing, when the user does not exist (it was deleted).
        """
        return bool(self._update_user(keys=[self.keys.user(uid)], args=["disabled", "0"]))

    def delete_user(self, uid: str, username: str) -> None:
        """Remove the account, its sessions and the networks it was known on.

        The sessions die with the user either way; deleting them frees memory at once.
        """
        sids = cast("list[str]", self.redis.zrange(self.keys.sessions(uid), 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.username(username))
        # The networks it was known on must not carry over to a new owner of the name.
        pipe.delete(self.keys.account_throttle(username, "")[0])
        pipe.srem(self.keys.users(), uid)
        pipe.zrem(self.keys.username_index(), _index_member(username, uid))
        # A raw UNLINK: redis-py's cluster pipeline refuses unlink() of several keys,
        # though these share the user's slot.
        pipe.execute_command(
            "UNLINK",
            self.keys.user(uid),
            self.keys.sessions(uid),
            *(key for sid in sids for key in self.keys.session_keys(uid, sid)),
        )
        pipe.execute()

    # -- the admin listing's name index -------------------------------------------
    # ``P:usernames`` zset: one member "<username> <user id>" per user, every score 0, so
    # ZRANGE BYLEX pages the accounts in name order and finds a name prefix in
    # O(log N + page); the space sorts below every username character, so "ab" lists
    # before "ab-1". Written with the user record, before its name is confirmed, and
    # removed with it; a page lists a member only while the name points at its user
    # (skipping one still being created, dropping one whose creation or user is gone),
    # and an index that is missing (data from before it existed) is rebuilt from the
    # ``P:users`` set by SSCAN.
    def unindex_username(self, uid: str, username: str) -> None:
        """Remove a user from the username index (:meth:`delete_user` does it too)."""
        self.redis.zrem(self.keys.username_index(), _index_member(username, uid))

    def rebuild_username_index(self, batch: int = 1000) -> int:
        """Add every user of the ``P:users`` set to the index (SSCAN, never SCAN); idempotent.

        Returns how many users were indexed. Members of deleted users are not looked
        for here: a page drops them when it meets them.
        """
        indexed = 0
        uids: list[str] = []
        for uid in self.redis.sscan_iter(self.keys.users(), count=batch):
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
            pipe.hget(self.keys.user(uid), "username")
        names = pipe.execute()
        members = {
            _index_member(name, uid): 0 for uid, name in zip(uids, names, strict=True) if name
        }
        if members:
            self.redis.zadd(self.keys.username_index(), members)
        return len(members)

    def user_page(self, *, prefix: str, after: str | None, limit: int) -> UserPage:
        """Up to ``limit`` users whose name starts with ``prefix``, in name order.

        ``after`` is the ``last`` of the previous page (exclusive). Two round trips:
        the index range (with the index and user counts), then the users' records and
        their names' owners.
        """
        key = self.keys.username_index()
        low = f"({after}" if after is not None and after > prefix else f"[{prefix}"
        # 0x7f sorts above every character a member may hold: "[ab\x7f" ends prefix "ab".
        high = f"[{prefix}\x7f" if prefix else "+"
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(key, low, high, bylex=True, offset=0, num=limit + 1)
        pipe.exists(key)
        pipe.scard(self.keys.users())
        members, index_exists, user_count = pipe.execute()
        if not index_exists and user_count:
            # Users from before the index existed: build it once, then read again.
            self.rebuild_username_index()
            members = self.redis.zrange(key, low, high, bylex=True, offset=0, num=limit + 1)
        more = len(members) > limit
        members = members[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(self.keys.user(_member_uid(member)), "username", "roles", "disabled")
            pipe.get(self.keys.username(member.rpartition(" ")[0]))
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
