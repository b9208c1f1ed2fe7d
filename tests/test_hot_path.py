"""Per-request work on the hot paths, counted (not timed), so a refactor cannot bring it back.

A protected request and a refresh parse and verify their token once, never through
PyJWT's or flask-jwt-extended's decoders, and make one Redis round trip.
"""

from collections import Counter
from typing import Any

import jwt
import pytest
import redis

from authsvc import tokens
from authsvc.cookies import CSRF_COOKIE
from tests.conftest import bearer, login_pair

ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"


@pytest.fixture
def work(monkeypatch, app):
    """Counts of token parses, signature checks, PyJWT decodes and Redis round trips."""
    counts: Counter[str] = Counter()

    def counting(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    verifier = app.extensions[tokens.VERIFIER_EXTENSION]
    algorithm = type(verifier._implementation)
    monkeypatch.setattr(
        tokens.TokenVerifier,
        "_signed_parts",
        counting("parse", tokens.TokenVerifier._signed_parts),
    )
    monkeypatch.setattr(algorithm, "verify", counting("signature", algorithm.verify))
    # Any PyJWT decode (flask-jwt-extended's decode_token, get_unverified_header,
    # jwt.decode) goes through PyJWS._load.
    monkeypatch.setattr(
        jwt.api_jws.PyJWS, "_load", counting("pyjwt_decode", jwt.api_jws.PyJWS._load)
    )
    # One call of Redis.execute_command or Pipeline.execute is one round trip (a
    # pipeline's own execute_command only queues).
    original_execute = redis.Redis.execute_command

    def execute_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if not isinstance(self, redis.client.Pipeline):
            counts["redis"] += 1
        return original_execute(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(
        redis.client.Pipeline, "execute", counting("redis", redis.client.Pipeline.execute)
    )
    return counts


def test_protected_request_parses_its_token_once_and_makes_one_round_trip(client, user, work):
    """GET /me: one parse, one signature check, no PyJWT decode, one Redis round trip."""
    pair = login_pair(client)
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200  # scripts loaded
    work.clear()
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200
    assert work == {"parse": 1, "signature": 1, "redis": 1}


@pytest.mark.parametrize("form", ["header", "body"])
def test_refresh_parses_its_token_once_and_makes_one_round_trip(client, user, work, form):
    """A rotation (GET with Bearer, or POST JSON): one parse, one Redis round trip."""
    refresh_token = login_pair(client)["refresh_token"]
    for round_number in range(2):  # the first one loads the scripts
        work.clear()
        if form == "header":
            response = client.get(REFRESH, headers=bearer(refresh_token))
        else:
            response = client.post(REFRESH, json={"refresh_token": refresh_token})
        assert response.status_code == 200, (round_number, response.get_json())
        refresh_token = response.get_json()["data"]["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_cookie_refresh_parses_its_token_once_and_makes_one_round_trip(client, user, work):
    """A cookie refresh with its CSRF header: one parse, one Redis round trip."""
    login_pair(client, transport="cookie")
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        csrf = client.get_cookie(CSRF_COOKIE).value
        response = client.get(REFRESH, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200, response.get_json()
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_refused_token_costs_no_round_trip(client, user, work):
    """A token that fails verification is answered without asking Redis."""
    pair = login_pair(client)
    head, _, _ = pair["access_token"].rpartition(".")
    work.clear()
    response = client.get(ME, headers=bearer(f"{head}.{'A' * 43}"))
    assert response.status_code == 401
    assert work["redis"] == 0
    assert work["pyjwt_decode"] == 0


def test_oauth_refresh_grant_parses_once_and_makes_one_round_trip(client, user, work):
    """POST /oauth/token (refresh_token, a public client_id): the same single round trip."""
    refresh_token = login_pair(client)["refresh_token"]
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "default",
        }
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_machine_tokens_cost_counted_round_trips(app, client, work):
    """client_credentials: throttle reserve, client read, settle (3, like a login);
    introspecting a machine token: the caller's client read plus one script (2)."""
    app.extensions["authsvc"].clients.add("job", "Job", ("reports:read",))
    secret = app.extensions["authsvc_client_credentials"].issue_secret("job").secret
    form = {"grant_type": "client_credentials", "client_id": "job", "client_secret": secret}
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 200, response.get_json()
    assert work == {"redis": 3}
    token = response.get_json()["access_token"]
    creds = {"client_id": "job", "client_secret": secret}
    for _ in range(2):
        work.clear()
        answer = client.post("/oauth/introspect", data={"token": token, **creds})
        assert answer.get_json()["active"] is True
    assert work == {"parse": 1, "signature": 1, "redis": 2}
