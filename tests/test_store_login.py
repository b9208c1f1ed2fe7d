"""A login's Redis work (authsvc/store_login.py): reserve and look up, then settle and
open the session; refusals charged nowhere; attempts handed back after an outage.

On fakeredis, a real Redis and a real Redis Cluster (conftest's ``redis_client``): the
Cluster runs the per-slot path, the others the two folded scripts.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from authsvc.store import Store
from authsvc.store.login import Attempt, Limits, LoginStore
from tests.test_store import PREFIX, SESSION_TTL_MS, Clock, throttle_key

pytestmark = pytest.mark.cluster

NETWORK = "192.0.2.1"
KNOWN_MS = 30 * 24 * 3600 * 1000
WINDOW_MS = 60_000


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    """A store on a hand-moved clock with the user alice (hash ``old-hash``, role admin)."""
    store = Store(redis_client, prefix=PREFIX, clock=Clock())
    assert store.create_user("alice-id", "alice", "old-hash", ("admin",))
    return store


@pytest.fixture
def logins(store: Store) -> LoginStore:
    """The login side of ``store``."""
    return LoginStore(store)


def attempt(name: str = "alice", network: str = NETWORK) -> Attempt:
    return Attempt(name, network, uuid.uuid4().hex)


def limits(account: int = 100, network: int = 100) -> Limits:
    return Limits(account=account, network=network, window_ms=WINDOW_MS)


def network_key(network: str = NETWORK) -> str:
    return f"{PREFIX}:throttle:net:{network}"


def finish(logins: LoginStore, tried: Attempt, *, new_hash: str | None = None) -> None:
    now = logins.store.clock()
    logins.finish(
        "alice-id",
        "s1",
        attempt=tried,
        known_ms=KNOWN_MS,
        verified_hash="old-hash",
        new_hash=new_hash,
        refresh_jti="r0",
        access_jti="a0",
        issued_at=now // 1000,
        expires_ms=now + SESSION_TTL_MS,
        device_id=None,
        user_agent=None,
        ip=NETWORK,
        client_id="web",
        scope="profile",
        access_ttl=900,
    )


def test_begin_counts_the_attempt_and_finds_the_user(logins, redis_client):
    """Before the password check: the attempt is counted in both budgets, and the user
    comes back with its hash, roles and state."""
    begun = logins.begin(attempt(), limits())
    assert begun.wait_ms == 0
    user = begun.user
    assert (user.id, user.username, user.password_hash) == ("alice-id", "alice", "old-hash")
    assert (user.roles, user.disabled) == (("admin",), False)
    assert redis_client.zcard(throttle_key("alice", "any")) == 1
    assert redis_client.zcard(network_key()) == 1


def test_begin_finds_no_user_for_an_unknown_or_half_made_name(logins, store):
    """An unknown name, and a name still pending (a creation under way), find no user;
    the attempt is counted all the same (a guess at an unknown name is a guess)."""
    assert logins.begin(attempt("nobody"), limits()).user is None
    store.reserve_username("bob", "bob-id")
    store._write_new_user("bob-id", "bob", "bob-hash", ())
    begun = logins.begin(attempt("bob"), limits())
    assert (begun.wait_ms, begun.user) == (0, None)


def test_finish_settles_the_attempt_and_opens_the_session(logins, store, redis_client):
    """After the right password: the attempt leaves both budgets, the network is known, and
    the session is recorded with its client, scope and lifetime."""
    tried = attempt()
    logins.begin(attempt(), limits())  # an earlier failure from the same network
    logins.begin(tried, limits())
    finish(logins, tried)
    assert redis_client.zcard(network_key()) == 1  # the earlier failure only
    assert redis_client.zcard(throttle_key("alice", "any")) == 1
    assert redis_client.zscore(throttle_key("alice", "known"), NETWORK) is not None
    session = redis_client.hgetall(store.session_keys("alice-id", "s1")[0])
    assert (session["jti"], session["cid"], session["scope"], session["attl"]) == (
        "r0",
        "web",
        "profile",
        "900",
    )
    assert store.get_user("alice-id").password_hash == "old-hash"  # no upgrade asked


def test_finish_upgrades_the_hash_unless_it_changed_meanwhile(logins, store):
    """The hash upgrade is a compare-and-set against the verified hash."""
    tried = attempt()
    logins.begin(tried, limits())
    finish(logins, tried, new_hash="new-hash")
    assert store.get_user("alice-id").password_hash == "new-hash"
    store.set_password_hash("alice-id", "reset-by-admin")
    finish(logins, tried, new_hash="stale-upgrade")
    assert store.get_user("alice-id").password_hash == "reset-by-admin"


def test_an_attempt_the_network_refuses_is_not_charged_to_the_account(logins, redis_client):
    """The client network's budget is spent (on other accounts): alice's attempt from it is
    refused, and her account's budgets are untouched."""
    for name in ("bob", "carol"):
        assert logins.begin(attempt(name), limits(network=2), lookup=False).wait_ms == 0
    begun = logins.begin(attempt(), limits(network=2))
    assert 0 < begun.wait_ms <= WINDOW_MS
    assert begun.user is None
    assert redis_client.zcard(throttle_key("alice", "any")) == 0
    assert redis_client.zcard(network_key()) == 2


def test_an_attempt_the_account_refuses_is_not_charged_to_the_network(logins, redis_client):
    """The account's shared budget is spent (from other networks): the attempt from a new
    network is refused, and that network's budget is untouched."""
    for network in ("198.51.100.1", "198.51.100.2"):
        assert logins.begin(attempt(network=network), limits(account=2)).wait_ms == 0
    begun = logins.begin(attempt(), limits(account=2))
    assert 0 < begun.wait_ms <= WINDOW_MS
    assert redis_client.exists(network_key()) == 0
    assert redis_client.zcard(throttle_key("alice", "any")) == 2


def test_a_resent_reservation_counts_once(logins, redis_client):
    """The same attempt reserved twice (a command resent after a dropped connection) is
    counted once and passes both times, even at a budget of one."""
    tried = attempt()
    assert logins.begin(tried, limits(account=1, network=1)).wait_ms == 0
    assert logins.begin(tried, limits(account=1, network=1)).wait_ms == 0
    assert redis_client.zcard(throttle_key("alice", "any")) == 1
    assert redis_client.zcard(network_key()) == 1


def test_an_attempt_handed_back_leaves_every_budget_with_the_next_login(logins, redis_client):
    """An attempt an outage cut off is handed back by the next login, before that login's
    own reservation: at a budget of one, the next login passes."""
    cut_off = attempt()
    assert logins.begin(cut_off, limits(account=1)).wait_ms == 0
    logins.hand_back_later(cut_off, window_ms=WINDOW_MS)
    assert logins.pending_returns() == 1
    assert logins.begin(attempt(), limits(account=1)).wait_ms == 0
    assert logins.pending_returns() == 0
    assert redis_client.zcard(throttle_key("alice", "any")) == 1
    assert redis_client.zcard(network_key()) == 1


def test_a_hand_back_that_fails_is_kept_for_the_login_after(logins, monkeypatch):
    """Redis failing while handing back: the login fails (503) and the attempts wait for
    the next one."""
    logins.hand_back_later(attempt(), window_ms=WINDOW_MS)

    def broken_execute(*args, **kwargs):
        raise redis.exceptions.ConnectionError("down")

    pipeline = type(logins.redis.pipeline())
    monkeypatch.setattr(pipeline, "execute", broken_execute)
    with pytest.raises(redis.exceptions.ConnectionError):
        logins.begin(attempt(), limits())
    assert logins.pending_returns() == 1
    monkeypatch.undo()
    assert logins.begin(attempt(), limits()).wait_ms == 0
    assert logins.pending_returns() == 0
