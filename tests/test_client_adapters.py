"""The Python SDK against `authsvc serve` and a foreign resource server started here.

Covers: a resource's `token_revoked` refreshes once (issue 14), `client_id` / `scope` and
refresh narrowing, and the `requests` / `httpx` adapters (issue 17) against an API that
is not authsvc and answers plain RFC 6750 challenges, not the envelope.

The resource server (`Orders`) checks each Bearer token by RFC 7662 introspection at
authsvc, as a real one would, so a revoked or expired token is refused at once.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
import requests

from authsvc.client import (
    AuthClient,
    AuthClientError,
    MemoryTokenStore,
    SessionRevoked,
    TokenSet,
)
from tests.conftest import bearer
from tests.test_client_sdk import REFRESH, RecordingSession
from tests.test_e2e import (
    AUTHSVC,
    HTTP_TIMEOUT,
    ServeProcess,
    add_user_with_cli,
    serving_on_test_redis,
)

pytestmark = pytest.mark.e2e

ACCESS_TTL = 2
USER = ("adapter-user", "adapter password 0123")
INTROSPECTOR = ("orders-api", "orders-api-secret-0123456789")
CLIENT_ID = "fw"
ME = "/api/v1/user/me"
TOKEN_API = "/api/v1/token"


def authsvc_cli(env: dict[str, str], *args: str) -> None:
    """Run `authsvc ARGS` against the served Redis."""
    subprocess.run(
        [str(AUTHSVC), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )


@pytest.fixture(scope="module")
def live(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve`: 2 s access tokens, an introspecting client, the client `fw`."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("adapters"),
        ACCESS_TOKEN_TTL=ACCESS_TTL,
        JWT_LEEWAY=0,
        TOKEN_CLIENTS=":".join(INTROSPECTOR),
    ) as serve:
        add_user_with_cli(serve.env, *USER, roles=("telemetry",))
        authsvc_cli(
            serve.env, "client", "add", CLIENT_ID, "--name", "Firmware",
            "--scope", "profile", "--scope", "telemetry", "--transport", "body",
        )  # fmt: skip
        yield serve


class Orders:
    """A resource server that is not authsvc: plain JSON, RFC 6750 challenges.

    ``GET|POST /orders``: 200 ``{"sub", "scope", "body"}`` for a live token, else 401
    ``WWW-Authenticate: Bearer error="invalid_token"``. ``/admin`` wants scope ``admin``
    (403 ``insufficient_scope``). Every Authorization header seen is recorded.
    """

    def __init__(self, authsvc_url: str) -> None:
        self.seen: list[str] = []
        orders = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                orders.answer(self, b"")

            def do_POST(self) -> None:
                orders.answer(self, self.rfile.read(int(self.headers["Content-Length"] or 0)))

            def log_message(self, *_: Any) -> None:
                pass

        self.authsvc_url = authsvc_url
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def introspect(self, token: str) -> dict[str, Any]:
        response = requests.post(
            f"{self.authsvc_url}{TOKEN_API}/introspect",
            data={"token": token},
            auth=INTROSPECTOR,
            timeout=HTTP_TIMEOUT,
        )
        return response.json()["data"]

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        header = handler.headers.get("Authorization", "")
        self.seen.append(header)
        scheme, _, token = header.partition(" ")
        claims = self.introspect(token) if scheme == "Bearer" and token else {"active": False}
        if not claims["active"]:
            status, extra = 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            payload: dict[str, Any] = {"error": "invalid_token"}
        elif handler.path == "/admin" and "admin" not in claims["scope"].split():
            status = 403
            extra = {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="admin"'}
            payload = {"error": "insufficient_scope"}
        else:
            status, extra = 200, {}
            payload = {"sub": claims["sub"], "scope": claims["scope"], "body": body.decode()}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def orders(live: ServeProcess) -> Any:
    server = Orders(live.url)
    yield server
    server.close()


def revoke(live: ServeProcess, token: str, hint: str = "access_token") -> None:
    """RFC 7009 revocation of one token by the introspecting client."""
    response = requests.post(
        f"{live.url}{TOKEN_API}/revoke",
        data={"token": token, "token_type_hint": hint},
        auth=INTROSPECTOR,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text


def logged_in(live: ServeProcess, **options: Any) -> tuple[AuthClient, RecordingSession]:
    session = RecordingSession()
    client = AuthClient(live.url, session=session, retry_backoff=0.01, **options)
    client.login(*USER)
    return client, session


def refreshes(session: RecordingSession) -> list[int]:
    return [c.status for c in session.calls if c.path == REFRESH]


def believed_valid(tokens: TokenSet) -> TokenSet:
    """The same tokens, as a client whose clock says they are far from expiry."""
    return replace(tokens, access_expires_at=time.time() + 3600, obtained_at=time.time())


def wait_until_inactive(orders: Orders, token: str) -> None:
    """Poll introspection until ``token`` has expired at the server."""
    deadline = time.monotonic() + ACCESS_TTL + 5
    while orders.introspect(token)["active"]:
        assert time.monotonic() < deadline, "the access token never expired"
        time.sleep(0.1)


# -- issue 14 item 4: a resource's token_revoked refreshes once -------------------------------
def test_an_access_token_revoked_alone_is_replaced_by_one_refresh(live):
    """RFC 7009 revokes the access token only: /me answers token_revoked, the SDK refreshes
    once and retries; the session and the token store survive."""
    store = MemoryTokenStore()
    client, session = logged_in(live, token_store=store)
    first = client.tokens
    revoke(live, first.access_token)

    envelope = client.get(ME)

    assert envelope["data"]["session_id"] == first.session_id
    assert [(c.path, c.status, c.error) for c in session.calls[1:]] == [
        (ME, 401, "token_revoked"),
        (REFRESH, 200, None),
        (ME, 200, None),
    ]
    assert store.load() == client.tokens
    assert client.tokens.refresh_token != first.refresh_token


def test_token_revoked_with_the_session_over_ends_it_on_the_refreshs_word(live):
    """Logged out elsewhere: /me says token_revoked, the refresh says session_revoked, and
    only then is SessionRevoked raised and the store emptied."""
    store = MemoryTokenStore()
    client, session = logged_in(live, token_store=store)
    requests.post(
        f"{live.url}/api/v1/user/logout", headers=bearer(client.access_token), timeout=HTTP_TIMEOUT
    ).raise_for_status()

    with pytest.raises(SessionRevoked) as info:
        client.get(ME)

    assert info.value.error == "session_revoked"
    assert [(c.path, c.error) for c in session.calls[1:]] == [
        (ME, "token_revoked"),
        (REFRESH, "session_revoked"),
    ]
    assert store.load() is None


def test_a_second_refusal_after_a_good_refresh_keeps_the_session(live):
    """If the retried call is refused again although the refresh worked, the error is
    raised as is (not SessionRevoked) and the live tokens are kept."""
    client, _ = logged_in(live)
    revoke(live, client.access_token)

    class StillRevoked(RecordingSession):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if url.endswith(ME):
                body = {"code": 401, "msg": "revoked", "data": {"error": "token_revoked"}}
                response = requests.Response()
                response.status_code = 401
                response._content = json.dumps(body).encode()
                return response
            return super().request(method, url, *args, **kwargs)

    stubborn = AuthClient(
        live.url, token_store=MemoryTokenStore(client.tokens), session=StillRevoked()
    )
    with pytest.raises(AuthClientError) as info:
        stubborn.get(ME)
    assert not isinstance(info.value, SessionRevoked)
    assert info.value.error == "token_revoked"
    assert stubborn.tokens is not None
    assert stubborn.tokens.refresh_token != client.tokens.refresh_token


# -- issue 17 item 7: client_id, scope, narrowing -------------------------------------------
def test_client_id_and_scope_reach_the_token_and_refresh_narrows(live, orders):
    """AuthClient(client_id=, scope=) logs in through that client with that scope;
    refresh(scope=) narrows the session for good; a wider scope is invalid_scope."""
    client, _ = logged_in(live, client_id=CLIENT_ID, scope="profile telemetry")
    assert client.tokens.scope == "profile telemetry"
    me = client.get(ME)["data"]
    assert (me["client_id"], set(me["scope"].split())) == (CLIENT_ID, {"profile", "telemetry"})

    narrowed = client.refresh(scope="telemetry")

    assert narrowed.scope == "telemetry"
    assert client.get(ME)["data"]["scope"] == "telemetry"
    with pytest.raises(AuthClientError) as info:
        client.refresh(scope="profile")
    assert info.value.error == "invalid_scope"
    assert client.tokens == narrowed  # still usable
    assert client.refresh().scope == "telemetry"  # narrowed for good


def test_login_scope_overrides_and_unknown_client_is_refused(live):
    """login(scope=) wins over the client's default; an unknown client_id is refused."""
    client = AuthClient(live.url, client_id=CLIENT_ID, scope="profile telemetry")
    assert client.login(*USER, scope="profile").scope == "profile"
    stranger = AuthClient(live.url, client_id="no-such-client")
    with pytest.raises(AuthClientError) as info:
        stranger.login(*USER)
    assert info.value.error == "unknown_client"


# -- the requests adapter ------------------------------------------------------------------
def test_requests_auth_attaches_the_token_to_a_foreign_api(live, orders):
    """session.auth = client.requests_auth(): the resource sees the access token."""
    client, _ = logged_in(live, client_id=CLIENT_ID)
    api = requests.Session()
    api.auth = client.requests_auth()

    answer = api.post(f"{orders.url}/orders", json={"qty": 2}, timeout=HTTP_TIMEOUT)

    assert answer.status_code == 200
    assert answer.json()["body"] == '{"qty": 2}'
    assert orders.seen == [f"Bearer {client.access_token}"]


def test_requests_auth_renews_before_expiry(live, orders):
    """Inside the refresh margin the adapter refreshes first; no 401 is ever seen."""
    client, session = logged_in(live, refresh_margin=1.0)
    first = client.tokens
    time.sleep(max(first.refresh_at(1.0) - time.time(), 0) + 0.05)
    api = requests.Session()
    api.auth = client.requests_auth()

    answer = api.get(f"{orders.url}/orders", timeout=HTTP_TIMEOUT)

    assert answer.status_code == 200
    assert answer.history == []
    assert refreshes(session) == [200]
    assert orders.seen == [f"Bearer {client.access_token}"]
    assert client.access_token != first.access_token


@pytest.mark.parametrize("cause", ["expired", "revoked"])
def test_requests_auth_retries_once_after_a_plain_invalid_token(live, orders, cause):
    """A foreign 401 `Bearer error="invalid_token"` (expired, or the access token alone
    revoked) leads to one refresh and one retry, whose body arrives intact."""
    client, session = logged_in(live)
    old = client.access_token
    if cause == "expired":
        wait_until_inactive(orders, old)
        client._tokens = believed_valid(client.tokens)
    else:
        revoke(live, old)
    api = requests.Session()
    api.auth = client.requests_auth()

    answer = api.post(f"{orders.url}/orders", data=b"payload", timeout=HTTP_TIMEOUT)

    assert answer.status_code == 200
    assert answer.json()["body"] == "payload"
    assert [r.status_code for r in answer.history] == [401]
    assert refreshes(session) == [200]
    assert orders.seen == [f"Bearer {old}", f"Bearer {client.access_token}"]


def test_requests_auth_retries_an_authsvc_token_expired_envelope(live):
    """The adapter also speaks authsvc's envelope: 401 token_expired -> refresh -> 200."""
    client, session = logged_in(live)
    stale = client.tokens
    deadline = time.monotonic() + ACCESS_TTL + 5
    while requests.get(live.url + ME, headers=bearer(stale.access_token), timeout=HTTP_TIMEOUT).ok:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client._tokens = believed_valid(stale)
    api = requests.Session()
    api.auth = client.requests_auth()

    answer = api.get(live.url + ME, timeout=HTTP_TIMEOUT)

    assert answer.status_code == 200
    assert answer.history[0].json()["data"]["error"] == "token_expired"
    assert refreshes(session) == [200]


def test_requests_auth_ends_the_session_only_on_the_refreshs_word(live, orders):
    """After logout-all elsewhere, the resource's 401 causes one refresh; the refresh's
    session_revoked raises SessionRevoked and empties the store."""
    store = MemoryTokenStore()
    client, _ = logged_in(live, token_store=store)
    AuthClient(live.url).login(*USER)
    other = AuthClient(live.url)
    other.login(*USER)
    other.logout_all()
    api = requests.Session()
    api.auth = client.requests_auth()

    with pytest.raises(SessionRevoked):
        api.get(f"{orders.url}/orders", timeout=HTTP_TIMEOUT)
    assert store.load() is None


def test_requests_auth_hands_back_other_refusals_and_respects_origins(live, orders):
    """A 403 insufficient_scope is returned as is (no refresh); a request to an origin
    outside `origins` carries no token."""
    client, session = logged_in(live)
    api = requests.Session()
    api.auth = client.requests_auth()
    assert api.get(f"{orders.url}/admin", timeout=HTTP_TIMEOUT).status_code == 403
    assert refreshes(session) == []

    api.auth = client.requests_auth(origins=("https://elsewhere.example",))
    assert api.get(f"{orders.url}/orders", timeout=HTTP_TIMEOUT).status_code == 401
    assert orders.seen[-1] == ""


# -- the httpx adapter ---------------------------------------------------------------------
def test_httpx_auth_sync_retries_once_after_revocation(live, orders):
    """httpx.Client(auth=client.httpx_auth()): a revoked access token is refreshed once."""
    client, session = logged_in(live)
    old = client.access_token
    revoke(live, old)

    with httpx.Client(auth=client.httpx_auth()) as api:
        answer = api.post(f"{orders.url}/orders", content=b"sync body", timeout=HTTP_TIMEOUT)

    assert answer.status_code == 200
    assert answer.json()["body"] == "sync body"
    assert refreshes(session) == [200]
    assert orders.seen == [f"Bearer {old}", f"Bearer {client.access_token}"]


def test_httpx_auth_async_renews_and_retries(live, orders):
    """httpx.AsyncClient: an expired token the client believed valid is refreshed (in a
    worker thread) and the call retried; concurrent calls share one refresh."""
    client, session = logged_in(live)
    stale = client.access_token
    wait_until_inactive(orders, stale)
    client._tokens = believed_valid(client.tokens)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(auth=client.httpx_auth()) as api:
            calls = [api.get(f"{orders.url}/orders", timeout=HTTP_TIMEOUT) for _ in range(4)]
            return await asyncio.gather(*calls)

    answers = asyncio.run(main())

    assert [a.status_code for a in answers] == [200] * 4
    assert refreshes(session) == [200]
    assert set(orders.seen) == {f"Bearer {stale}", f"Bearer {client.access_token}"}


def test_a_due_renewal_that_fails_in_an_outage_does_not_stop_the_call(live, orders):
    """The token is due but the refresh gets no answer: the call goes out with the token
    in hand (it has not expired) instead of failing; the tokens are kept."""
    client, _ = logged_in(live)
    tokens = client.tokens
    due = replace(tokens, obtained_at=time.time() - 60, access_expires_at=time.time() + 1.5)

    class NoRefresh(RecordingSession):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if url.endswith(REFRESH):
                raise requests.ConnectionError("authsvc unreachable")
            return super().request(method, url, *args, **kwargs)

    offline = AuthClient(
        live.url, token_store=MemoryTokenStore(due), session=NoRefresh(), refresh_retries=0
    )
    api = requests.Session()
    api.auth = offline.requests_auth()

    assert api.get(f"{orders.url}/orders", timeout=HTTP_TIMEOUT).status_code == 200
    assert orders.seen == [f"Bearer {tokens.access_token}"]
    assert offline.tokens == due
