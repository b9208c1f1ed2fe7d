"""Many hosts: two `authsvc serve` instances (2 workers each) on one Redis.

Each instance has its own instance folder and port, and nothing but Redis in common:
the key ring lives in Redis (AUTHSVC_JWT_KEY_STORE=redis), so no shared filesystem.
Each test runs twice: on one Redis and on a 3-master Redis Cluster (the ``shared_redis``
fixture). The tests of one backend share its two hosts (each boot is two `authsvc serve`,
a key generation and an account): neither test needs a fresh ring or account, the
rotation test takes the ring's current kid as the old one.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import redis
import requests

from authsvc.keys import new_key_encryption_key
from tests.test_e2e import (
    API,
    AUTHSVC,
    E2E_USER,
    HTTP_TIMEOUT,
    ServeProcess,
    add_user_with_cli,
    error_of,
    serve_env,
)

pytestmark = pytest.mark.e2e

PROPAGATION_DELAY = 2  # seconds between `keys rotate` and the new key's first signature
TRAFFIC_SECONDS = 6.0
ROTATE_AFTER = 1.0
TRAFFIC_THREADS = 4  # below the per-account in-flight login budget (5)
# Each thread rests this long after each round (3 calls), some 100 calls a second in all:
# without it the threads take every core for the 6 s, starving the tests beside them.
ROUND_PAUSE = 0.1


@pytest.fixture(scope="module", params=["redis", "cluster"])
def shared_redis(request: pytest.FixtureRequest) -> tuple[str, Callable[[], None]]:
    """The Redis both hosts share, and how to empty it: the test Redis or the test Cluster."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return cluster.url, cluster.flush
    url = request.getfixturevalue("real_redis_url")

    def flush() -> None:
        with redis.Redis.from_url(url) as client:
            client.flushdb()

    return url, flush


class Host:
    """One `authsvc serve` instance, talked to over new connections each time."""

    def __init__(self, name: str, serve: ServeProcess) -> None:
        self.name = name
        self.serve = serve

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(
            method, self.serve.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kw
        )

    def login(self) -> dict[str, Any]:
        response = self.call(
            "POST", f"{API}/login", json={"username": E2E_USER[0], "password": E2E_USER[1]}
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def me(self, access_token: str) -> Any:
        return self.call("GET", f"{API}/me", token=access_token)

    def refresh(self, refresh_token: str) -> Any:
        return self.call("GET", f"{API}/refresh", token=refresh_token)


def authsvc_cli(env: dict[str, str], *args: str) -> str:
    """Run `authsvc ARGS` with ``env``; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run(
        [str(AUTHSVC), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def hosts(
    shared_redis: tuple[str, Callable[[], None]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Host, Host, dict[str, str]]]:
    """Hosts A and B on the flushed shared Redis, ES256 keys in the Redis key ring."""
    shared_redis_url, flush = shared_redis
    tmp_path = tmp_path_factory.mktemp("hosts")
    flush()
    env = serve_env(
        REDIS_URL=shared_redis_url,
        JWT_ALGORITHM="ES256",
        JWT_KEY_STORE="redis",
        KEY_ENCRYPTION_KEY=new_key_encryption_key(),
        KEY_PROPAGATION_DELAY=PROPAGATION_DELAY,
        # No grace window: a replayed parent whose child was used is reuse at once
        # (within the window it would get the issued pair back, by design).
        REFRESH_GRACE_SECONDS=0,
    )
    authsvc_cli(env, "keys", "generate")
    add_user_with_cli(env, *E2E_USER)
    serves = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        serves.append(ServeProcess({**env, "AUTHSVC_INSTANCE_PATH": str(folder)}, folder))
    try:
        for serve in serves:
            serve.wait_ready()
        yield Host("A", serves[0]), Host("B", serves[1]), env
    finally:
        survivors = [p for serve in serves for p in serve.stop()]
        flush()
    assert not survivors, f"processes left after stopping authsvc serve: {survivors}"


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_tokens_revocations_and_reuse_cross_hosts_at_once(hosts):
    """A token from A works on B; logout and logout-all on A are refused on B at once; a
    refresh rotated on A whose child was used there is reuse when replayed on B."""
    a, b, _ = hosts
    pair = a.login()
    assert b.me(pair["access_token"]).status_code == 200

    assert a.call("POST", f"{API}/logout", token=pair["access_token"]).status_code == 200
    assert error_of(b.me(pair["access_token"])) == (401, "token_revoked")
    assert error_of(b.refresh(pair["refresh_token"])) == (401, "session_revoked")

    phone, laptop = a.login(), b.login()
    assert a.call("POST", f"{API}/logout-all", token=phone["access_token"]).status_code == 200
    for pair in (phone, laptop):
        assert error_of(b.me(pair["access_token"])) == (401, "session_revoked")
        assert error_of(b.refresh(pair["refresh_token"])) == (401, "session_revoked")

    parent = a.login()
    child = a.refresh(parent["refresh_token"])
    assert child.status_code == 200, child.text
    assert a.me(child.json()["data"]["access_token"]).status_code == 200  # the child is used
    assert error_of(b.refresh(parent["refresh_token"])) == (401, "refresh_reused")
    assert error_of(a.me(child.json()["data"]["access_token"]))[0] == 401  # session ended


def test_a_key_rotation_under_traffic_to_both_hosts_refuses_no_valid_token(hosts):
    """`authsvc keys rotate` (delay 2 s) while four threads log in, refresh and call /me
    against both hosts for 6 s: not one refusal; tokens of both kids were seen in flight,
    and afterwards both hosts sign with the new kid."""
    a, b, env = hosts
    old_kid = kid_of(a.login()["access_token"])
    failures: list[tuple[str, str, int, str]] = []
    kids_seen: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def check(host: Host, what: str, response: Any) -> dict[str, Any] | None:
        if response.status_code == 200:
            return response.json()["data"]
        with lock:
            failures.append((host.name, what, response.status_code, response.text[:200]))
        return None

    def traffic(worker: int) -> int:
        first, second = (a, b) if worker % 2 else (b, a)
        rounds = 0
        while not stop.is_set():
            pair = check(
                first,
                "login",
                first.call(
                    "POST", f"{API}/login", json={"username": E2E_USER[0], "password": E2E_USER[1]}
                ),
            )
            for _ in range(5):
                if pair is None or stop.is_set():
                    break
                with lock:
                    kids_seen.add(kid_of(pair["access_token"]))
                check(second, "me", second.me(pair["access_token"]))
                check(first, "me", first.me(pair["access_token"]))
                pair = check(second, "refresh", second.refresh(pair["refresh_token"]))
                first, second = second, first
                rounds += 1
                stop.wait(ROUND_PAUSE)
        return rounds

    with ThreadPoolExecutor(TRAFFIC_THREADS) as pool:
        running = [pool.submit(traffic, n) for n in range(TRAFFIC_THREADS)]
        time.sleep(ROTATE_AFTER)
        rotated = authsvc_cli(env, "keys", "rotate")
        time.sleep(TRAFFIC_SECONDS - ROTATE_AFTER)
        stop.set()
        rounds = sum(future.result() for future in running)

    new_kid = rotated.split()[1].rstrip(";")
    assert rotated.startswith(f"published {new_kid}; it signs from ")
    assert failures == []
    assert rounds > 0
    assert kids_seen == {old_kid, new_kid}
    for host in (a, b):
        assert kid_of(host.login()["access_token"]) == new_kid
    jwks = requests.get(b.serve.url + "/.well-known/jwks.json", timeout=HTTP_TIMEOUT).json()
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, new_kid}
