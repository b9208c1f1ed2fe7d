"""The fast path (authsvc/api/fastpath.py) answers ``GET /me`` and ``GET /refresh``
exactly as Flask would.

Every request is sent twice through the same app and stack: once as it comes (the fast
path takes it) and once with the fast path declining, so Flask's view answers. Status,
headers (in order), body bytes, the request line and the metrics must be the same; a
refused token too, and it is checked once. Requests the fast path must not take go to
Flask untouched.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import jwt
import pytest
from werkzeug.test import EnvironBuilder

from authsvc.api import fastpath
from authsvc.api.fastpath import FastPath
from authsvc.logs import JsonFormatter
from authsvc.observability import metrics_of
from tests.conftest import BASE_SETTINGS, PASSWORD, TEST_SECRET, USERNAME, bearer, login_pair
from tests.dpop_keys import DeviceKey
from tests.test_dpop_api import dpop_login

ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"
LOGIN = "/api/v1/user/login"
CREDENTIALS = {"username": USERNAME, "password": PASSWORD}
REQUEST_ID = "fastpath-test-0001"


def fast_path_of(app: Any) -> FastPath:
    """The FastPath in the app's WSGI stack (under ProxyFix when there is one)."""
    layer = app.wsgi_app
    while not isinstance(layer, FastPath):
        layer = layer.app  # ProxyFix keeps what it wraps in .app
    return layer


def call(app: Any, headers: dict[str, str], method: str = "GET", path: str = ME, **environ: Any):
    """One request through the app's whole WSGI stack: (status, headers, body)."""
    environ = {"REMOTE_ADDR": "127.0.0.1", **environ}
    builder = EnvironBuilder(path=path, method=method, headers=headers, environ_base=environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, header_list: list[tuple[str, str]], exc_info=None):
        answer["status"], answer["headers"] = status, header_list

    body = b"".join(app.wsgi_app(builder.get_environ(), start_response))
    return answer["status"], answer["headers"], body


class Paths:
    """Send a request by the fast path or by Flask, counting what each did."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.app = app
        self.fast = fast_path_of(app)
        self.monkeypatch = monkeypatch
        self.flask_calls = 0
        self.checks = 0
        flask_wsgi = self.fast.flask_wsgi
        authenticate = self.fast.service.authenticate
        refresh = self.fast.service.refresh

        def counting_flask(*args: Any) -> Any:
            self.flask_calls += 1
            return flask_wsgi(*args)

        def counting_check(*args: Any, **kwargs: Any) -> Any:
            self.checks += 1
            return authenticate(*args, **kwargs)

        def counting_refresh(*args: Any, **kwargs: Any) -> Any:
            self.checks += 1
            return refresh(*args, **kwargs)

        monkeypatch.setattr(self.fast, "flask_wsgi", counting_flask)
        monkeypatch.setattr(self.fast.service, "authenticate", counting_check)
        monkeypatch.setattr(self.fast.service, "refresh", counting_refresh)

    def by_fast_path(self, headers: dict[str, str], **environ: Any):
        """The request as it comes; the counters count only this one."""
        self.flask_calls = self.checks = 0
        return call(self.app, headers, **environ)

    def by_flask(self, headers: dict[str, str], **environ: Any):
        """The request with the fast path declining it: Flask's view answers."""
        with self.monkeypatch.context() as patch:
            patch.setattr(FastPath, "_route", lambda self, environ: None)
            return call(self.app, headers, **environ)


def at_the_start_of_a_second() -> None:
    """Wait for the next whole second: a pair handed again counts its ``expires_in``
    from the moment it is handed, so the two sends of a comparison must fall within
    the same second."""
    time.sleep(1.01 - time.time() % 1)


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The request lines logged so far, without their duration; then forgotten."""
    fields = ("msg", "args", "method", "path", "endpoint", "status", "request_id", "remote_ip")
    lines = [
        {name: getattr(record, name) for name in fields}
        for record in caplog.records
        if record.name == "authsvc.request"
    ]
    caplog.clear()
    return lines


def request_count(app: Any, endpoint: str = "user.me", status: str = "200") -> float:
    """authsvc_requests_total for ``endpoint`` with ``status``."""
    return metrics_of(app).requests.labels(endpoint, status)._value.get()


@pytest.fixture
def paths(app, monkeypatch) -> Paths:
    return Paths(app, monkeypatch)


VARIANTS = {
    "plain": {},
    "request id": {"X-Request-ID": REQUEST_ID},
    "chinese": {"Accept-Language": "zh-CN,zh;q=0.9"},
    "weighted languages": {"Accept-Language": "fr, en;q=0.2, zh;q=0.5"},
    "unsupported language": {"Accept-Language": "de"},
    "user agent and forwarded-for": {"User-Agent": "fw/1.0", "X-Forwarded-For": "203.0.113.9"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_valid_token_gets_the_same_bytes_log_line_and_metrics(app, paths, user, caplog, variant):
    """The fast path's answer is Flask's, byte for byte, and so are its log and count."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    client = app.test_client()
    headers = {**bearer(login_pair(client)["access_token"]), **VARIANTS[variant]}
    headers.setdefault("X-Request-ID", REQUEST_ID)
    caplog.clear()
    before = request_count(app)

    fast = paths.by_fast_path(headers)
    assert (paths.flask_calls, paths.checks) == (0, 1)  # the fast path answered alone
    fast_lines = request_lines(caplog)
    after_fast = request_count(app)

    flask = paths.by_flask(headers)
    assert paths.flask_calls == 1  # the patched _takes handed it to Flask
    assert flask[0] == "200 OK"
    assert fast == flask
    assert fast_lines == request_lines(caplog)
    assert len(fast_lines) == 1
    assert after_fast - before == request_count(app) - after_fast == 1


def test_without_a_request_id_each_path_makes_one_of_the_same_form(app, paths, user):
    """A request without X-Request-ID gets a fresh 32-hex-digit id on either path."""
    headers = bearer(login_pair(app.test_client())["access_token"])
    ids = [dict(answer[1])["X-Request-ID"] for answer in (paths.by_fast_path(headers),
                                                          paths.by_flask(headers))]  # fmt: skip
    assert ids[0] != ids[1]
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)


@pytest.mark.parametrize(
    "settings",
    [
        {"DEFAULT_LANGUAGE": "zh"},
        {"TRUSTED_PROXIES": "1"},
        {"ENVELOPE_HTTP_STATUS": "always200"},
    ],
    ids=["default zh", "behind a proxy", "always 200"],
)
def test_settings_that_change_answers_change_both_paths_alike(
    make_app, monkeypatch, caplog, settings
):
    """Language default, CORS, ProxyFix (client address in the log), always-200."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    app = make_app(**settings)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    paths = Paths(app, monkeypatch)
    token = login_pair(app.test_client())["access_token"]
    headers = {**bearer(token), "X-Request-ID": REQUEST_ID, "X-Forwarded-For": "198.51.100.7"}
    caplog.clear()
    fast = paths.by_fast_path(headers)
    fast_lines = request_lines(caplog)
    assert paths.flask_calls == 0
    assert fast == paths.by_flask(headers)
    assert fast_lines == request_lines(caplog)
    if "TRUSTED_PROXIES" in settings:
        assert fast_lines[0]["remote_ip"] == "198.51.100.7"


def _forged(token: str, **changes: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, **changes}, TEST_SECRET, algorithm="HS256")


def bad_tokens(app: Any) -> dict[str, str]:
    """What an attacker or a broken device might send as a Bearer token on /me."""
    client = app.test_client()
    pair = login_pair(client)
    ended = login_pair(client)
    assert client.post("/api/v1/user/logout", headers=bearer(ended["access_token"])).status_code
    unsigned = jwt.encode(jwt.decode(pair["access_token"], options={"verify_signature": False}),
                          None, algorithm="none")  # fmt: skip
    header, payload, signature = pair["access_token"].split(".")
    return {
        "refresh token as access": pair["refresh_token"],
        "logged out": ended["access_token"],
        "alg none": unsigned,
        "bad signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "expired": _forged(pair["access_token"], exp=int(time.time()) - 3600),
        "other audience": _forged(pair["access_token"], aud="someone-else"),
        "not a JWT": "abc.def",
        "empty": "",
    }


def test_a_refused_token_gets_the_same_error_and_is_checked_once(app, paths, user, caplog):
    """The attacker's view: every token Flask refuses, the fast path refuses alike (same
    status, slug, headers, WWW-Authenticate challenge), with one check, not two."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    tokens = bad_tokens(app)
    caplog.clear()
    for name, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": REQUEST_ID}
        fast = paths.by_fast_path(headers)
        assert fast[0].startswith("401"), (name, fast)
        # A token the header grammar refuses (empty) never reaches the service.
        assert paths.flask_calls == 1, name
        assert paths.checks == (0 if name == "empty" else 1), name
        fast_lines = request_lines(caplog)
        assert fast == paths.by_flask(headers), name
        assert fast_lines == request_lines(caplog), name


def test_redis_down_fails_closed_alike(app, paths, user):
    """An unreachable Redis is the same 503 envelope on both paths, never a 200."""
    headers = {**bearer(login_pair(app.test_client())["access_token"]), "X-Request-ID": REQUEST_ID}

    def down(*args: Any, **kwargs: Any) -> Any:
        import redis

        raise redis.exceptions.ConnectionError("down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paths.fast.service.store, "check_access", down)
        fast = paths.by_fast_path(headers)
        assert fast[0].startswith("503")
        assert fast == paths.by_flask(headers)


def test_a_bound_token_sent_as_bearer_is_refused_and_its_audit_line_has_the_request_id(
    app, paths, user, caplog
):
    """A DPoP-bound token copied into a Bearer header (token theft without the key):
    refused, counted as dpop_refused, and the audit line written during the fast path's
    check carries the same request id as the request line Flask writes."""
    token = dpop_login(app.test_client(), DeviceKey())["access_token"]
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter())  # formats as the line is written, as in gunicorn
    logger = logging.getLogger("authsvc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        status, headers, body = paths.by_fast_path(bearer(token))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert status.startswith("401")
    assert b"token_invalid" in body
    assert paths.checks == 1
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert [line.get("event") or line["logger"] for line in lines] == [
        "dpop_refused",
        "authsvc.request",
    ]
    request_id = dict(headers)["X-Request-ID"]
    assert [line["request_id"] for line in lines] == [request_id, request_id]


NOT_TAKEN = {
    "POST": {"method": "POST"},
    "HEAD": {"method": "HEAD"},
    "trailing slash": {"path": ME + "/"},
    "sessions": {"path": "/api/v1/user/sessions"},
}


@pytest.mark.parametrize("case", NOT_TAKEN)
def test_other_methods_and_paths_go_to_flask(app, paths, user, case):
    headers = bearer(login_pair(app.test_client())["access_token"])
    paths.by_fast_path(headers, **NOT_TAKEN[case])
    assert paths.flask_calls == 1


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"Authorization": "bearer {token}"}, ME),
        ({"Authorization": "DPOP {token}"}, ME),
        ({"Authorization": "DPoP {token}"}, REFRESH),
    ],
    ids=["lower-case scheme", "upper-case DPoP", "DPoP scheme on refresh"],
)
def test_other_scheme_spellings_go_to_flask(app, paths, user, headers, path):
    token = login_pair(app.test_client())["access_token"]
    paths.by_fast_path({name: value.format(token=token) for name, value in headers.items()},
                       path=path)  # fmt: skip
    assert paths.flask_calls == 1


def test_cors_and_debug_mode_keep_every_request_on_flask(make_app, monkeypatch):
    """With CORS on, flask-cors adds its headers to every answer (with or without an
    Origin); debug mode pretty-prints the JSON. Both stay Flask's."""
    app = make_app(CORS_ORIGINS="https://app.example")
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    paths = Paths(app, monkeypatch)
    headers = {**bearer(login_pair(app.test_client())["access_token"]),
               "Origin": "https://app.example"}  # fmt: skip
    status, answer_headers, _ = paths.by_fast_path(headers)
    assert status == "200 OK"
    assert paths.flask_calls == 1
    assert dict(answer_headers)["Access-Control-Allow-Origin"] == "https://app.example"
    del headers["Origin"]
    paths.by_fast_path(headers)
    assert paths.flask_calls == 1
    plain = make_app()
    paths = Paths(plain, monkeypatch)
    plain.debug = True
    paths.by_fast_path(headers)
    assert paths.flask_calls == 1


def test_tracing_keeps_every_request_on_the_instrumented_flask_path(redis_client):
    """With a tracer provider there is no fast path: each request gets its server span."""
    from opentelemetry.sdk.trace import TracerProvider

    from authsvc import create_app

    app = create_app(BASE_SETTINGS, redis_client=redis_client, tracer_provider=TracerProvider())
    layer = app.wsgi_app
    while hasattr(layer, "app") and not isinstance(layer, FastPath):
        layer = layer.app
    assert not isinstance(layer, FastPath)
    assert fastpath.ME_PATH == ME


def test_a_refresh_gets_the_same_bytes_log_line_and_metrics(app, paths, user, caplog):
    """The fast path rotates; the same refresh token sent again within the grace window
    gets the pair already issued (the lost-reply retry), from Flask's view: the same
    bytes, request line and count."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    refresh_token = login_pair(app.test_client())["refresh_token"]
    headers = {**bearer(refresh_token), "X-Request-ID": REQUEST_ID, "User-Agent": "fw/2.1"}
    caplog.clear()
    before = request_count(app, "user.refresh_from_header")
    at_the_start_of_a_second()
    fast = paths.by_fast_path(headers, path=REFRESH)
    assert (paths.flask_calls, paths.checks) == (0, 1)
    assert fast[0] == "200 OK"
    fast_lines = request_lines(caplog)
    flask = paths.by_flask(headers, path=REFRESH)
    assert fast == flask
    assert fast_lines == request_lines(caplog)
    assert request_count(app, "user.refresh_from_header") - before == 2
    # And the pair works: the fast path really rotated.
    pair = json.loads(fast[2])["data"]
    assert paths.by_fast_path(bearer(pair["access_token"]))[0] == "200 OK"
    assert paths.by_fast_path(bearer(pair["refresh_token"]), path=REFRESH)[0] == "200 OK"


def test_a_refused_refresh_gets_the_same_error_and_spends_nothing_twice(app, paths, user, caplog):
    """Every refresh token Flask refuses, the fast path refuses alike, calling the
    refresh once (a refresh has effects: it must not run again in Flask)."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    tokens = bad_tokens(app)
    tokens["access token as refresh"] = login_pair(app.test_client())["access_token"]
    del tokens["refresh token as access"]
    caplog.clear()
    for name, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": REQUEST_ID}
        fast = paths.by_fast_path(headers, path=REFRESH)
        assert fast[0].startswith("401"), (name, fast)
        assert paths.flask_calls == 1, name
        assert paths.checks == (0 if name == "empty" else 1), name
        fast_lines = request_lines(caplog)
        assert fast == paths.by_flask(headers, path=REFRESH), name
        assert fast_lines == request_lines(caplog), name


def test_the_fast_path_keeps_reuse_detection(app, paths, user):
    """The attacker's replay: a stolen refresh token used after the device rotated past
    it ends the whole session on the fast path, as on Flask's."""
    first = login_pair(app.test_client())["refresh_token"]
    second = json.loads(paths.by_fast_path(bearer(first), path=REFRESH)[2])["data"]
    third = json.loads(paths.by_fast_path(bearer(second["refresh_token"]), path=REFRESH)[2])
    status, _, body = paths.by_fast_path(bearer(first), path=REFRESH)  # the grandparent
    assert status.startswith("401")
    assert json.loads(body)["data"]["error"] == "refresh_reused"
    for token, path in (
        (third["data"]["refresh_token"], REFRESH),
        (third["data"]["access_token"], ME),
    ):
        assert paths.by_fast_path(bearer(token), path=path)[0].startswith("401")


def test_a_refresh_with_a_cookie_goes_to_flask(app, paths, user):
    """A browser's cookie may carry the refresh token: the view decides which one counts."""
    refresh_token = login_pair(app.test_client())["refresh_token"]
    paths.by_fast_path({**bearer(refresh_token), "Cookie": "theme=dark"}, path=REFRESH)
    assert paths.flask_calls == 1


# -- DPoP-bound sessions (RFC 9449) --------------------------------------------------------


def dpop_get(key: DeviceKey, path: str, token: str, scheme: str | None = None, **proof: Any):
    """Headers of a GET with ``token`` and a fresh proof by ``key``: an access token under
    the DPoP scheme on /me, a refresh token as Bearer on /refresh (unless ``scheme``)."""
    access = token if path == ME else None
    scheme = scheme or ("DPoP" if path == ME else "Bearer")
    return {
        "Authorization": f"{scheme} {token}",
        "DPoP": key.proof("GET", path, access_token=access, **proof),
        "X-Request-ID": REQUEST_ID,
    }


@pytest.mark.parametrize("nonces", [False, True], ids=["no nonces", "nonces"])
def test_a_bound_session_gets_the_same_bytes_on_me_and_refresh(
    make_app, monkeypatch, caplog, nonces
):
    """/me with the DPoP scheme and a proof, and a refresh with a proof: each sent by both
    paths with its own fresh proof (a proof is good once), same bytes and request line;
    the refresh's second send is the bound session's retry, answered the issued pair.
    With nonces on, the answers carry the same DPoP-Nonce."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    app = make_app(**({"DPOP_NONCE_SECRET": "n" * 32} if nonces else {}))
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    paths = Paths(app, monkeypatch)
    key = DeviceKey()
    client = app.test_client()
    extra: dict[str, Any] = {}
    if nonces:  # the server's first answer names the nonce (use_dpop_nonce)
        asked = client.post(LOGIN, json=CREDENTIALS, headers={"DPoP": key.proof("POST", LOGIN)})
        extra = {"claims": {"nonce": asked.headers["DPoP-Nonce"]}}
    answer = client.post(
        LOGIN, json=CREDENTIALS, headers={"DPoP": key.proof("POST", LOGIN, **extra)}
    )
    pair = answer.get_json()["data"]
    for path, token in ((ME, pair["access_token"]), (REFRESH, pair["refresh_token"])):
        caplog.clear()
        at_the_start_of_a_second()
        fast = paths.by_fast_path(dpop_get(key, path, token, **extra), path=path)
        assert (paths.flask_calls, paths.checks) == (0, 1), path
        assert fast[0] == "200 OK", fast
        assert ("DPoP-Nonce" in dict(fast[1])) == nonces
        fast_lines = request_lines(caplog)
        assert fast == paths.by_flask(dpop_get(key, path, token, **extra), path=path), path
        assert fast_lines == request_lines(caplog)


def test_refused_bound_requests_get_the_same_error_and_challenge(app, paths, user, caplog):
    """The attacker's requests on a bound session: the token without a proof, with a
    replayed proof, with a proof by another key, as Bearer; a refresh without a proof or
    with another key's. Each refused alike on both paths (status, DPoP challenge,
    slug), checked once."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    key, thief = DeviceKey(), DeviceKey()
    pair = dpop_login(app.test_client(), key)
    access, refresh = pair["access_token"], pair["refresh_token"]
    replayed = dpop_get(key, ME, access)
    assert paths.by_fast_path(replayed)[0] == "200 OK"
    cases = {
        "no proof": ({"Authorization": f"DPoP {access}"}, ME),
        "replayed proof": (replayed, ME),
        "another key": (dpop_get(thief, ME, access), ME),
        "as Bearer": (dpop_get(key, ME, access, scheme="Bearer"), ME),
        "refresh, no proof": ({"Authorization": f"Bearer {refresh}"}, REFRESH),
        "refresh, another key": (dpop_get(thief, REFRESH, refresh, scheme="Bearer"), REFRESH),
    }
    caplog.clear()
    for name, (headers, path) in cases.items():
        fast = paths.by_fast_path(dict(headers, **{"X-Request-ID": REQUEST_ID}), path=path)
        assert fast[0][:3] in ("400", "401"), (name, fast)
        assert paths.flask_calls == 1, name
        fast_lines = request_lines(caplog)
        if name != "replayed proof":  # a proof is spent by its first check, on either path
            flask = paths.by_flask(dict(headers, **{"X-Request-ID": REQUEST_ID}), path=path)
            assert fast == flask, name
            assert fast_lines == request_lines(caplog), name
        if path == ME and name != "as Bearer":
            assert "DPoP" in dict(fast[1])["WWW-Authenticate"], name
    # Nothing the thief sent changed the session: the device goes on.
    after = paths.by_fast_path(dpop_get(key, REFRESH, refresh, scheme="Bearer"), path=REFRESH)
    assert after[0] == "200 OK"
