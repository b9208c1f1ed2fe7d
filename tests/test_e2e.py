"""End to end: the real `authsvc serve` (gunicorn, 2 workers) driven over HTTP.

Runs once against an external Redis (AUTHSVC_REDIS_URL) and once in quick-start mode
(embedded redis-server in the instance folder).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

from tests.conftest import TEST_SECRET, bearer
from tests.workers import free_port

pytestmark = pytest.mark.e2e

AUTHSVC = Path(sys.executable).parent / "authsvc"
API = "/api/v1/user"
WORKERS = 2
# Hang guards, not speed checks: under xdist several servers (and Chromiums) start at
# once on the 2 cores, and a start that takes 20 s there is slow, not broken.
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
DEMO_USER = ("demo", "e10dcc75")
E2E_USER = ("e2euser", "e2e password 0123")
PARALLEL_REFRESHES = 20


def serve_env(**settings: Any) -> dict[str, str]:
    """This process's environment without any AUTHSVC_* name, plus ``settings`` prefixed."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSVC_")}
    env.update({f"AUTHSVC_{name}": str(value) for name, value in settings.items()})
    return env


def add_user_with_cli(
    env: dict[str, str], username: str, password: str, roles: tuple[str, ...] = ()
) -> None:
    """Create an account with `authsvc user add --password-stdin` in a subprocess."""
    subprocess.run(
        [
            str(AUTHSVC),
            "user",
            "add",
            username,
            "--password-stdin",
            *(option for role in roles for option in ("--role", role)),
        ],
        input=f"{password}\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class ServeProcess:
    """A running `authsvc serve` on a free 127.0.0.1 port, stderr captured to a file."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        workers: int = WORKERS,
        umask: int = -1,
        port: int | None = None,
    ) -> None:
        self.workers = workers
        self.url = f"http://127.0.0.1:{port or free_port()}"
        self.env = {
            **env,
            "AUTHSVC_BIND": self.url.removeprefix("http://"),
            "AUTHSVC_WORKERS": str(workers),
        }
        self.stderr_path = log_dir / "serve.stderr"
        self.children: list[psutil.Process] = []
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [str(AUTHSVC), "serve"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            umask=umask,  # -1: inherit
        )

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (banner, gunicorn logs)."""
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until /healthz answers and every worker has booted; fail with the log if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"authsvc serve exited early:\n{self.stderr()}")
            try:
                healthy = requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                healthy = False  # not listening yet, or a worker still booting on busy cores
            if healthy and self.stderr().count("Booting worker") >= self.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"authsvc serve not ready after {timeout} s:\n{self.stderr()}")

    def stop(self) -> list[psutil.Process]:
        """SIGTERM by PID, SIGKILL after 15 s; returns the descendants that outlived it.

        Idempotent. Survivors are killed before being returned, so nothing leaks.
        """
        if self.process.poll() is None:
            self.children = psutil.Process(self.process.pid).children(recursive=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        _, alive = psutil.wait_procs(self.children, timeout=5)
        survivors = [p for p in alive if _is_running(p)]
        for process in survivors:
            process.kill()
        return survivors


@contextmanager
def serving_on_test_redis(
    redis_url: str,
    log_dir: Path,
    *,
    users: tuple[tuple[str, str], ...] = (),
    **settings: Any,
) -> Iterator[ServeProcess]:
    """`authsvc serve` (2 workers) on the flushed test Redis, with ``users`` added first.

    On exit the server is stopped, no process of it may be left, and the Redis is flushed.
    """
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = serve_env(REDIS_URL=redis_url, JWT_SECRET=TEST_SECRET, **settings)
    for username, password in users:
        add_user_with_cli(env, username, password)
    serve = ServeProcess(env, log_dir)
    try:
        serve.wait_ready()
        yield serve
    finally:
        survivors = serve.stop()
        client.flushdb()
        client.close()
    assert not survivors, f"processes left after stopping authsvc serve: {survivors}"


def _is_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Server:
    """The served instance under test plus the account the tests log in with."""

    def __init__(self, mode: str, serve: ServeProcess, account: tuple[str, str]) -> None:
        self.mode = mode
        self.serve = serve
        self.username, self.password = account
        self.instance = Path(serve.env["AUTHSVC_INSTANCE_PATH"]) if mode == "embedded" else None
        self.tokens: set[str] = set()  # every token handed out, for the log check

    def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One request on a new connection (so the two workers share the load)."""
        headers = {**kwargs.pop("headers", {}), **(bearer(token) if token else {})}
        response = requests.request(
            method, self.serve.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs
        )
        data = _data(response)
        for name in ("access_token", "refresh_token"):
            if isinstance(data, dict) and name in data:
                self.tokens.add(data[name])
        return response

    def login(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """POST /login and return ``data``, asserting success."""
        response = self.login_response(username, password)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def login_response(
        self, username: str | None = None, password: str | None = None
    ) -> requests.Response:
        """POST /login with this server's account unless told otherwise."""
        body = {"username": username or self.username, "password": password or self.password}
        return self.call("POST", f"{API}/login", json=body)

    def refresh(self, refresh_token: str) -> requests.Response:
        """GET /refresh with the refresh token as Bearer (the IoT shape)."""
        return self.call("GET", f"{API}/refresh", token=refresh_token)

    def me(self, access_token: str) -> requests.Response:
        """GET /me, the protected endpoint."""
        return self.call("GET", f"{API}/me", token=access_token)


def _data(response: requests.Response) -> Any:
    try:
        return response.json().get("data")
    except ValueError:
        return None


def error_of(response: requests.Response) -> tuple[int, str]:
    """The HTTP status and the envelope's error slug."""
    body = response.json()
    assert body["code"] == response.status_code
    return response.status_code, body["data"]["error"]


def wait_for_log(server: Server, needle: str, timeout: float = 5.0) -> str:
    """The server's stderr once it contains ``needle`` (gunicorn logs after responding)."""
    deadline = time.monotonic() + timeout
    while needle not in (log := server.serve.stderr()):
        assert time.monotonic() < deadline, f"{needle!r} never logged"
        time.sleep(0.05)
    return log


@pytest.fixture(scope="module", params=["redis-url", "embedded"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve` with 2 workers, against the test Redis or in quick-start mode."""
    log_dir = tmp_path_factory.mktemp("e2e")
    client: redis.Redis | None = None
    if request.param == "redis-url":
        redis_url = request.getfixturevalue("real_redis_url")
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        env = serve_env(REDIS_URL=redis_url, JWT_SECRET=TEST_SECRET)
        # With AUTHSVC_REDIS_URL set there is no demo user: create one the way ops would.
        add_user_with_cli(env, *E2E_USER)
        account = E2E_USER
    else:
        env = serve_env(INSTANCE_PATH=log_dir / "instance")
        account = DEMO_USER
        # An instance an older version left world-readable, served with umask 000:
        # quick start must make it private all the same.
        (log_dir / "instance").mkdir(mode=0o755)
        (log_dir / "instance" / "notes.txt").write_text("made before")
        (log_dir / "instance" / "notes.txt").chmod(0o644)
    serve = ServeProcess(env, log_dir, umask=0o000 if request.param == "embedded" else -1)
    try:
        serve.wait_ready()
        yield Server(request.param, serve, account)
    finally:
        survivors = serve.stop()
        if client is not None:
            client.flushdb()
            client.close()
    assert not survivors, f"processes left after stopping authsvc serve: {survivors}"


def test_mode_decides_demo_user_secret_and_embedded_redis(server):
    """Quick start: demo user, 0600 secret, AOF redis.sock, banner; redis-url mode: none."""
    assert server.login(server.username, server.password)["token_type"] == "Bearer"
    log = server.serve.stderr()
    if server.mode == "embedded":
        assert "QUICK-START" in log
        assert "Demo user" in log
        assert "'demo' / 'e10dcc75'" in log
        secret = server.instance / "jwt_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(secret.read_text().strip()) >= 32
        with redis.Redis(unix_socket_path=str(server.instance / "redis.sock")) as embedded:
            assert embedded.config_get("appendonly") == {"appendonly": "yes"}
            assert Path(embedded.config_get("dir")["dir"]) == server.instance.resolve()
        # Served with umask 000: the folder, AOF, secret, socket, metric files stay private.
        assert requests.get(server.serve.url + "/metrics", timeout=HTTP_TIMEOUT).ok
        assert stat.S_IMODE(server.instance.stat().st_mode) == 0o700
        paths = list(server.instance.rglob("*"))
        assert any(path.suffix == ".db" for path in paths)  # the workers' metric files
        assert any(path.suffix == ".aof" for path in paths)
        readable = [p for p in paths if stat.S_IMODE(p.lstat().st_mode) & 0o077]
        assert readable == []
    else:
        assert "QUICK-START" not in log
        demo = server.login_response(*DEMO_USER)
        assert error_of(demo) == (401, "invalid_credentials")


def test_serve_runs_two_workers(server):
    """AUTHSVC_WORKERS=2 gives a gunicorn master with two worker processes."""
    master = psutil.Process(server.serve.process.pid)
    workers = [p for p in master.children() if "redis-server" not in p.name()]
    assert len(workers) == WORKERS


# Native libraries only the app needs: cryptography's, argon2's, hiredis's.
APP_ONLY_LIBRARIES = ("cryptography", "_argon2_cffi_bindings", "hiredis")


def _loaded_app_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in APP_ONLY_LIBRARIES if name in maps}


def test_the_master_holds_gunicorn_not_the_app(server):
    """With AUTHSVC_REDIS_URL, serve checks the settings, then becomes a slim gunicorn
    master (same PID): the app's libraries live in the workers only (~35 MiB less)."""
    master = psutil.Process(server.serve.process.pid)
    server.login()  # a worker has served a login (each imports the app when it boots)
    workers = [p for p in master.children() if "redis-server" not in p.name()]
    for worker in workers:
        assert _loaded_app_libraries(worker.pid) == set(APP_ONLY_LIBRARIES)
    if server.mode == "embedded":  # quick start keeps its Redis and demo user in-process
        assert "gunicorn" not in " ".join(master.cmdline())
    else:
        assert _loaded_app_libraries(master.pid) == set()
        assert "gunicorn" in " ".join(master.cmdline())


def test_login_me_refresh_and_reuse_of_an_ancestor_kills_the_session(server):
    """login -> me -> refresh A->B->C; presenting A again is refresh_reused and ends the session."""
    first = server.login()
    me = server.me(first["access_token"])
    assert me.status_code == 200
    assert me.json() == {
        "code": 200,
        "msg": "ok",
        "data": {
            "user_id": me.json()["data"]["user_id"],
            "username": server.username,
            "roles": [],
            "session_id": first["session_id"],
            "client_id": "default",
            "scope": "profile",
            "bound": False,
            "cnf": None,
        },
    }

    second = server.refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    second_pair = second.json()["data"]
    assert second_pair["refresh_token"] != first["refresh_token"]
    assert second_pair["session_id"] == first["session_id"]
    third = server.refresh(second_pair["refresh_token"])
    assert third.status_code == 200, third.text
    third_pair = third.json()["data"]
    assert server.me(third_pair["access_token"]).status_code == 200

    reused = server.refresh(first["refresh_token"])
    assert error_of(reused) == (401, "refresh_reused")
    assert 'error="invalid_token"' in reused.headers["WWW-Authenticate"]

    # Reuse is terminal: the newest refresh token and every access token of the family die.
    assert error_of(server.refresh(third_pair["refresh_token"]))[0] == 401
    for access_token in (first["access_token"], third_pair["access_token"]):
        assert error_of(server.me(access_token))[0] == 401

    fresh = server.login()
    assert fresh["session_id"] != first["session_id"]
    assert server.me(fresh["access_token"]).status_code == 200


def _raw_get(server: Server, path: str, headers: dict[str, str]) -> bytes:
    """One GET on its own connection, the answer's bytes as gunicorn sent them."""
    host, port = server.serve.url.removeprefix("http://").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_me_and_refresh_answer_the_same_bytes_by_the_fast_path_and_by_flask(server):
    """Through gunicorn, "Bearer" (the fast path, authsvc/api/fastpath.py) and "bearer" (a
    spelling it leaves to Flask's views) give the same bytes, the Date header aside: GET
    /me with a valid and a forged token, and GET /refresh, whose second send within the
    grace window gets the pair the first one was issued."""
    pair = server.login()
    cases = [(f"{API}/me", pair["access_token"], b"200"), (f"{API}/me", "not.a.token", b"401"),
             (f"{API}/refresh", pair["refresh_token"], b"200")]  # fmt: skip
    for path, token, status in cases:
        # A pair handed again counts expires_in from that moment: one second for both.
        time.sleep(1.01 - time.time() % 1)
        answers = [
            _raw_get(
                server,
                path,
                {"Authorization": f"{scheme} {token}", "X-Request-ID": "e2e-fast-path"},
            )
            for scheme in ("Bearer", "bearer")
        ]
        undated = [
            b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"Date:"))
            for answer in answers
        ]
        assert undated[0] == undated[1], path
        assert undated[0].startswith(b"HTTP/1.1 " + status), path


def test_a_keep_alive_connection_is_closed_after_its_hundredth_request(server):
    """gunicorn_conf.MAX_KEEPALIVE_REQUESTS: the 100th answer on one connection says
    Connection: close and the server closes it, so the clients reconnect and spread
    over the workers again; the 99 before it keep the connection."""
    from authsvc.gunicorn_conf import MAX_KEEPALIVE_REQUESTS

    host, port = server.serve.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT)
    try:
        for number in range(1, MAX_KEEPALIVE_REQUESTS + 1):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            closing = (response.getheader("Connection") or "").lower() == "close"
            assert closing == (number == MAX_KEEPALIVE_REQUESTS), number
        assert response.will_close
    finally:
        connection.close()


def test_logout_revokes_the_access_token_on_every_worker(server):
    """After logout the access token is refused on 20 new connections, and the session is gone."""
    pair = server.login()
    assert server.me(pair["access_token"]).status_code == 200
    assert server.call("POST", f"{API}/logout", token=pair["access_token"]).status_code == 200
    answers = [error_of(server.me(pair["access_token"])) for _ in range(20)]
    assert answers == [(401, "token_revoked")] * 20
    assert error_of(server.refresh(pair["refresh_token"])) == (401, "session_revoked")


def test_logout_all_ends_every_session_and_token(server):
    """logout-all from one session kills both sessions' access and refresh tokens."""
    phone, laptop = server.login(), server.login()
    laptop = server.refresh(laptop["refresh_token"]).json()["data"]
    for pair in (phone, laptop):
        assert server.me(pair["access_token"]).status_code == 200

    assert server.call("POST", f"{API}/logout-all", token=phone["access_token"]).status_code == 200

    for pair in (phone, laptop):
        assert error_of(server.me(pair["access_token"])) == (401, "session_revoked")
        assert error_of(server.refresh(pair["refresh_token"])) == (401, "session_revoked")
    assert server.me(server.login()["access_token"]).status_code == 200


def test_parallel_refreshes_of_one_token_converge_on_one_child(server):
    """20 simultaneous refreshes of one token across workers all get the same single child."""
    parent = server.login()
    barrier = threading.Barrier(PARALLEL_REFRESHES)

    def present_parent(_: int) -> requests.Response:
        barrier.wait(timeout=HTTP_TIMEOUT)
        return server.refresh(parent["refresh_token"])

    with ThreadPoolExecutor(PARALLEL_REFRESHES) as pool:
        responses = list(pool.map(present_parent, range(PARALLEL_REFRESHES)))

    assert [r.status_code for r in responses] == [200] * PARALLEL_REFRESHES
    children = {r.json()["data"]["refresh_token"] for r in responses}
    assert len(children) == 1
    assert len({r.json()["data"]["access_token"] for r in responses}) == 1
    (child,) = children
    assert child != parent["refresh_token"]

    grandchild = server.refresh(child)
    assert grandchild.status_code == 200, grandchild.text
    # The grace window belonged to the first rotation; the parent is now an ancestor.
    assert error_of(server.refresh(parent["refresh_token"])) == (401, "refresh_reused")


def test_not_found_and_method_not_allowed_are_enveloped_over_http(server):
    """gunicorn-served 404 and 405 are JSON envelopes; the 405 keeps its Allow header."""
    missing = server.call("GET", "/no/such/route")
    assert missing.headers["Content-Type"].startswith("application/json")
    assert missing.json()["data"] == {"error": "not_found"}
    assert error_of(missing) == (404, "not_found")

    wrong_method = server.call("PUT", f"{API}/login", json={})
    assert wrong_method.headers["Content-Type"].startswith("application/json")
    assert error_of(wrong_method) == (405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]


def test_refresh_token_in_query_string_is_ignored(server):
    """GET /refresh?refresh_token=... without a header is token_missing, and rotates nothing."""
    pair = server.login()
    response = server.call("GET", f"{API}/refresh", params={"refresh_token": pair["refresh_token"]})
    assert error_of(response) == (401, "token_missing")
    assert server.refresh(pair["refresh_token"]).status_code == 200


def test_access_log_never_contains_a_token(server):
    """Tokens sent in headers and query strings never reach gunicorn's log on stderr."""
    pair = server.login()
    request_id = uuid.uuid4().hex
    response = server.call(
        "GET",
        f"{API}/me",
        token=pair["access_token"],
        params={"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 200
    log = wait_for_log(server, request_id)
    (line,) = [json.loads(text) for text in log.splitlines() if request_id in text]
    assert (line["request_id"], line["path"]) == (request_id, f"{API}/me")
    assert server.tokens
    leaked = [token for token in server.tokens if token in log]
    assert not leaked
    # Not even a token's signature part.
    assert not [t for t in server.tokens if t.rsplit(".", 1)[1] in log]


def test_stop_terminates_master_workers_and_embedded_redis(server):
    """SIGTERM ends serve cleanly (exit 0) and leaves no worker or embedded redis-server behind."""
    embedded_pid = None
    if server.mode == "embedded":
        with redis.Redis(unix_socket_path=str(server.instance / "redis.sock")) as embedded:
            embedded_pid = embedded.info("server")["process_id"]

    survivors = server.serve.stop()

    assert server.serve.process.returncode == 0
    assert "Shutting down: Master" in server.serve.stderr()
    assert len(server.serve.children) >= WORKERS
    assert not survivors
    if embedded_pid is not None:
        assert embedded_pid in {p.pid for p in server.serve.children}
        with (
            pytest.raises(redis.ConnectionError),
            redis.Redis(unix_socket_path=str(server.instance / "redis.sock")) as gone,
        ):
            gone.ping()
