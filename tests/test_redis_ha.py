"""authsvc on a real Redis Cluster and behind Redis Sentinel, with failovers.

The cluster is the session's (conftest ``redis_cluster``: 3 masters, 3 replicas, AOF
with fsync always, node timeout 1 s). The store and API tests run on it too, through
the ``redis_client`` fixture's ``[cluster]`` parameter. Each Sentinel test starts its
own master, replica and sentinel (tests/cluster.py) and stops them by PID.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from authsvc import create_app
from authsvc.config import Settings
from authsvc.factory import make_redis
from tests.cluster import Cluster, SentinelGroup, wait_until
from tests.conftest import PASSWORD, TEST_SECRET, USERNAME, bearer, login_pair
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, add_user_with_cli, serve_env
from tests.test_store import record_commands

# Hang guard for the failover test, far above what it takes (a few seconds).
FAILOVER_DEADLINE_S = 30.0
LOAD_THREADS = 3
SOCKET_TIMEOUT_S = "0.5"


@pytest.fixture
def cluster(redis_cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster, flushed before and after."""
    redis_cluster.flush()
    yield redis_cluster
    redis_cluster.flush()


def test_serve_on_a_cluster_login_me_refresh_logout_all(cluster, tmp_path):
    """`authsvc serve` (2 workers) with a redis+cluster:// URL: the whole token life."""
    env = serve_env(REDIS_URL=cluster.url, JWT_SECRET=TEST_SECRET)
    add_user_with_cli(env, USERNAME, PASSWORD)
    serve = ServeProcess(env, tmp_path)
    try:
        serve.wait_ready()
        assert requests.get(f"{serve.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200

        def call(method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
            headers = bearer(token) if token else {}
            return requests.request(
                method, serve.url + API + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs
            )

        body = {"username": USERNAME, "password": PASSWORD}
        first = call("POST", "/login", json=body).json()["data"]
        second = call("POST", "/login", json=body).json()["data"]
        me = call("GET", "/me", first["access_token"])
        assert me.status_code == 200
        assert me.json()["data"]["username"] == USERNAME
        rotated = call("GET", "/refresh", first["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        pair = rotated.json()["data"]
        assert call("GET", "/me", pair["access_token"]).status_code == 200
        assert call("POST", "/logout-all", pair["access_token"]).status_code == 200
        for token in (pair["access_token"], second["access_token"]):
            assert call("GET", "/me", token).json()["data"]["error"] == "session_revoked"
        assert call("GET", "/refresh", second["refresh_token"]).status_code == 401
        assert call("POST", "/login", json=body).status_code == 200
    finally:
        survivors = serve.stop()
    assert not survivors


@dataclass
class Device:
    """One load thread's session and everything it was answered."""

    pair: dict[str, str]
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[tuple[str, int, Any]] = field(default_factory=list)
    last_ok: float = 0.0
    ok_rounds: int = 0


def _drive(app: Flask, device: Device, revoked: list[str], stop: threading.Event) -> None:
    """/me, refresh and a revoked token in a loop: 200 or 503 only; revoked never 200."""
    client = app.test_client()
    while not stop.is_set():
        me = client.get(f"{API}/me", headers=bearer(device.pair["access_token"]))
        refresh = client.get(f"{API}/refresh", headers=bearer(device.pair["refresh_token"]))
        for name, response in (("me", me), ("refresh", refresh)):
            device.statuses[response.status_code] += 1
            if response.status_code not in (200, 503):
                device.unexpected.append((name, response.status_code, response.get_json()))
        if refresh.status_code == 200:
            device.pair = refresh.get_json()["data"]
        if me.status_code == 200 and refresh.status_code == 200:
            device.last_ok = time.monotonic()
            device.ok_rounds += 1
        for token in revoked:
            answer = client.get(f"{API}/me", headers=bearer(token))
            if answer.status_code not in (401, 503):
                device.unexpected.append(("revoked", answer.status_code, answer.get_json()))
        time.sleep(0.01)


@dataclass
class Scenario:
    """An app on the deployment under test, with live devices and revoked tokens."""

    app: Flask
    devices: list[Device]
    revoked: list[str]  # access tokens revoked before the failover
    cut_off_refresh: str  # a refresh token whose session logout-all ended
    uid: str

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()


def _arrange(redis_url: str) -> Scenario:
    """The app on ``redis_url`` with alice, her revoked pairs and LOAD_THREADS devices."""
    app = create_app(
        {
            "JWT_SECRET": TEST_SECRET,
            "REDIS_URL": redis_url,
            "REDIS_SOCKET_TIMEOUT": SOCKET_TIMEOUT_S,
            # The default grace window, not 0: on a loaded machine a refresh can run in
            # Redis and still time out (or its master die before answering); the device
            # then presents its previous token again, which must converge, not be reuse.
        }
    )
    service = app.extensions["authsvc"]
    service.add_user(USERNAME, PASSWORD)
    client = app.test_client()
    logged_out = login_pair(client)
    response = client.post(f"{API}/logout", headers=bearer(logged_out["access_token"]))
    assert response.status_code == 200
    cut_off = login_pair(client)
    response = client.post(f"{API}/logout-all", headers=bearer(cut_off["access_token"]))
    assert response.status_code == 200
    return Scenario(
        app=app,
        devices=[Device(login_pair(client)) for _ in range(LOAD_THREADS)],
        revoked=[logged_out["access_token"], cut_off["access_token"]],
        cut_off_refresh=cut_off["refresh_token"],
        uid=service.store.find_user_id(USERNAME),
    )


def _fail_over_under_load(
    scenario: Scenario, kill: Callable[[], None], promoted: Callable[[], bool]
) -> None:
    """Drive the devices, ``kill`` the master, wait for 503s, the promotion, then 200s."""
    devices = scenario.devices
    stop = threading.Event()
    threads = [
        threading.Thread(target=_drive, args=(scenario.app, d, scenario.revoked, stop), daemon=True)
        for d in devices
    ]
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: all(d.ok_rounds >= 5 for d in devices), "load running", 10)
        kill()
        killed_at = time.monotonic()
        wait_until(lambda: all(d.statuses[503] for d in devices), "503s with no master", 10)
        wait_until(promoted, "the replica promoted", 15)
        wait_until(
            lambda: all(d.last_ok > killed_at + 0.5 for d in devices),
            "every device served again",
            max(deadline - time.monotonic(), 1),
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def _assert_nothing_lost_nothing_revived(scenario: Scenario) -> None:
    """Only 200/503 under load; every device's session lives; revoked tokens stay dead."""
    client = scenario.client
    for device in scenario.devices:
        assert device.unexpected == []
        assert device.statuses[503] > 0
        me = client.get(f"{API}/me", headers=bearer(device.pair["access_token"]))
        assert me.status_code == 200, me.get_json()
        refresh = client.get(f"{API}/refresh", headers=bearer(device.pair["refresh_token"]))
        assert refresh.status_code == 200, refresh.get_json()
    for token in scenario.revoked:
        assert client.get(f"{API}/me", headers=bearer(token)).status_code == 401
    cut_off = client.get(f"{API}/refresh", headers=bearer(scenario.cut_off_refresh))
    assert cut_off.status_code == 401


def test_cluster_master_failover_answers_503_then_recovers_losing_nothing(cluster: Cluster):
    """SIGKILL the master of the user's slot under load: 503 (never 500, never a wrong
    200) until its replica is promoted, then 200 again by itself; every live session
    survives and no revoked token is accepted."""
    scenario = _arrange(cluster.url)
    master = cluster.master_of(f"authsvc:{{u:{scenario.uid}}}:user")
    replica = cluster.replica_of(master)
    with master.admin() as admin:  # what the test set up has reached the replica
        assert admin.execute_command("WAIT", 1, 5000) == 1
    try:
        _fail_over_under_load(scenario, master.kill, lambda: replica.role() == "master")
    finally:
        master.start()  # rejoins as a replica of the promoted node
        cluster.wait_healthy()
    _assert_nothing_lost_nothing_revived(scenario)


@pytest.fixture
def sentinel_group(tmp_path) -> Iterator[SentinelGroup]:
    """A master, a replica and one sentinel of our own, stopped by PID afterwards."""
    group = SentinelGroup(tmp_path)
    group.start()
    try:
        yield group
    finally:
        group.stop()


def test_sentinel_failover_answers_503_then_follows_the_new_master(sentinel_group):
    """redis+sentinel://: SIGKILL the master under load; 503 only until the sentinel
    promotes the replica, then the app reconnects there by itself, losing nothing."""
    scenario = _arrange(sentinel_group.url)
    with sentinel_group.master.admin() as admin:
        assert admin.execute_command("WAIT", 1, 5000) == 1
    replica = sentinel_group.replica

    def promoted() -> bool:
        return sentinel_group.current_master_port() == replica.port and replica.role() == "master"

    _fail_over_under_load(scenario, sentinel_group.master.kill, promoted)
    _assert_nothing_lost_nothing_revived(scenario)


def test_the_cluster_client_never_resends_a_command_that_timed_out(cluster):
    """A write that timed out may have run: the cluster client must not send it again
    (redis-py's RedisCluster would, on a refreshed slot map); a refused connection it
    retries once, like the single-server client."""
    client = make_redis(Settings(redis_url=cluster.url, redis_socket_timeout=0.5))
    key = "authsvc:{u:timeout}:n"
    master = cluster.master_of(key)
    client.set(key, "0")
    sent = record_commands(client)
    with master.admin() as admin:
        admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                client.incr(key)
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    assert sent.names().count("INCRBY") == 1
    client.close()


def test_the_sentinel_client_drops_a_connection_whose_reply_timed_out(sentinel_group):
    """A command that timed out leaves its reply on the wire: the connection must be
    closed, not handed back to the pool, or the next command reads that reply as its own
    (redis-py's Sentinel connections keep it by default: redis/redis-py#4292)."""
    client = make_redis(Settings(redis_url=sentinel_group.url, redis_socket_timeout=0.5))
    client.set("authsvc:probe", "mine")
    with sentinel_group.master.admin() as admin:
        admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                client.incr("authsvc:counter")
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
    # The pool hands out its most recent connection first: the one that timed out.
    assert client.get("authsvc:probe") == "mine"
    assert client.incr("authsvc:other") == 1
    client.close()


def test_sentinel_url_passwords_keep_their_plus_on_real_servers(tmp_path):
    """Data nodes requiring ``c+d`` and a sentinel requiring ``a+b``, both written raw in
    the redis+sentinel:// URL: the app finds the master through the sentinel and serves a
    login. Either password read with + as a space would be refused by its server."""
    group = SentinelGroup(tmp_path, password="c+d", sentinel_password="a+b")
    group.start()
    try:
        app = create_app({"JWT_SECRET": TEST_SECRET, "REDIS_URL": group.url})
        app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
        client = app.test_client()
        pair = login_pair(client)
        assert client.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code == 200
        with group.master.admin() as master:  # the data really is on the protected master
            assert master.dbsize() > 0
    finally:
        group.stop()
