"""Input that is not Unicode text (lone surrogates, control characters, odd header bytes)
is a 422 or harmless, never a 500, and never reaches Redis."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from authsvc import create_app
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.errors import STATUS_BY_SLUG
from authsvc.passwords import Passwords
from authsvc.service import AuthService, Client
from tests.conftest import BASE_SETTINGS, PASSWORD, USERNAME, bearer, login, login_pair

LONE_SURROGATE = "\ud800"
TOKEN_CLIENT = ("resource-server", "a resource server secret 0123456789")
LOGIN = "/api/v1/user/login"
SESSIONS = "/api/v1/user/sessions"
PASSWORD_CHANGE = "/api/v1/user/password"
INTROSPECT = "/api/v1/token/introspect"
# The answers that are not the envelope, by design: documents for other programs
# (JWKS, OpenAPI, Prometheus) and the HTML pages (account page and its assets, docs).
NON_ENVELOPE_PREFIXES = ("/.well-known/jwks.json", "/openapi.json", "/metrics", "/account/")
NON_ENVELOPE_PATHS = {"/docs"}


def post_json(client: FlaskClient, path: str, body: Any, **kwargs: Any) -> TestResponse:
    """POST ``body`` as JSON with every non-ASCII character escaped, as a device would:
    a lone surrogate travels as the legal escape ``\\ud800`` (the test client's own
    JSON encoder would write it raw, which is not UTF-8 at all)."""
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def assert_rejected_field(response: TestResponse, field: str) -> None:
    assert response.status_code == 422, response.get_json()
    data = response.get_json()["data"]
    assert data["error"] == "validation_failed"
    assert field in data["fields"]


def session_count(client: FlaskClient, access_token: str) -> int:
    response = client.get(SESSIONS, headers=bearer(access_token))
    assert response.status_code == 200, response.get_json()
    return len(response.get_json()["data"]["sessions"])


@pytest.mark.parametrize("field", ["username", "password", "device_id"])
@pytest.mark.parametrize("bad", [LONE_SURROGATE, "a\udfffb"])
def test_a_lone_surrogate_in_a_login_field_is_422_and_nothing_is_stored(client, user, field, bad):
    """Login with a lone surrogate in username, password or device_id is 422 naming the
    field; no session is stored and the account's session list still answers."""
    body = {"username": USERNAME, "password": PASSWORD, "device_id": "thermostat", field: bad}

    assert_rejected_field(post_json(client, LOGIN, body), field)

    tokens = login_pair(client)
    assert session_count(client, tokens["access_token"]) == 1


@pytest.mark.parametrize("field", ["username", "device_id"])
def test_control_characters_in_names_and_device_ids_are_422(client, user, field):
    """NUL or another control character in a username or device id is a 422."""
    for bad in ("thermo\x00stat", "line\nbreak", "bell\x07", "c1\x85"):
        body = {"username": USERNAME, "password": PASSWORD, field: bad}
        assert_rejected_field(post_json(client, LOGIN, body), field)


def test_a_nul_in_a_password_is_422_but_other_unicode_is_fine(client, service):
    """A password may be any text but NUL (C firmware would cut it there)."""
    body = {"username": USERNAME, "password": "correct\x00horse"}
    assert_rejected_field(post_json(client, LOGIN, body), "password")
    service.add_user("unicode", "pässwörd 密码 \U0001f511\ttab")
    assert login(client, "unicode", "pässwörd 密码 \U0001f511\ttab").status_code == 200


@pytest.mark.parametrize("field", ["old_password", "new_password"])
def test_a_lone_surrogate_in_a_password_change_is_422(client, user, field):
    """A lone surrogate in old_password or new_password is 422, the password unchanged."""
    tokens = login_pair(client)
    body = {"old_password": PASSWORD, "new_password": "a new password"}
    body[field] += LONE_SURROGATE  # long enough for new_password: only the surrogate is wrong

    response = post_json(client, PASSWORD_CHANGE, body, headers=bearer(tokens["access_token"]))

    assert_rejected_field(response, field)
    assert login(client).status_code == 200


def test_an_unknown_field_named_with_a_lone_surrogate_is_reported_escaped(client, user):
    """An unknown field is named in data.fields; a lone surrogate in its name is escaped
    there, so the answer stays valid UTF-8 (writing it raw was a 500)."""
    body = {"username": USERNAME, "password": PASSWORD, LONE_SURROGATE: 1}
    response = post_json(client, LOGIN, body)
    assert_rejected_field(response, "\\ud800")


def test_basic_credentials_that_are_not_ascii_are_invalid_client(introspection_client):
    """An Authorization: Basic value with a byte >= 0x80 (Werkzeug's parser raises) is
    401 invalid_client, not a 500."""
    response = introspection_client.post(
        INTROSPECT, data={"token": "x"}, headers={"Authorization": "Basic \x80abc"}
    )
    assert response.status_code == 401
    assert response.get_json()["data"]["error"] == "invalid_client"


def test_a_lone_surrogate_refresh_token_is_422(client, user):
    """POST /refresh with a lone surrogate as refresh_token is a 422."""
    response = post_json(client, "/api/v1/user/refresh", {"refresh_token": LONE_SURROGATE})
    assert_rejected_field(response, "refresh_token")


@pytest.fixture
def introspection_client(make_app: Any) -> FlaskClient:
    app = make_app(TOKEN_CLIENTS=":".join(TOKEN_CLIENT))
    return app.test_client()


@pytest.mark.parametrize("form", [False, True])
def test_introspection_refuses_what_is_not_text_in_json_and_forms(introspection_client, form):
    """Introspection: a token with a lone surrogate (JSON) or a NUL (form) is a 422."""
    auth = TOKEN_CLIENT
    if form:
        response = introspection_client.post(INTROSPECT, data={"token": "a\x00b"}, auth=auth)
    else:
        response = post_json(introspection_client, INTROSPECT, {"token": LONE_SURROGATE}, auth=auth)
    assert_rejected_field(response, "token")


@pytest.mark.parametrize(
    ("user_agent", "stored"),
    [
        # What gunicorn hands over for UTF-8 bytes: each byte as one latin-1 character.
        ("Thermostat/1.0 (Küche €)".encode().decode("latin-1"), "Thermostat/1.0 (Küche €)"),
        ("Thermostat\x00/1.0\x1b[31m\x7f", "Thermostat/1.0[31m"),
        ("Thermostat/1.0 (Küche)" + LONE_SURROGATE, "Thermostat/1.0 (Küche)"),
        ("\x00\x01", None),
    ],
)
def test_user_agent_and_forwarded_ip_reach_the_session_as_printable_text(
    make_app, user, user_agent, stored
):
    """A User-Agent or X-Forwarded-For with control characters, UTF-8 bytes (latin-1
    decoded by WSGI) or a lone surrogate is stored as printable text, not a 500."""
    client = make_app(TRUSTED_PROXIES=1).test_client()
    headers = {"User-Agent": user_agent, "X-Forwarded-For": "203.0.113.7\x00" + LONE_SURROGATE}

    response = client.post(
        LOGIN, json={"username": USERNAME, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()["data"]

    listed = client.get(SESSIONS, headers=bearer(tokens["access_token"]))
    assert listed.status_code == 200, listed.get_json()
    (session,) = listed.get_json()["data"]["sessions"]
    assert session["user_agent"] == stored
    assert session["ip"] == "203.0.113.7"


def test_a_request_id_with_a_trailing_newline_is_replaced(client):
    """X-Request-ID is echoed only when it is entirely safe characters."""
    response = client.get("/healthz", environ_base={"HTTP_X_REQUEST_ID": "abc\n"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] != "abc\n"
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    )


# -- property-based: arbitrary input at every endpoint ------------------------------------

ENDPOINTS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", LOGIN),
    ("GET", "/api/v1/user/refresh"),
    ("POST", "/api/v1/user/refresh"),
    ("POST", "/api/v1/user/logout"),
    ("POST", "/api/v1/user/logout-all"),
    ("GET", "/api/v1/user/me"),
    ("GET", SESSIONS),
    ("DELETE", SESSIONS + "/{}"),
    ("POST", PASSWORD_CHANGE),
    ("POST", INTROSPECT),
    ("POST", "/api/v1/token/revoke"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/metrics"),
    ("GET", "/account/"),
    ("GET", "/account/{}"),
    ("GET", "/static/{}"),
]
REFRESH = "/api/v1/user/refresh"
REVOKE = "/api/v1/token/revoke"
ACCESS_PLACEHOLDER, REFRESH_PLACEHOLDER = "<access>", "<refresh>"
# Each JSON body's fields with a value that passes validation, so that a request with
# one odd field gets past the others to the code behind the schema. The placeholders
# stand for the example's live tokens.
FIELDS: dict[str, dict[str, str]] = {
    LOGIN: {
        "username": USERNAME,
        "password": PASSWORD,
        "device_id": "thermostat-42",
        "transport": "body",
    },
    REFRESH: {"refresh_token": REFRESH_PLACEHOLDER},
    PASSWORD_CHANGE: {"old_password": PASSWORD, "new_password": PASSWORD},
    INTROSPECT: {"token": ACCESS_PLACEHOLDER, "token_type_hint": "access_token"},
    REVOKE: {"token": REFRESH_PLACEHOLDER, "token_type_hint": "refresh_token"},
}
KNOWN_VALUES = [USERNAME, PASSWORD, "cookie", "body", "access_token", "refresh_token"]

# Any code point, lone surrogates included (hypothesis leaves them out by default), and
# the troublemakers often enough that most runs of a few hundred examples meet them.
troublemakers = st.sampled_from([LONE_SURROGATE, "\udfff", "\x00", "\x85", "\U0001f511"])
# (Built from a list: st.text() drops surrogates from any alphabet.)
any_text = st.lists(st.characters(exclude_categories=()) | troublemakers, max_size=20).map(
    "".join
) | st.sampled_from(KNOWN_VALUES)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=6,
)
# Header values as HTTP delivers them: bytes decoded as latin-1 by the WSGI server, or
# any text at all (a test harness or another server); never CR/LF (no HTTP carries them).
header_values = (st.binary(max_size=24).map(lambda raw: raw.decode("latin-1")) | any_text).filter(
    lambda value: "\r" not in value and "\n" not in value
)


def _encoded(text: str) -> str:
    """Percent-encode ``text``, lone surrogates as the bytes they would be (invalid UTF-8)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def bodies(draw: st.DrawFn, path: str) -> Any:
    """A JSON body for ``path``: its valid fields with one or two of them dropped,
    replaced by any JSON or text, or suffixed with odd text; sometimes an unknown field;
    or any JSON at all."""
    good = FIELDS.get(path)
    if good is None or draw(st.integers(0, 3)) == 0:
        return draw(json_values)
    body: dict[str, Any] = dict(good)
    for name in draw(st.lists(st.sampled_from(list(good)), unique=True, max_size=2)):
        mode = draw(st.sampled_from(["drop", "text", "json", "suffix"]))
        if mode == "drop":
            del body[name]
        elif mode == "text":
            body[name] = draw(any_text)
        elif mode == "json":
            body[name] = draw(json_values)
        else:
            body[name] = good[name] + draw(any_text)
    if draw(st.integers(0, 5)) == 0:
        body[draw(any_text)] = draw(json_values)
    return body


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    """One request: an endpoint, a body (JSON, form, raw or none), headers, credentials."""
    # Endpoints that take a body are drawn more often: most of the input is there.
    method, path = draw(st.sampled_from(ENDPOINTS + [("POST", path) for path in FIELDS] * 2))
    if "{}" in path:
        path = path.format(_encoded(draw(any_text)))
    kind = draw(st.sampled_from(["json", "json", "json", "form", "raw", "none"]))
    body: Any = None
    content_type = None
    if kind == "json":
        body, content_type = draw(bodies(path)), "application/json"
    elif kind == "form":
        body = draw(bodies(path))
        content_type = "application/x-www-form-urlencoded"
    elif kind == "raw":
        body = draw(st.binary(max_size=40))
        content_type = draw(st.sampled_from(["application/json", "text/plain"]))
    headers = draw(
        st.dictionaries(
            st.sampled_from(
                ["User-Agent", "X-Request-ID", "Accept-Language", "X-Forwarded-For", CSRF_HEADER]
            ),
            header_values,
            max_size=5,
        )
    )
    credential = draw(
        st.sampled_from(
            ["none", "access", "access", "refresh", "client", "garbage", "basic", "cookie"]
        )
    )
    return {
        "method": method,
        "path": path,
        "body": body,
        "kind": kind,
        "content_type": content_type,
        "headers": headers,
        "credential": credential,
        "garbage": draw(header_values),
    }


def _with_tokens(value: Any, pair: Any) -> Any:
    tokens = {ACCESS_PLACEHOLDER: pair.access_token, REFRESH_PLACEHOLDER: pair.refresh_token}
    if isinstance(value, dict):
        return {name: tokens.get(v, v) if isinstance(v, str) else v for name, v in value.items()}
    return value


def _encoded_body(call: dict[str, Any], pair: Any) -> bytes | None:
    body = _with_tokens(call["body"], pair)
    if call["kind"] == "json":
        # ensure_ascii writes a lone surrogate as the escape "\ud800", legal JSON.
        return json.dumps(body).encode()
    if call["kind"] == "form":
        form = body.items() if isinstance(body, dict) else []
        return "&".join(
            f"{_encoded(name)}={_encoded(value)}" for name, value in form if isinstance(value, str)
        ).encode()
    return body


@pytest.fixture(scope="module")
def fuzz_app() -> tuple[Flask, AuthService]:
    """An app over fakeredis with alice, a resource server, and throttles that never trip
    (so random wrong passwords cannot lock alice out of the login that stores a session)."""
    app = create_app(
        {
            **BASE_SETTINGS,
            "LOGIN_MAX_FAILURES_PER_ACCOUNT": 10**9,
            "LOGIN_MAX_FAILURES_PER_IP": 10**9,
            "TOKEN_CLIENTS": ":".join(TOKEN_CLIENT),
            "TRUSTED_PROXIES": 1,
        },
        redis_client=fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True),
    )
    service: AuthService = app.extensions["authsvc"]
    # Cheap hashing below the OWASP floor the config enforces: the fuzzer is after what
    # reaches argon2 and Redis, not after the cost of hashing, and stays fast this way.
    service.passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    service.add_user(USERNAME, PASSWORD, ("admin",))
    return app, service


def _fresh_pair(app: Flask, service: AuthService) -> Any:
    # A new session without an argon2 check, so each example can afford a live one.
    user = service.find_user(USERNAME)
    with app.app_context():
        return service.open_session(user, Client(ip="192.0.2.1"), auth_ms=service.store.clock())


def _is_envelope_exempt(path: str) -> bool:
    return path in NON_ENVELOPE_PATHS or path.startswith(NON_ENVELOPE_PREFIXES)


FUZZ_SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded"}
BASIC_CLIENT = "Basic " + base64.b64encode(":".join(TOKEN_CLIENT).encode()).decode()


def _check_request(app: Flask, service: AuthService, call: dict[str, Any]) -> None:
    """Send ``call`` with a live session's tokens where it asks for them; assert the answer
    is no 5xx and is the envelope, and that what a login stored can be listed."""
    client = app.test_client()
    pair = _fresh_pair(app, service)
    headers = dict(call["headers"])
    credential = call["credential"]
    if credential == "access":
        headers["Authorization"] = f"Bearer {pair.access_token}"
    elif credential == "refresh":
        headers["Authorization"] = f"Bearer {pair.refresh_token}"
    elif credential == "client":
        headers["Authorization"] = BASIC_CLIENT
    elif credential == "garbage":
        headers["Authorization"] = call["garbage"]
    elif credential == "basic":
        headers["Authorization"] = "Basic " + call["garbage"]
    elif credential == "cookie":
        planted = call["garbage"]
        headers["Cookie"] = f"{REFRESH_COOKIE}={pair.refresh_token}; {CSRF_COOKIE}={planted}"
        headers.setdefault(CSRF_HEADER, pair.csrf_token)
    # Straight into the WSGI environ, as a server would put them: the test client's
    # header checks are not under test.
    environ = {"HTTP_" + name.upper().replace("-", "_"): v for name, v in headers.items()}

    response = client.open(
        call["path"],
        method=call["method"],
        data=_encoded_body(call, pair),
        content_type=call["content_type"] or CONTENT_TYPES.get(call["kind"]),
        environ_base=environ,
    )
    response.close()  # a file answer (account page assets) holds its file open until then

    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if not _is_envelope_exempt(call["path"]) or response.status_code >= 400:
        envelope = response.get_json()
        assert set(envelope) == {"code", "msg", "data"}, envelope
        if envelope["code"] >= 400:
            assert envelope["data"]["error"] in STATUS_BY_SLUG
    if call["path"] == LOGIN and response.status_code == 200:
        access = response.get_json()["data"]["access_token"]
        listed = client.get(SESSIONS, headers=bearer(access))
        assert listed.status_code == 200, listed.get_json()
    if call["path"] == PASSWORD_CHANGE and response.status_code == 200:
        service.reset_password(USERNAME, PASSWORD)  # keep alice's logins working


@settings(FUZZ_SETTINGS, max_examples=200)
@given(call=requests_())
def test_arbitrary_input_at_every_endpoint_is_never_a_5xx(fuzz_app, call):
    """Arbitrary JSON, text (lone surrogates, NUL), form bodies, header values, cookies and
    credentials at every endpoint: never a 5xx; always the envelope with a known slug
    (except the documented non-envelope documents and pages); and whatever a login
    stored, the session list of the account still answers 200."""
    _check_request(*fuzz_app, call)


CREDENTIAL_FOR_BODY = {
    LOGIN: "none",
    REFRESH: "none",
    PASSWORD_CHANGE: "access",
    INTROSPECT: "client",
    REVOKE: "client",
}


@st.composite
def odd_field_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid JSON request, properly authenticated, with one field made odd (any text or
    JSON, or its valid value followed by odd text), sometimes an unknown field, and odd
    User-Agent and X-Forwarded-For headers: the input reaches what stands behind the
    schema."""
    path = draw(st.sampled_from(list(FIELDS)))
    body = dict(FIELDS[path])
    name = draw(st.sampled_from(list(body)))
    valid = body[name]
    body[name] = draw(st.just(valid) | any_text | json_values | any_text.map(valid.__add__))
    if draw(st.integers(0, 3)) == 0:
        body[draw(any_text)] = draw(json_values)  # an unknown field, reported by its name
    headers = draw(
        st.fixed_dictionaries(
            {}, optional={"User-Agent": header_values, "X-Forwarded-For": header_values}
        )
    )
    return {
        "method": "POST",
        "path": path,
        "body": body,
        "kind": draw(st.sampled_from(["json", "json", "form"])),
        "content_type": None,
        "headers": headers,
        "credential": CREDENTIAL_FOR_BODY[path],
        "garbage": "",
    }


@settings(FUZZ_SETTINGS, max_examples=150)
@given(call=odd_field_requests())
def test_one_odd_field_in_a_valid_request_is_never_a_5xx(fuzz_app, call):
    """A valid, authenticated request to each endpoint that takes a body, with one odd
    field and odd headers: never a 5xx, always the envelope, nothing unlistable stored."""
    _check_request(*fuzz_app, call)
