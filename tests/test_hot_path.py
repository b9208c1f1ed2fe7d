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
from tests.dpop_keys import DeviceKey
from tests.test_dpop_api import dpop_login

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


def test_a_dpop_protected_request_still_makes_one_round_trip(client, user, work):
    """GET /me of a bound session with a proof: the proof's replay check rides in the same
    script as the access check: one parse of the token, one Redis round trip."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    assert client.get(ME, headers=key.headers("GET", ME, pair["access_token"])).status_code == 200
    work.clear()
    response = client.get(ME, headers=key.headers("GET", ME, pair["access_token"]))
    assert response.status_code == 200, response.get_json()
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_dpop_refresh_still_makes_one_round_trip(client, user, work):
    """A bound rotation with its proof: one parse, one Redis round trip (replay memory
    included)."""
    key = DeviceKey()
    refresh_token = dpop_login(client, key)["refresh_token"]
    for round_number in range(2):  # the first one loads the scripts
        work.clear()
        response = client.post(
            REFRESH, json={"refresh_token": refresh_token}, headers=key.headers("POST", REFRESH)
        )
        assert response.status_code == 200, (round_number, response.get_json())
        refresh_token = response.get_json()["data"]["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_bound_token_without_its_proof_costs_no_round_trip(client, user, work):
    """A bound refresh or access token without a proof by its key is refused before Redis."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    work.clear()
    refused = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert refused.get_json()["data"]["error"] == "invalid_dpop_proof"
    other = DeviceKey().headers("GET", ME, pair["access_token"])
    assert client.get(ME, headers=other).get_json()["data"]["error"] == "invalid_dpop_proof"
    assert work["redis"] == 0
