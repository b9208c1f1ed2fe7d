"""The Redis store on its own: sessions, rotation, revocation, listing, throttles, users.

Most tests run three times through the conftest ``redis_client`` fixture (fakeredis, a
real Redis and a real Redis Cluster). The last ones need a real server (MEMORY USAGE,
MONITOR, true concurrency) and take ``real_redis`` directly.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from authsvc.store import (
    NAME_RESERVATION_MS,
    AccessStatus,
    RevocationStatus,
    RotationStatus,
    Store,
    now_ms,
)
from authsvc.store.base import thread_clients
from authsvc.store.login import Attempt, Limits, LoginStore

# Also on the real Redis Cluster (conftest's redis_client).
pytestmark = pytest.mark.cluster

DAY_MS = 24 * 3600 * 1000
SESSION_TTL_MS = 30 * DAY_MS
IDLE_MS = 7 * DAY_MS
GRACE_MS = 20_000
UNUSED_MS = 15 * 60 * 1000  # the service passes the access-token lifetime
PREFIX = "authsvc"
UID = uuid.uuid4().hex
USERNAME = "alice"
# How far a TTL read back may lag the expiry computed before writing it.
TTL_SLACK_MS = 5_000
# Commands that walk the keyspace; the store must never send or run one.
KEYSPACE_SCANS = {"SCAN", "KEYS"}
# Multi-key commands whose every argument is a key (for the cluster slot check).
ALL_ARGS_ARE_KEYS = {"DEL", "UNLINK", "EXISTS", "TOUCH"}


def every_key(client: redis.Redis | RedisCluster) -> list[str]:
    """Every key, from every master of a cluster."""
    if isinstance(client, RedisCluster):
        return client.keys("*", target_nodes=RedisCluster.PRIMARIES)
    return client.keys("*")


class Clock:
    """A settable millisecond clock starting at the real time (Redis TTLs follow the real one)."""

    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class SentCommands:
    """What a client sent over its connections: every command (pipelines included) and
    the number of network writes, i.e. round trips."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.round_trips = 0

    def record(self, args: tuple) -> None:
        words = tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args)
        self.commands.append((words[0].upper(), *words[1:]))

    def clear(self) -> None:
        self.commands.clear()
        self.round_trips = 0

    def names(self) -> list[str]:
        return [command[0] for command in self.commands]

    def connection_class(self, base: type) -> type:
        log = self

        class RecordingConnection(base):
            def send_packed_command(self, command, check_health=True):
                log.round_trips += 1
                return super().send_packed_command(command, check_health)

            def send_command(self, *args, **kwargs):
                log.record(args)
                return super().send_command(*args, **kwargs)

            def pack_commands(self, commands):
                for command in commands:
                    log.record(tuple(command))
                return super().pack_commands(commands)

        return RecordingConnection


def record_commands(client: redis.Redis | RedisCluster) -> SentCommands:
    """From now on, every connection of ``client`` (of each node of a cluster) records
    what it sends."""
    if isinstance(client, RedisCluster):
        pools = [node.redis_connection.connection_pool for node in client.get_nodes()]
    else:
        pools = [client.connection_pool]
        # Threads keep a connection of their own for scripts: made again, recording.
        if (own := thread_clients(client)) is not None:
            own.forget()
    log = SentCommands()
    for pool in pools:
        pool.disconnect()
        pool.reset()
        pool.connection_class = log.connection_class(pool.connection_class)
    return log


@contextmanager
def monitored(url: str) -> Iterator[list[dict]]:
    """Every command the server at ``url`` executes in its database while inside, Lua's
    included, as seen by MONITOR (other databases of a shared server are ignored)."""
    watcher = redis.Redis.from_url(url, decode_responses=True)
    signaller = redis.Redis.from_url(url, decode_responses=True)
    signaller.ping()  # connected now, so its set-up commands stay out of the record
    db = watcher.connection_pool.connection_kwargs.get("db", 0)
    marker = f"end-of-monitor-{uuid.uuid4().hex}"
    seen: list[dict] = []
    try:
        with watcher.monitor() as monitor:

            def collect() -> None:
                for event in monitor.listen():
                    if marker in event["command"]:
                        return
                    if event["db"] == db:
                        seen.append(event)

            reader = threading.Thread(target=collect, daemon=True)
            reader.start()
            try:
                yield seen
            finally:
                signaller.echo(marker)
                reader.join(timeout=10)
        assert not reader.is_alive(), "MONITOR never saw the end marker"
    finally:
        watcher.close()
        signaller.close()


def first_word(event: dict) -> str:
    return event["command"].split(" ", 1)[0].upper()


def user_key(uid: str) -> str:
    return f"{PREFIX}:{{u:{uid}}}:user"


def index_key(uid: str) -> str:
    return f"{PREFIX}:{{u:{uid}}}:sessions"


def deny_key(uid: str, jti: str) -> str:
    return f"{PREFIX}:{{u:{uid}}}:deny:{jti}"


def open_session(store: Store, uid: str = UID, sid: str = "s1", **overrides) -> int:
    """Create session ``sid`` (refresh jti ``<sid>-r0``, access jti ``<sid>-a0``); its expiry."""
    expires_ms = overrides.pop("expires_ms", store.clock() + SESSION_TTL_MS)
    store.create_session(
        uid,
        sid,
        refresh_jti=f"{sid}-r0",
        access_jti=f"{sid}-a0",
        issued_at=store.clock() // 1000,
        expires_ms=expires_ms,
        device_id=overrides.pop("device_id", "dev-1"),
        user_agent=overrides.pop("user_agent", "firmware/1.0"),
        ip=overrides.pop("ip", "192.0.2.7"),
        auth_ms=overrides.pop("auth_ms", None),
    )
    assert not overrides, overrides
    return expires_ms


def rotate(store: Store, presented: str, new: str, *, sid: str = "s1", **windows):
    """Present refresh jti ``presented`` of session ``sid``; ``new`` names the next pair."""
    return store.rotate(
        UID,
        sid,
        presented,
        new_refresh_jti=new,
        new_access_jti=f"{new}-access",
        issued_at=store.clock() // 1000,
        grace_ms=windows.get("grace_ms", GRACE_MS),
        idle_ms=windows.get("idle_ms", IDLE_MS),
        unused_ms=windows.get("unused_ms", UNUSED_MS),
    )


def assert_session_deleted(client: redis.Redis, store: Store, sid: str = "s1") -> None:
    assert client.exists(*store.session_keys(UID, sid)) == 0
    assert client.zscore(index_key(UID), sid) is None


@pytest.fixture
def clock() -> Clock:
    """The store's clock, moved by hand."""
    return Clock()


@pytest.fixture
def store(redis_client: redis.Redis, clock: Clock) -> Store:
    """A store over fakeredis or the real Redis, on the hand-moved clock."""
    return Store(redis_client, prefix=PREFIX, clock=clock)


@pytest.fixture
def uid(store: Store) -> str:
    """The id of the stored user alice (role admin)."""
    assert store.create_user(UID, USERNAME, "argon2-hash", ("admin",))
    return UID


# -- sessions -----------------------------------------------------------------------


def test_create_session_expires_at_the_absolute_expiry_and_is_indexed(store, redis_client, uid):
    """A new session's hash and meta live exactly until its absolute expiry; the index has it."""
    expires_ms = open_session(store)
    session_key, meta_key = store.session_keys(uid, "s1")
    expected_ttl = expires_ms - now_ms()
    for key in (session_key, meta_key):
        assert expected_ttl - TTL_SLACK_MS <= redis_client.pttl(key) <= expected_ttl
    stored = redis_client.hgetall(session_key)
    assert stored["jti"] == "s1-r0"
    assert stored["ajti"] == "s1-a0"
    assert int(stored["exp"]) == expires_ms
    assert int(stored["auth"]) == int(stored["created"]) == int(stored["last"]) == store.clock()
    assert redis_client.zscore(index_key(uid), "s1") == expires_ms


def test_every_key_of_a_user_carries_its_hash_tag(store, redis_client, uid):
    """Every per-user key contains {u:<uid>}, so one user's keys share one cluster slot."""
    open_session(store, sid="s1")
    store.end_session(uid, "s1", deny_jti="s1-a0", deny_ttl_ms=60_000)
    open_session(store, sid="s2")
    everything = set(every_key(redis_client))
    per_user = {
        user_key(uid),
        index_key(uid),
        *store.session_keys(uid, "s2"),
        deny_key(uid, "s1-a0"),
    }
    assert per_user <= everything
    assert everything - per_user == {
        f"{PREFIX}:users",
        f"{PREFIX}:usernames",
        f"{PREFIX}:uname:{USERNAME}",
    }
    assert all(f"{{u:{uid}}}" in key for key in per_user)
    assert len({key_slot(key.encode()) for key in per_user}) == 1


def test_rotating_the_current_jti_issues_the_new_pair(store, redis_client, uid):
    """The current refresh jti rotates: the new jtis become current, the old one previous."""
    open_session(store)
    rotation = rotate(store, "s1-r0", "r1")
    assert rotation.status is RotationStatus.ROTATED
    assert rotation.pair.refresh_jti == "r1"
    assert rotation.pair.access_jti == "r1-access"
    assert rotation.pair.username == USERNAME
    assert rotation.pair.roles == ("admin",)
    stored = redis_client.hgetall(store.session_keys(uid, "s1")[0])
    assert (stored["jti"], stored["pjti"], int(stored["rot"])) == ("r1", "s1-r0", store.clock())


def test_previous_jti_within_grace_gets_the_already_issued_pair(store, clock, uid):
    """A lost response: replaying the previous jti within grace returns the same current pair."""
    open_session(store)
    rotated = rotate(store, "s1-r0", "r1")
    clock.advance(GRACE_MS // 2)
    replay = rotate(store, "s1-r0", "never-issued")
    assert replay.status is RotationStatus.GRACE
    assert replay.pair == rotated.pair
    assert rotate(store, "r1", "r2").status is RotationStatus.ROTATED


def test_grace_window_is_anchored_to_the_first_rotation(store, redis_client, clock, uid):
    """Replaying the previous jti does not extend the window: past rot + grace, once the child
    pair was used, it is reuse."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    for _ in range(3):
        clock.advance(GRACE_MS // 4)
        assert rotate(store, "s1-r0", "x").status is RotationStatus.GRACE
    clock.advance(GRACE_MS // 4)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.GRACE  # exactly rot + grace
    clock.advance(1)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)


def test_grace_cannot_be_chained_to_an_older_ancestor(store, redis_client, clock, uid):
    """After A->B and B->C, presenting A is reuse (not grace), even within the window."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    clock.advance(1)
    rotate(store, "r1", "r2")
    clock.advance(1)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)


def test_zero_grace_makes_the_previous_jti_reuse_at_once(store, redis_client, uid):
    """grace 0 disables the window: once the child was used, the previous jti is reuse."""
    open_session(store)
    rotate(store, "s1-r0", "r1", grace_ms=0)
    store.check_access(uid, "s1", "r1-access")
    assert rotate(store, "s1-r0", "x", grace_ms=0).status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)


def test_unknown_jti_is_reuse_and_ends_the_family_for_good(store, redis_client, uid):
    """Any other jti deletes the session (hash, meta, index); the live child is then GONE."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    assert rotate(store, "forged", "x").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)
    assert rotate(store, "r1", "r2").status is RotationStatus.GONE
    assert store.check_access(uid, "s1", "r1-access")[0] is AccessStatus.GONE


def test_a_bearer_parent_past_the_grace_window_is_reuse_and_ends_the_family(
    store, redis_client, clock, uid
):
    """Bearer session (RFC 9700 section 4.14.2): past the grace window the previous jti is
    reuse even though nobody used the issued pair; the whole family ends."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    clock.advance(GRACE_MS + 1)
    assert rotate(store, "s1-r0", "never-issued").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)
    assert rotate(store, "r1", "r2").status is RotationStatus.GONE


def test_a_resent_rotation_converges_even_without_a_grace_window(store, uid):
    """The same rotate command run twice (redis-py resends after a dropped connection) hands
    back the first run's pair, grace 0 included: no false reuse."""
    open_session(store)
    first = rotate(store, "s1-r0", "r1", grace_ms=0)
    resent = rotate(store, "s1-r0", "r1", grace_ms=0)
    assert (first.status, resent.status) == (RotationStatus.ROTATED, RotationStatus.GRACE)
    assert resent.pair == first.pair


def test_once_the_childs_access_token_was_used_a_parent_replay_is_reuse(
    store, redis_client, clock, uid
):
    """The child's access token presented: past the grace window the parent is reuse."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    assert store.check_access(uid, "s1", "r1-access")[0] is AccessStatus.OK
    clock.advance(GRACE_MS // 2)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.GRACE  # grace keeps its meaning
    clock.advance(GRACE_MS)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)


def test_once_the_childs_refresh_token_was_presented_a_parent_replay_is_reuse(
    store, redis_client, clock, uid
):
    """Presenting the child's refresh token rotates it: the parent, now a grandparent, is
    reuse at once, although the new child is unused."""
    open_session(store)
    rotate(store, "s1-r0", "r1")
    clock.advance(1)
    rotate(store, "r1", "r2")
    assert rotate(store, "s1-r0", "x").status is RotationStatus.REUSED
    assert_session_deleted(redis_client, store)


def test_the_access_check_writes_nothing_without_a_proof(store, redis_client, uid):
    """A bearer access check is read-only: the session hash is unchanged."""
    open_session(store)
    session_key = store.session_keys(uid, "s1")[0]
    before = redis_client.hgetall(session_key)
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.OK
    assert redis_client.hgetall(session_key) == before


def test_session_idle_past_the_timeout_dies(store, redis_client, clock, uid):
    """A session not refreshed for longer than the idle timeout is IDLE and deleted."""
    open_session(store)
    clock.advance(IDLE_MS + 1)
    assert rotate(store, "s1-r0", "r1").status is RotationStatus.IDLE
    assert_session_deleted(redis_client, store)


def test_each_rotation_restarts_the_idle_timeout(store, clock, uid):
    """The idle clock counts from the last refresh, not from the login."""
    open_session(store)
    clock.advance(IDLE_MS)
    assert rotate(store, "s1-r0", "r1").status is RotationStatus.ROTATED
    clock.advance(IDLE_MS)
    assert rotate(store, "r1", "r2").status is RotationStatus.ROTATED


def test_rotation_never_extends_the_session_lifetime(store, redis_client, clock, uid):
    """Refreshing keeps the absolute expiry: same exp, TTL not pushed back."""
    expires_ms = open_session(store)
    clock.advance(DAY_MS)
    rotation = rotate(store, "s1-r0", "r1")
    assert rotation.pair.session_expires_ms == expires_ms
    expected_ttl = expires_ms - now_ms()
    for key in store.session_keys(uid, "s1"):
        assert redis_client.pttl(key) <= expected_ttl
    assert int(redis_client.hget(store.session_keys(uid, "s1")[0], "exp")) == expires_ms


# -- access checks ------------------------------------------------------------------


def test_check_access_of_a_live_session_is_ok_with_the_username(store, uid):
    """A live session's access token passes and names its user."""
    open_session(store)
    assert store.check_access(uid, "s1", "s1-a0") == (AccessStatus.OK, USERNAME)


def test_a_script_redis_has_forgotten_is_loaded_and_run_again(store, redis_client, uid):
    """After SCRIPT FLUSH (a restarted or just-promoted master) the check still answers.

    The store sends EVALSHA itself (authsvc.store.base.Script); on NOSCRIPT it loads the
    script and sends it again, once.
    """
    open_session(store)
    assert store.check_access(uid, "s1", "s1-a0") == (AccessStatus.OK, USERNAME)
    redis_client.script_flush()
    assert store.check_access(uid, "s1", "s1-a0") == (AccessStatus.OK, USERNAME)
    assert store.check_access(uid, "s1", "s1-a0") == (AccessStatus.OK, USERNAME)


def test_logout_denylists_the_access_jti_for_its_remaining_life(store, redis_client, uid):
    """end_session with deny_jti: that jti is DENIED, via a key with a TTL of deny_ttl_ms."""
    open_session(store)
    assert store.end_session(uid, "s1", deny_jti="s1-a0", deny_ttl_ms=90_000)
    assert store.check_access(uid, "s1", "s1-a0") == (AccessStatus.DENIED, None)
    assert 90_000 - TTL_SLACK_MS <= redis_client.pttl(deny_key(uid, "s1-a0")) <= 90_000


def test_an_ended_session_is_gone(store, redis_client, uid):
    """After end_session the session's other tokens are GONE and its keys are deleted."""
    open_session(store)
    assert store.end_session(uid, "s1")
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.GONE
    assert_session_deleted(redis_client, store)
    assert not store.end_session(uid, "s1")


def test_end_all_sessions_revokes_every_earlier_session_only(store, clock, uid):
    """Logout-all revokes every session created before it; a later login is unaffected."""
    for sid in ("s1", "s2", "s3"):
        open_session(store, sid=sid)
    clock.advance(1)
    store.end_all_sessions(uid)
    clock.advance(1)
    open_session(store, sid="after")
    for sid in ("s1", "s2", "s3"):
        assert store.check_access(uid, sid, f"{sid}-a0")[0] is AccessStatus.REVOKED
    assert store.check_access(uid, "after", "after-a0") == (AccessStatus.OK, USERNAME)
    assert rotate(store, "s1-r0", "x").status is RotationStatus.REVOKED


def test_logout_all_in_the_same_millisecond_as_a_login_still_revokes_it(store, uid):
    """A session opened in the very millisecond of a later logout-all is revoked too."""
    open_session(store, sid="racing")
    open_session(store, sid="kept")
    store.end_all_sessions(uid, keep_sid="kept")  # the clock has not moved
    assert store.check_access(uid, "racing", "racing-a0")[0] is AccessStatus.REVOKED
    assert store.check_access(uid, "kept", "kept-a0") == (AccessStatus.OK, USERNAME)


def test_password_change_keeps_one_session_and_swaps_the_hash(store, clock, uid):
    """keep_sid survives end_all_sessions; the new password hash is stored in the same step."""
    open_session(store, sid="mine")
    open_session(store, sid="other")
    clock.advance(1)
    store.end_all_sessions(uid, keep_sid="mine", new_password_hash="new-hash")
    assert store.check_access(uid, "mine", "mine-a0") == (AccessStatus.OK, USERNAME)
    assert store.check_access(uid, "other", "other-a0")[0] is AccessStatus.REVOKED
    assert store.get_user(uid).password_hash == "new-hash"
    assert rotate(store, "mine-r0", "r1", sid="mine").status is RotationStatus.ROTATED


def test_keep_sid_cannot_revive_an_already_revoked_session(store, clock, uid):
    """Revocation is terminal: a later end_all_sessions(keep_sid=<revoked sid>) keeps it dead."""
    open_session(store, sid="stolen")
    clock.advance(1)
    store.end_all_sessions(uid)
    clock.advance(1)
    store.end_all_sessions(uid, keep_sid="stolen", new_password_hash="new-hash")
    assert store.check_access(uid, "stolen", "stolen-a0")[0] is AccessStatus.REVOKED


def test_disabling_a_user_revokes_its_sessions_even_after_reenabling(store, clock, uid):
    """A disabled user's sessions are REVOKED, and stay so when the account is re-enabled."""
    open_session(store)
    clock.advance(1)
    store.set_disabled(uid, True)
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.REVOKED
    store.set_disabled(uid, False)
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.REVOKED
    assert rotate(store, "s1-r0", "r1").status is RotationStatus.REVOKED


def test_deleting_a_user_revokes_its_sessions(store, uid):
    """Deleting a user deletes the sessions it indexes: GONE for access and refresh."""
    open_session(store)
    store.delete_user(uid, USERNAME)
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.GONE
    assert rotate(store, "s1-r0", "r1").status is RotationStatus.GONE
    assert all(not store.redis.exists(key) for key in store.session_keys(uid, "s1"))


def test_end_all_sessions_costs_the_same_for_1_or_50_sessions(store, redis_client):
    """Logout-all sends a constant number of commands, never a keyspace scan: O(1)."""
    for uid, count in (("few", 1), ("many", 50)):
        store.create_user(uid, uid, "hash", ())
        for n in range(count):
            store.create_session(
                uid,
                f"s{n}",
                refresh_jti=f"r{n}",
                access_jti=f"a{n}",
                issued_at=0,
                expires_ms=store.clock() + SESSION_TTL_MS,
                device_id=None,
                user_agent=None,
                ip=None,
            )
    store.end_all_sessions("few")  # loads the script, so both measures below are warm
    sent = record_commands(redis_client)
    # Connection set-up commands are not the store's (a cluster may open one per node).
    store.end_all_sessions("few")
    store.end_all_sessions("many")
    sent.clear()
    store.end_all_sessions("few")
    for_one = sent.names()
    sent.clear()
    store.end_all_sessions("many")
    for_fifty = sent.names()
    assert for_one == for_fifty == ["EVALSHA"]
    assert store.check_access("many", "s49", "a49")[0] is AccessStatus.REVOKED


def test_multi_key_commands_stay_within_one_cluster_slot(store, redis_client, clock, uid):
    """Every script and multi-key command the store sends addresses a single cluster slot,
    but the login's two folded scripts, which are sent to one server only."""
    logins = LoginStore(store)
    one_server_only = {logins._begin.sha, logins._finish.sha}
    sent = record_commands(redis_client)
    open_session(store)
    rotate(store, "s1-r0", "r1")
    store.check_access(uid, "s1", "r1-access")
    reserve(store, USERNAME, "192.0.2.7", "attempt-1")
    settle(store, USERNAME, "192.0.2.7", "attempt-1")
    clock.advance(1)
    store.end_all_sessions(uid, keep_sid="s1", new_password_hash="h")
    store.end_session(uid, "s1", deny_jti="r1-access", deny_ttl_ms=1000)
    crossing = []
    for name, *args in sent.commands:
        if name == "EVALSHA" and args[0] in one_server_only:
            assert not isinstance(redis_client, RedisCluster)
            continue
        if name in ("EVALSHA", "EVAL"):
            keys = args[2 : 2 + int(args[1])]
        elif name in ALL_ARGS_ARE_KEYS:
            keys = args
        else:
            continue
        if len({key_slot(key.encode()) for key in keys}) > 1:
            crossing.append((name, keys))
    assert crossing == []


# -- listing ------------------------------------------------------------------------


def test_list_sessions_newest_first_with_their_metadata(store, clock, uid):
    """Live sessions are listed newest first with device, user agent, IP and times."""
    open_session(store, sid="old", device_id="d-old", user_agent="ua-old", ip="192.0.2.1")
    clock.advance(1000)
    new_expiry = open_session(store, sid="new", device_id="d-new", user_agent="ua-new", ip="::1")
    clock.advance(1000)
    rotate(store, "new-r0", "r1", sid="new")
    listed = store.list_sessions(uid, idle_ms=IDLE_MS)
    assert [s.session_id for s in listed] == ["new", "old"]
    newest = listed[0]
    assert (newest.device_id, newest.user_agent, newest.ip) == ("d-new", "ua-new", "::1")
    assert newest.created_ms == clock.now - 1000
    assert newest.last_refresh_ms == clock.now
    assert newest.expires_ms == new_expiry
    assert listed[1].device_id == "d-old"


def test_list_sessions_leaves_out_and_prunes_idle_sessions(store, clock, uid):
    """A session idle longer than the idle timeout is not listed as live (and is pruned)."""
    open_session(store, uid, "idle")
    clock.advance(IDLE_MS + 1)
    open_session(store, uid, "fresh")
    assert [s.session_id for s in store.list_sessions(uid, idle_ms=IDLE_MS)] == ["fresh"]
    assert store.redis.zscore(index_key(uid), "idle") is None


def test_list_sessions_prunes_revoked_and_deleted_entries(store, redis_client, clock, uid):
    """Index entries of logged-out-all or vanished sessions are dropped, with their keys."""
    open_session(store, sid="revoked")
    open_session(store, sid="vanished")
    redis_client.delete(*store.session_keys(uid, "vanished"))  # as if its TTL had run out
    clock.advance(1)
    store.end_all_sessions(uid)
    clock.advance(1)
    open_session(store, sid="live")
    assert [s.session_id for s in store.list_sessions(uid, idle_ms=IDLE_MS)] == ["live"]
    assert redis_client.zrange(index_key(uid), 0, -1) == ["live"]
    assert redis_client.exists(*store.session_keys(uid, "revoked")) == 0


def test_session_index_outlives_every_listed_session(store, redis_client, clock, uid):
    """A session with an earlier expiry (e.g. after lowering the TTL) keeps older ones listed."""
    long_expiry = open_session(store, sid="long")
    clock.advance(1)
    open_session(store, sid="short", expires_ms=clock.now + DAY_MS)
    assert redis_client.pttl(index_key(uid)) >= long_expiry - now_ms() - TTL_SLACK_MS


# -- login throttling ---------------------------------------------------------------


KNOWN_MS = 30 * DAY_MS


def reserve(
    store, name, network, attempt=None, *, account_limit=100, ip_limit=100, window_ms=60_000
):
    """Reserve a login attempt (a fresh id unless ``attempt`` is given); the ms to wait."""
    return (
        LoginStore(store)
        .begin(
            Attempt(name, network, attempt or uuid.uuid4().hex),
            Limits(account=account_limit, network=ip_limit, window_ms=window_ms),
            lookup=False,
        )
        .wait_ms
    )


def settle(store, name, network, attempt):
    """Settle ``attempt`` as a success."""
    LoginStore(store).settle(Attempt(name, network, attempt), known_ms=KNOWN_MS)


def throttle_key(name: str, suffix: str) -> str:
    return f"{PREFIX}:throttle:{{a:{name}}}:{suffix}"


def test_account_is_throttled_past_its_limit_for_about_the_window(store):
    """From networks it is not known on, up to the account limit attempts pass (one budget
    shared by them all); the next waits about the window. Other accounts are unaffected."""
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert reserve(store, USERNAME, ip, account_limit=3) == 0
    wait = reserve(store, USERNAME, "192.0.2.9", account_limit=3)
    assert 60_000 - TTL_SLACK_MS <= wait <= 60_000
    assert reserve(store, "bob", "192.0.2.9", account_limit=3) == 0


def test_ip_is_throttled_past_its_limit_whatever_the_account(store):
    """Attempts from one network across accounts throttle that network, not others."""
    for name in ("a", "b", "c"):
        assert reserve(store, name, "192.0.2.1", ip_limit=3, window_ms=30_000) == 0
    wait = reserve(store, "d", "192.0.2.1", ip_limit=3, window_ms=30_000)
    assert 30_000 - TTL_SLACK_MS <= wait <= 30_000
    assert reserve(store, "d", "192.0.2.2", ip_limit=3) == 0


def test_parallel_attempts_cannot_all_slip_under_the_limit(store):
    """The attempt is counted before the password check: 20 at once, only 3 pass."""
    with ThreadPoolExecutor(max_workers=20) as pool:
        waits = list(
            pool.map(lambda _: reserve(store, USERNAME, "192.0.2.1", account_limit=3), range(20))
        )
    assert waits.count(0) == 3


def test_first_attempt_starts_the_window_and_later_ones_do_not_extend_it(store, redis_client):
    """A bucket's TTL is set by its first attempt only (a fixed window)."""
    reserve(store, USERNAME, "192.0.2.1")
    account_key = throttle_key(USERNAME, "any")
    assert 60_000 - TTL_SLACK_MS <= redis_client.pttl(account_key) <= 60_000
    redis_client.pexpire(account_key, 10_000)  # as if 50 s had passed
    reserve(store, USERNAME, "192.0.2.1")
    assert redis_client.pttl(account_key) <= 10_000
    assert redis_client.zcard(account_key) == 2


def test_a_refused_attempt_is_not_stored(store, redis_client):
    """Hammering past the limit adds nothing: a bucket never holds more than its limit, and
    the attempts the account refused are not counted for the network either."""
    for _ in range(10):
        reserve(store, USERNAME, "192.0.2.1", account_limit=3, ip_limit=4)
    assert redis_client.zcard(throttle_key(USERNAME, "any")) == 3
    assert redis_client.zcard(f"{PREFIX}:throttle:net:192.0.2.1") == 3


def test_a_resent_reservation_or_settlement_counts_once(store, redis_client):
    """The same attempt id reserved twice (a command redis-py resent) is counted once and
    gets the same answer; settling twice changes nothing more."""
    assert reserve(store, USERNAME, "192.0.2.1", "same", account_limit=1, ip_limit=1) == 0
    assert reserve(store, USERNAME, "192.0.2.1", "same", account_limit=1, ip_limit=1) == 0
    assert redis_client.zcard(throttle_key(USERNAME, "any")) == 1
    assert redis_client.zcard(f"{PREFIX}:throttle:net:192.0.2.1") == 1
    assert reserve(store, USERNAME, "192.0.2.1", "other", account_limit=1, ip_limit=1) > 0
    for _ in range(2):
        settle(store, USERNAME, "192.0.2.1", "same")
    assert redis_client.zcard(f"{PREFIX}:throttle:net:192.0.2.1") == 0
    assert redis_client.zcard(throttle_key(USERNAME, "known")) == 1


def test_a_success_hands_back_its_attempt_and_makes_the_network_known(store, redis_client, clock):
    """A success returns its own attempt to both budgets; the account's shared budget keeps
    the other failures (no fresh guesses for strangers); the network is known until
    now + known_ms, and the known set expires with its latest entry."""
    attempts = [uuid.uuid4().hex for _ in range(3)]
    for attempt in attempts:
        reserve(store, USERNAME, "192.0.2.1", attempt)
    settle(store, USERNAME, "192.0.2.1", attempts[-1])
    assert redis_client.zrange(throttle_key(USERNAME, "any"), 0, -1) == sorted(attempts[:2])
    assert redis_client.zcard(f"{PREFIX}:throttle:net:192.0.2.1") == 2
    known = throttle_key(USERNAME, "known")
    assert redis_client.zscore(known, "192.0.2.1") == clock() + KNOWN_MS
    expected_ttl = clock() + KNOWN_MS - now_ms()
    assert expected_ttl - TTL_SLACK_MS <= redis_client.pttl(known) <= expected_ttl


def test_a_known_network_has_a_budget_of_its_own(store, redis_client, clock):
    """Strangers exhaust the shared budget; the network the owner logged in from still passes,
    within its own limit, until it is no longer known."""
    settle(store, USERNAME, "198.51.100.7", "owners-login")
    for _ in range(3):
        assert reserve(store, USERNAME, "192.0.2.1", account_limit=3) == 0
    assert reserve(store, USERNAME, "203.0.113.5", account_limit=3) > 0  # any other stranger
    for _ in range(3):
        assert reserve(store, USERNAME, "198.51.100.7", account_limit=3) == 0
    assert reserve(store, USERNAME, "198.51.100.7", account_limit=3) > 0  # bounded there too
    settle(store, USERNAME, "198.51.100.7", "owners-next-login")
    assert redis_client.exists(throttle_key(USERNAME, "net:198.51.100.7")) == 0  # forgiven
    clock.advance(KNOWN_MS + 1)
    assert reserve(store, USERNAME, "198.51.100.7", account_limit=3) > 0  # forgotten: shared


def test_an_account_remembers_at_most_20_networks_newest_first(store, redis_client, clock):
    """The known set is bounded: the oldest networks are forgotten first."""
    for n in range(25):
        clock.advance(1)
        settle(store, USERNAME, f"192.0.2.{n}", f"attempt-{n}")
    known = redis_client.zrange(throttle_key(USERNAME, "known"), 0, -1)
    assert known == [f"192.0.2.{n}" for n in range(5, 25)]


def test_deleting_a_user_forgets_its_known_networks(store, redis_client, uid):
    """A later owner of the same username does not inherit the old one's networks."""
    settle(store, USERNAME, "192.0.2.1", "attempt")
    store.delete_user(uid, USERNAME)
    assert redis_client.exists(throttle_key(USERNAME, "known")) == 0


# -- users --------------------------------------------------------------------------


def test_create_user_refuses_a_taken_username(store, uid):
    """A second user with the same username is refused and the first one is untouched."""
    assert not store.create_user("other-id", USERNAME, "other-hash", ())
    assert store.find_user_id(USERNAME) == uid
    assert store.get_user(uid).password_hash == "argon2-hash"
    assert store.get_user("other-id") is None


def test_users_are_found_by_id_name_and_index(store, redis_client, uid):
    """get_user, find_user_id and list_users (from the users index set) see stored users."""
    store.create_user("bob-id", "bob", "bob-hash", ("reader", "writer"))
    user = store.get_user(uid)
    assert (user.id, user.username, user.password_hash) == (uid, USERNAME, "argon2-hash")
    assert (user.roles, user.disabled) == (("admin",), False)
    assert store.find_user_id("bob") == "bob-id"
    assert store.find_user_id("nobody") is None
    assert store.get_user("nobody") is None
    assert redis_client.smembers(f"{PREFIX}:users") == {uid, "bob-id"}
    assert [u.username for u in store.list_users()] == [USERNAME, "bob"]
    assert store.list_users()[1].roles == ("reader", "writer")


def test_delete_user_removes_record_name_and_index_entry(store, redis_client, uid):
    """delete_user drops the user hash, the username mapping and the users-index entry."""
    open_session(store)
    store.delete_user(uid, USERNAME)
    assert store.get_user(uid) is None
    assert store.find_user_id(USERNAME) is None
    assert store.list_users() == []
    assert redis_client.exists(user_key(uid), index_key(uid)) == 0
    assert store.create_user("new-id", USERNAME, "h", ())


def test_a_creation_that_crashed_after_reserving_the_name_frees_it_later(
    store, redis_client, clock
):
    """Step one only (the name reserved as pending, then a crash): the name is not a user,
    is refused until the reservation's deadline, then free; and it never lives for ever."""
    assert store.reserve_username("bob", "crashed-id") is not None
    assert store.find_user_id("bob") is None
    assert 0 < redis_client.pttl(f"{PREFIX}:uname:bob") <= NAME_RESERVATION_MS
    assert not store.create_user("bob-id", "bob", "bob-hash", ())
    clock.advance(NAME_RESERVATION_MS + 1)
    assert store.create_user("bob-id", "bob", "bob-hash", ())
    assert store.find_user_id("bob") == "bob-id"
    assert redis_client.pttl(f"{PREFIX}:uname:bob") == -1  # permanent now
    assert store.get_user("crashed-id") is None


def test_a_user_whose_creation_crashed_before_its_name_was_confirmed_is_not_listed(
    store, clock, uid
):
    """Crash between writing the user and confirming the name: the half-made user is not
    listed nor found by name, and the name is free after the deadline."""
    store.reserve_username("bob", "half-id")
    store._write_new_user("half-id", "bob", "half-hash", ())
    assert store.find_user_id("bob") is None
    assert [u.id for u in store.list_users()] == [uid]
    clock.advance(NAME_RESERVATION_MS + 1)
    assert store.create_user("bob-id", "bob", "bob-hash", ())
    assert [u.id for u in store.list_users()] == [uid, "bob-id"]


def test_a_creation_slower_than_its_reservation_gives_the_name_up_cleanly(
    store, redis_client, clock, monkeypatch
):
    """The reservation expired and another creation took the name meanwhile: the slow one
    is refused and its user record removed, the fast one keeps the name."""
    other = Store(redis_client, prefix=PREFIX, clock=clock)
    write = store._write_new_user

    def slow_write(*args):
        clock.advance(NAME_RESERVATION_MS + 1)
        assert other.create_user("fast-id", "bob", "fast-hash", ())
        write(*args)

    monkeypatch.setattr(store, "_write_new_user", slow_write)
    assert not store.create_user("slow-id", "bob", "slow-hash", ())
    assert store.get_user("slow-id") is None
    assert store.find_user_id("bob") == "fast-id"
    assert "slow-id" not in redis_client.smembers(f"{PREFIX}:users")


def test_a_failed_user_write_releases_the_pending_name(store, redis_client, monkeypatch):
    """A Redis error while writing the user propagates and frees the name at once."""

    def broken_write(*args):
        raise redis.exceptions.ConnectionError("lost")

    monkeypatch.setattr(store, "_write_new_user", broken_write)
    with pytest.raises(redis.exceptions.ConnectionError):
        store.create_user("bob-id", "bob", "bob-hash", ())
    assert redis_client.exists(f"{PREFIX}:uname:bob") == 0
    monkeypatch.undo()
    assert store.create_user("bob-id", "bob", "bob-hash", ())


def page_names(store: Store) -> list[str]:
    return [u.username for u in store.user_page(prefix="", after=None, limit=10).users]


def test_a_user_is_listed_from_the_moment_its_name_is_confirmed(store, redis_client, uid):
    """The index entry is written with the user record, before the name is confirmed: the
    listing leaves the user out while its name is pending, and lists it as soon as the
    confirmation lands, with no further write (a timeout right after it loses nothing)."""
    pending = store.reserve_username("bob", "bob-id")
    store._write_new_user("bob-id", "bob", "bob-hash", ())
    assert page_names(store) == [USERNAME]
    assert redis_client.zscore(f"{PREFIX}:usernames", "bob bob-id") == 0  # kept meanwhile
    store._confirm_name(keys=[f"{PREFIX}:uname:bob"], args=[pending, "bob-id"])
    assert page_names(store) == [USERNAME, "bob"]


def test_the_listing_drops_the_entry_of_a_creation_that_lost_its_name(
    store, redis_client, clock, uid
):
    """A creation that crashed before confirming, whose name another account then took:
    only the owner of the name is listed, and the stale entry is removed."""
    store.reserve_username("bob", "half-id")
    store._write_new_user("half-id", "bob", "half-hash", ())
    clock.advance(NAME_RESERVATION_MS + 1)
    assert store.create_user("bob-id", "bob", "bob-hash", ())
    assert [u.id for u in store.user_page(prefix="b", after=None, limit=10).users] == ["bob-id"]
    assert redis_client.zscore(f"{PREFIX}:usernames", "bob half-id") is None


# -- real Redis only ----------------------------------------------------------------


@pytest.fixture
def real_store(real_redis: redis.Redis) -> Store:
    """A store over the real Redis with the wall clock, and the user alice."""
    store = Store(real_redis, prefix=PREFIX)
    assert store.create_user(UID, USERNAME, "argon2-hash", ("admin",))
    return store


def test_one_session_costs_at_most_1_kib(real_store, real_redis):
    """A session with the longest metadata we accept fits in 1 KiB (MEMORY USAGE)."""
    sid = secrets.token_urlsafe(16)
    real_store.create_session(
        UID,
        sid,
        refresh_jti=secrets.token_urlsafe(16),
        access_jti=secrets.token_urlsafe(16),
        issued_at=now_ms() // 1000,
        expires_ms=now_ms() + SESSION_TTL_MS,
        device_id="d" * 128,
        user_agent="u" * 256,
        ip="2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    )
    current = real_redis.hget(real_store.session_keys(UID, sid)[0], "jti")
    real_store.rotate(
        UID,
        sid,
        current,
        new_refresh_jti=secrets.token_urlsafe(16),
        new_access_jti=secrets.token_urlsafe(16),
        issued_at=now_ms() // 1000,
        grace_ms=GRACE_MS,
        idle_ms=IDLE_MS,
        unused_ms=UNUSED_MS,
    )  # a rotated session also stores the previous jti
    keys = real_store.session_keys(UID, sid)
    usage = sum(real_redis.memory_usage(key, samples=0) for key in keys)
    # Plus the session's share of the per-user index: what one more entry adds to it.
    index = index_key(UID)
    index_before = real_redis.memory_usage(index, samples=0)
    real_redis.zadd(index, {secrets.token_urlsafe(16): now_ms() + SESSION_TTL_MS})
    usage += real_redis.memory_usage(index, samples=0) - index_before
    assert usage <= 1024, usage


def test_access_check_and_rotation_are_one_round_trip_each(real_store, real_redis):
    """check_access and rotate each cost exactly one network round trip (scripts cached)."""
    sent = record_commands(real_redis)
    open_session(real_store)
    real_store.check_access(UID, "s1", "s1-a0")
    rotate(real_store, "s1-r0", "warm")  # EVALSHA may have fallen back to SCRIPT LOAD once
    sent.clear()
    assert real_store.check_access(UID, "s1", "warm-access") == (AccessStatus.OK, USERNAME)
    assert sent.round_trips == 1
    sent.clear()
    assert rotate(real_store, "warm", "r2").status is RotationStatus.ROTATED
    assert sent.round_trips == 1


def test_no_store_operation_scans_the_keyspace(real_store, real_redis_url):
    """A full flow never runs SCAN or KEYS, neither from the client nor inside a script."""
    with monitored(real_redis_url) as executed:
        store = real_store
        store.find_user_id(USERNAME)
        store.get_user(UID)
        store.list_users()
        store.create_user("bob-id", "bob", "h", ())
        open_session(store, sid="s1")
        open_session(store, sid="s2")
        rotate(store, "s1-r0", "r1")
        rotate(store, "s1-r0", "x")  # grace
        rotate(store, "forged", "x", sid="s2")  # reuse
        store.check_access(UID, "s1", "r1-access")
        store.end_session(UID, "s1", deny_jti="r1-access", deny_ttl_ms=1000)
        open_session(store, sid="s3")
        store.end_all_sessions(UID, keep_sid="s3", new_password_hash="h2")
        store.list_sessions(UID, idle_ms=IDLE_MS)
        reserve(store, USERNAME, "192.0.2.1", "attempt-1")
        settle(store, USERNAME, "192.0.2.1", "attempt-1")
        store.set_disabled(UID, True)
        store.delete_user("bob-id", "bob")
    words = {first_word(event) for event in executed}
    assert {"EVALSHA", "HSET", "ZADD"} <= words
    assert any(event["client_type"] == "lua" for event in executed)  # inside scripts too
    assert words & KEYSPACE_SCANS == set()


def test_logout_all_runs_the_same_server_commands_for_1_or_50_sessions(real_store, real_redis_url):
    """Inside Redis too (Lua commands included), logout-all does not grow with sessions."""
    for n in range(50):
        open_session(real_store, sid=f"s{n}")
    real_store.create_user("few", "few", "h", ())
    open_session(real_store, uid="few", sid="only")
    real_store.end_all_sessions("few")  # warm the script cache
    counts = []
    for uid in ("few", UID):
        with monitored(real_redis_url) as executed:
            real_store.end_all_sessions(uid)
        counts.append([first_word(event) for event in executed])
    assert counts[0] == counts[1]
    assert len(counts[0]) <= 3


def test_parallel_refreshes_of_one_token_leave_exactly_one_child(real_store, real_redis):
    """20 threads rotating the same jti at once: one ROTATED, 19 GRACE with that pair."""
    open_session(real_store)
    threads = 20
    barrier = threading.Barrier(threads)

    def refresh(n: int):
        barrier.wait(timeout=10)
        return rotate(real_store, "s1-r0", f"child-{n}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(refresh, range(threads)))
    rotated = [r for r in results if r.status is RotationStatus.ROTATED]
    assert len(rotated) == 1
    child = rotated[0].pair
    assert [r.status for r in results].count(RotationStatus.GRACE) == threads - 1
    assert all(r.pair == child for r in results)
    assert real_redis.hget(real_store.session_keys(UID, "s1")[0], "jti") == child.refresh_jti


# -- races and clocks -----------------------------------------------------------------


def test_rehash_never_overwrites_a_password_changed_meanwhile(store, uid):
    """The login rehash is compare-and-set: a reset that landed in between is kept."""
    store.create_user(uid, USERNAME, "old-hash", ())
    store.set_password_hash(uid, "reset-hash")  # an admin reset during the login
    assert store.rehash_password(uid, "old-hash", "upgraded-old-hash") is False
    assert store.get_user(uid).password_hash == "reset-hash"
    assert store.rehash_password(uid, "reset-hash", "upgraded-reset-hash") is True
    assert store.get_user(uid).password_hash == "upgraded-reset-hash"


def test_a_lagging_clock_cannot_move_the_not_before_backwards(store, clock, uid):
    """A revocation from a host whose clock lags does not revive what was already ended."""
    store.create_user(uid, USERNAME, "hash", ())
    open_session(store, uid, "s1")
    clock.advance(10)
    store.end_all_sessions(uid)  # logout-all at t+10
    clock.advance(-5_000)  # another host, 5 s behind, disables the account
    store.set_disabled(uid, True)
    store.set_disabled(uid, False)
    assert store.check_access(uid, "s1", "s1-a0")[0] is AccessStatus.REVOKED


def test_a_session_not_before_its_credentials_check_dies_with_a_reset_during_it(store, clock, uid):
    """auth_ms = when the password was checked: a reset landing during the check wins."""
    store.create_user(uid, USERNAME, "hash", ())
    checked_from = clock()
    clock.advance(50)  # argon2 running...
    store.end_all_sessions(uid, new_password_hash="new-hash")  # ...when the reset lands
    clock.advance(50)
    open_session(store, uid, "late", auth_ms=checked_from)
    assert store.check_access(uid, "late", "late-a0")[0] is AccessStatus.REVOKED


def test_a_revocation_in_the_millisecond_of_a_password_change_still_ends_the_kept_session(
    store, clock, uid
):
    """Logout-all, disable or reset right after a password change, in the same millisecond
    or from a host whose clock lags, ends the session that change kept."""
    for revoke in (
        lambda: store.end_all_sessions(uid),
        lambda: store.end_all_sessions(uid, new_password_hash="reset-hash"),
        lambda: store.set_disabled(uid, True),
    ):
        store.set_disabled(uid, False)
        clock.advance(1_000)
        open_session(store, sid="kept")
        clock.advance(1)
        store.end_all_sessions(uid, keep_sid="kept", new_password_hash="changed-hash")
        assert store.check_access(uid, "kept", "kept-a0")[0] is AccessStatus.OK
        revoke()  # the pinned clock has not moved
        assert store.check_access(uid, "kept", "kept-a0")[0] is AccessStatus.REVOKED
        open_session(store, sid="kept")
        clock.advance(1)
        store.end_all_sessions(uid, keep_sid="kept", new_password_hash="changed-hash")
        clock.advance(-5_000)  # the next revocation comes from a host 5 s behind
        revoke()
        assert store.check_access(uid, "kept", "kept-a0")[0] is AccessStatus.REVOKED
        clock.advance(5_000)


def test_password_change_is_compare_and_set_against_the_verified_hash(store, clock, uid):
    """A new password is written only over the hash that was verified; a resend is DONE."""
    open_session(store, sid="mine")
    clock.advance(1)
    store.set_password_hash(uid, "rehashed")  # a parallel login's upgrade: session lives
    status = store.end_all_sessions(
        uid, keep_sid="mine", new_password_hash="mine-hash", verified_hash="argon2-hash"
    )
    assert status is RevocationStatus.CHANGED
    assert store.get_user(uid).password_hash == "rehashed"
    assert store.check_access(uid, "mine", "mine-a0")[0] is AccessStatus.OK
    store.end_all_sessions(uid, new_password_hash="admin-hash")  # an admin reset
    clock.advance(1)
    status = store.end_all_sessions(
        uid, keep_sid="mine", new_password_hash="mine-hash", verified_hash="rehashed"
    )
    assert status is RevocationStatus.REVOKED
    assert store.get_user(uid).password_hash == "admin-hash"
    open_session(store, sid="next")
    clock.advance(1)
    for _ in range(2):  # the second call is what a resent command would do
        status = store.end_all_sessions(
            uid, keep_sid="next", new_password_hash="next-hash", verified_hash="admin-hash"
        )
        assert status is RevocationStatus.DONE
    assert store.get_user(uid).password_hash == "next-hash"
    assert store.check_access(uid, "next", "next-a0")[0] is AccessStatus.OK


def test_no_write_brings_a_deleted_user_back(store, redis_client, clock, uid):
    """After delete_user, every user write is refused and the user key never reappears."""
    open_session(store, sid="s1")
    store.delete_user(uid, USERNAME)
    assert store.end_all_sessions(uid) is RevocationStatus.GONE
    assert store.end_all_sessions(uid, disable=True) is RevocationStatus.GONE
    status = store.end_all_sessions(
        uid, keep_sid="s1", new_password_hash="new", verified_hash="argon2-hash"
    )
    assert status is RevocationStatus.GONE
    assert store.set_disabled(uid, False) is False
    assert store.set_disabled(uid, True) is False
    assert store.set_password_hash(uid, "new") is False
    assert store.rehash_password(uid, "argon2-hash", "new") is False
    assert redis_client.exists(user_key(uid)) == 0
    assert store.get_user(uid) is None
