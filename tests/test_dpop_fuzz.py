"""A hypothesis fuzz of the DPoP header: always the envelope, never a 5xx, never logged.

Raw bytes, structured JWS-looking values (random JSON headers and claims, odd base64)
and genuinely signed proofs with random claims go to the login, a bound session's
``/me`` and a bound refresh.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import fakeredis
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsvc import create_app
from authsvc.dpop import Proof
from authsvc.errors import STATUS_BY_SLUG
from authsvc.passwords import Passwords
from authsvc.service import AuthService, Client
from tests.conftest import BASE_SETTINGS, PASSWORD, USERNAME
from tests.dpop_keys import DeviceKey, b64

LOGIN = "/api/v1/user/login"
ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"
KEY = DeviceKey()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
header_fields = st.fixed_dictionaries(
    {},
    optional={
        "typ": st.sampled_from(["dpop+jwt", "JWT", "DPOP+JWT"]) | json_values,
        "alg": st.sampled_from(["ES256", "EdDSA", "RS256", "none", "HS256", "ES384"]) | json_values,
        "jwk": st.just(KEY.jwk)
        | st.builds(
            lambda extra: {**KEY.jwk, **extra},
            st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        )
        | json_values,
        "crit": json_values,
    },
)
claim_fields = st.fixed_dictionaries(
    {},
    optional={
        "jti": st.text(max_size=200) | json_values,
        "htm": st.sampled_from(["GET", "POST", "get"]) | json_values,
        "htu": st.sampled_from(["http://localhost" + p for p in (LOGIN, ME, REFRESH)])
        | st.text(max_size=40)
        | json_values,
        "iat": st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats()
        | st.just(int(time.time()))
        | json_values,
        "ath": st.text(max_size=50) | json_values,
        "nonce": json_values,
    },
)


def _segment(value: Any, mode: str) -> str:
    raw = json.dumps(value).encode() if not isinstance(value, bytes) else value
    text = b64(raw)
    if mode == "padded":
        return base64.urlsafe_b64encode(raw).decode()
    if mode == "standard":
        return base64.b64encode(raw).decode()
    return text


@st.composite
def dpop_headers(draw: st.DrawFn) -> str:
    """One value of the DPoP header: raw junk, a random JWS shape, or a signed proof."""
    kind = draw(st.sampled_from(["raw", "shaped", "signed"]))
    if kind == "raw":
        return draw(st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
    header, claims = draw(header_fields), draw(claim_fields)
    if kind == "signed":
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64(KEY.sign(signing_input.encode()))}"
    mode = draw(st.sampled_from(["canonical", "padded", "standard"]))
    signature = draw(st.binary(max_size=80))
    return ".".join((_segment(header, mode), _segment(claims, mode), _segment(signature, mode)))


@pytest.fixture(scope="module")
def fuzz_app() -> tuple[Flask, AuthService]:
    """An app over fakeredis with alice, throttles that never trip and cheap hashing."""
    app = create_app(
        {
            **BASE_SETTINGS,
            "LOGIN_MAX_FAILURES_PER_ACCOUNT": 10**9,
            "LOGIN_MAX_FAILURES_PER_IP": 10**9,
        },
        redis_client=fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True),
    )
    service: AuthService = app.extensions["authsvc"]
    service.passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    service.add_user(USERNAME, PASSWORD)
    return app, service


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + repr(record.__dict__))


@given(header=dpop_headers(), where=st.sampled_from(["login", "me", "refresh"]))
@settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_dpop_header_gets_the_envelope_never_a_5xx(fuzz_app, header, where):
    """Whatever the DPoP header holds: a 4xx (or 200) envelope with a known slug, and the
    header never appears in a log line."""
    app, service = fuzz_app
    user = service.find_user(USERNAME)
    with app.app_context():
        pair = service.open_session(
            user,
            Client(ip="192.0.2.1"),
            auth_ms=service.store.clock(),
            proof=Proof(
                jkt=KEY.jkt, jti=b64(bytes(16)) + str(time.time_ns()), iat=int(time.time())
            ),
        )
    environ = {"HTTP_DPOP": header}
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    try:
        client = app.test_client()
        if where == "login":
            response = client.post(
                LOGIN, json={"username": USERNAME, "password": PASSWORD}, environ_base=environ
            )
        elif where == "me":
            environ["HTTP_AUTHORIZATION"] = f"DPoP {pair.access_token}"
            response = client.get(ME, environ_base=environ)
        else:
            response = client.post(
                REFRESH, json={"refresh_token": pair.refresh_token}, environ_base=environ
            )
    finally:
        logging.getLogger().removeHandler(lines)
    assert response.status_code < 500, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"code", "msg", "data"}
    if response.status_code != 200:
        assert body["data"]["error"] in STATUS_BY_SLUG
        assert body["code"] == response.status_code
    if len(header) >= 8:
        assert not any(header in line for line in lines.lines)
