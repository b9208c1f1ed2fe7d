"""End to end: `authsvc serve` (gunicorn, 2 workers) keeps serving when its workers restart
into a damaged key ring, or while Redis is unreachable.

Workers are killed with SIGKILL by PID (as the OOM killer or gunicorn's timeout would);
gunicorn's master forks new ones, which boot with the host's last good keys (the
snapshot in its instance folder) instead of failing to boot and taking the master
down. A host that never had good keys refuses to start with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import psutil
import pytest
import redis
import requests

from authsvc.keys import new_key_encryption_key
from authsvc.store.keyring import KeyRecords
from tests.test_e2e import (
    API,
    AUTHSVC,
    E2E_USER,
    HTTP_TIMEOUT,
    ServeProcess,
    add_user_with_cli,
    serve_env,
)
from tests.test_e2e_hosts import authsvc_cli
from tests.test_outage import RedisServer
from tests.workers import free_port

pytestmark = pytest.mark.e2e

WAIT = 30.0  # the longest any condition below may take to come true on a busy machine
FROM_SNAPSHOT = "serving the last good keys of this host's snapshot"


def ring_env(redis_url: str, instance: Path) -> dict[str, str]:
    return serve_env(
        REDIS_URL=redis_url,
        JWT_ALGORITHM="ES256",
        JWT_KEY_STORE="redis",
        KEY_ENCRYPTION_KEY=new_key_encryption_key(),
        INSTANCE_PATH=instance,
    )


def wait_until(condition: Callable[[], Any], what: str, serve: ServeProcess) -> Any:
    """Poll ``condition`` until it is truthy; fail with the server's log after WAIT s."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if serve.process.poll() is not None:
            pytest.fail(f"{what}: authsvc serve exited\n{serve.stderr()[-4000:]}")
        try:
            value = condition()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what}: not after {WAIT} s\n{serve.stderr()[-4000:]}")


def workers(serve: ServeProcess) -> set[int]:
    return {child.pid for child in psutil.Process(serve.process.pid).children()}


def kill_every_worker(serve: ServeProcess) -> None:
    """SIGKILL each worker by PID; wait for the master to have forked as many new ones,
    each booted with the snapshot's keys (its log line)."""
    old = workers(serve)
    assert len(old) == serve.workers
    booted = serve.stderr().count(FROM_SNAPSHOT)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: (new := workers(serve)) and not new & old and len(new) == serve.workers,
        "new workers forked",
        serve,
    )
    wait_until(
        lambda: serve.stderr().count(FROM_SNAPSHOT) >= booted + serve.workers,
        "new workers booted from the snapshot",
        serve,
    )
    assert serve.process.poll() is None, serve.stderr()  # the master lives


def call(serve: ServeProcess, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, serve.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kw)


def login(serve: ServeProcess) -> Any:
    credentials = {"username": E2E_USER[0], "password": E2E_USER[1]}
    return call(serve, "POST", f"{API}/login", json=credentials)


def keys_state(serve: ServeProcess, request_id: str = "") -> dict[str, Any] | None:
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = requests.get(f"{serve.url}/readyz", headers=headers, timeout=HTTP_TIMEOUT)
    return response.json()["data"].get("keys") if response.status_code == 200 else None


def every_worker_says(serve: ServeProcess, status: str) -> Callable[[], bool]:
    """A condition for :func:`wait_until`: each worker's last keys state is ``status``.

    Ten /readyz on new connections a round; which worker answered each comes from its
    request log line (pid, request id). A worker no request reached has said nothing:
    the kernel may hand one worker every connection of a round.
    """
    last: dict[int, str | None] = {}

    def condition() -> bool:
        answers = {}
        for _ in range(10):
            request_id = uuid.uuid4().hex
            answers[request_id] = (keys_state(serve, request_id) or {}).get("status")
        for line in serve.stderr().splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:  # not a JSON line, or one a worker is still writing
                continue
            if entry.get("logger") == "authsvc.request" and entry.get("request_id") in answers:
                last[entry["pid"]] = answers[entry["request_id"]]
        return all(last.get(pid) == status for pid in workers(serve))

    return condition


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start `authsvc serve` with an env; stopped by PID at the end, nothing may survive."""
    started: list[ServeProcess] = []

    def start(env: dict[str, str]) -> ServeProcess:
        serve = ServeProcess(env, tmp_path)
        started.append(serve)
        serve.wait_ready()
        return serve

    yield start
    survivors = [p for serve in started for p in serve.stop()]
    assert not survivors, f"processes left after stopping authsvc serve: {survivors}"


@pytest.fixture(params=["redis", "cluster"])
def ring_redis(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """The Redis the host uses, flushed, and a client of it: one server or the Cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, request.getfixturevalue(
            "cluster_redis"
        )
    return request.getfixturevalue("real_redis_url"), request.getfixturevalue("real_redis")


def test_workers_killed_while_the_ring_is_damaged_restart_and_keep_serving(
    ring_redis, tmp_path, serving
):
    """The reported case: a record failing authentication lands in the ring (HSET bogus,
    INCR), then every worker is killed. The new workers boot with the last good keys:
    old tokens verify, logins sign under the same kid, /readyz says stale; once the
    ring is repaired every worker says ok again by itself. On one Redis and on the
    Cluster (the ring's keys in the {keyring} slot)."""
    real_redis_url, real_redis = ring_redis
    env = ring_env(real_redis_url, tmp_path / "instance")
    authsvc_cli(env, "keys", "generate")
    add_user_with_cli(env, *E2E_USER)
    serve = serving(env)
    before = login(serve).json()["data"]
    kid = jwt.get_unverified_header(before["access_token"])["kid"]
    snapshot = tmp_path / "instance" / "keyring-snapshot.json"
    assert snapshot.stat().st_mode & 0o777 == 0o600

    records = KeyRecords(real_redis)
    real_redis.hset(records.records_key, "bogus", '{"v":1}')
    real_redis.incr(records.version_key)
    wait_until(lambda: (keys_state(serve) or {}).get("status") == "stale", "stale", serve)
    kill_every_worker(serve)

    for _ in range(10):  # new connections each: both new workers answer
        assert call(serve, "GET", f"{API}/me", before["access_token"]).status_code == 200
        fresh = login(serve)
        assert fresh.status_code == 200, fresh.text
        token = fresh.json()["data"]["access_token"]
        assert jwt.get_unverified_header(token)["kid"] == kid
        assert call(serve, "GET", f"{API}/me", token).status_code == 200
        assert (keys_state(serve) or {}).get("status") == "stale"
    jwks = call(serve, "GET", "/.well-known/jwks.json").json()
    assert [key["kid"] for key in jwks["keys"]] == [kid]
    wait_until(every_worker_says(serve, "stale"), "every worker stale", serve)

    real_redis.hdel(records.records_key, "bogus")
    real_redis.incr(records.version_key)
    wait_until(every_worker_says(serve, "ok"), "recovery of every worker", serve)


def test_workers_restarted_while_redis_is_down_boot_and_recover(tmp_path, serving):
    """Redis stops; every worker is killed. The new workers boot (Redis refuses every
    connection) with the snapshot's keys and publish them; requests needing Redis fail
    closed (503); once Redis is back, the old token verifies and logins sign again."""
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        env = ring_env(server.url, tmp_path / "instance")
        authsvc_cli(env, "keys", "generate")
        add_user_with_cli(env, *E2E_USER)
        serve = serving(env)
        before = login(serve).json()["data"]
        kid = jwt.get_unverified_header(before["access_token"])["kid"]

        server.stop()
        kill_every_worker(serve)
        jwks = call(serve, "GET", "/.well-known/jwks.json").json()
        assert [key["kid"] for key in jwks["keys"]] == [kid]
        assert call(serve, "GET", f"{API}/me", before["access_token"]).status_code == 503
        assert call(serve, "GET", "/healthz").status_code == 200

        server.start()  # same port, same data (AOF)
        wait_until(
            lambda: call(serve, "GET", f"{API}/me", before["access_token"]).status_code == 200,
            "the old token verifies again",
            serve,
        )
        wait_until(every_worker_says(serve, "ok"), "recovery of every worker", serve)
        fresh = login(serve)
        assert fresh.status_code == 200, fresh.text
        assert jwt.get_unverified_header(fresh.json()["data"]["access_token"])["kid"] == kid
    finally:
        server.stop()


def test_a_host_that_never_had_good_keys_refuses_to_start_with_one_line(
    real_redis, real_redis_url, tmp_path
):
    """A new host (empty instance folder) facing a damaged ring: `authsvc serve` exits
    before forking a worker, with one line saying why, no traceback."""
    env = ring_env(real_redis_url, tmp_path / "instance")
    authsvc_cli(env, "keys", "generate")
    records = KeyRecords(real_redis)
    real_redis.hset(records.records_key, "bogus", '{"v":1}')
    env["AUTHSVC_BIND"] = "127.0.0.1:0"
    done = subprocess.run(
        [str(AUTHSVC), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Error: cannot start: no good signing keys (KeyRecordError" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr


def test_the_unreachable_case_refuses_a_new_host_too(tmp_path):
    """No snapshot and no Redis: one line, no traceback."""
    port = free_port()  # of this test worker's slice, nothing listening
    env = ring_env(f"redis://127.0.0.1:{port}/0", tmp_path / "instance")
    done = subprocess.run(
        [str(AUTHSVC), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Error: cannot start: no good signing keys (ConnectionError" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()
