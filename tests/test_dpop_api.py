"""Device-bound sessions over the API (DPoP, RFC 9449): login, /me, refresh, logout, attackers.

Every test runs on fakeredis, a real Redis and the real Redis Cluster (the replay memory
lives in the session's scripts, in the user's slot).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest

from authsvc.cookies import CSRF_COOKIE
from tests.conftest import bearer, login
from tests.dpop_keys import DeviceKey

pytestmark = pytest.mark.cluster

LOGIN = "/api/v1/user/login"
ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"
LOGOUT = "/api/v1/user/logout"
SESSIONS = "/api/v1/user/sessions"


def dpop_login(client: Any, key: DeviceKey, **extra: Any) -> dict[str, Any]:
    """Log alice in with a proof by ``key``; the answer's data (asserting success)."""
    response = client.post(
        LOGIN,
        json={"username": "alice", "password": "correct horse battery", **extra},
        headers={"DPoP": key.proof("POST", LOGIN)},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refresh(client: Any, token: str, key: DeviceKey | None = None, **proof: Any) -> Any:
    headers = {"DPoP": key.proof("POST", REFRESH, **proof)} if key else {}
    return client.post(REFRESH, json={"refresh_token": token}, headers=headers)


def me(client: Any, token: str, key: DeviceKey, **proof: Any) -> Any:
    return client.get(ME, headers=key.headers("GET", ME, token, **proof))


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["data"]["error"]


# -- the bound session's life ----------------------------------------------------------


def test_a_login_with_a_proof_opens_a_bound_session(client, user):
    """token_type DPoP, cnf.jkt = the key's thumbprint in both tokens; /me and the sessions
    list say bound; a login without a proof stays a bearer session."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    assert pair["token_type"] == "DPoP"
    assert claims(pair["access_token"])["cnf"] == {"jkt": key.jkt}
    assert claims(pair["refresh_token"])["cnf"] == {"jkt": key.jkt}
    identity = me(client, pair["access_token"], key).get_json()["data"]
    assert identity["bound"] is True
    assert identity["cnf"] == {"jkt": key.jkt}
    plain = login(client).get_json()["data"]
    assert plain["token_type"] == "Bearer"
    assert "cnf" not in claims(plain["access_token"])
    listed = client.get(SESSIONS, headers=key.headers("GET", SESSIONS, pair["access_token"]))
    bound = {s["session_id"]: s["bound"] for s in listed.get_json()["data"]["sessions"]}
    assert bound == {pair["session_id"]: True, plain["session_id"]: False}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_bound_login_me_refresh_and_logout(client, user, alg):
    """The whole life of a bound session with each algorithm: every use carries a proof."""
    key = DeviceKey(alg)
    pair = dpop_login(client, key)
    assert me(client, pair["access_token"], key).status_code == 200
    rotated = refresh(client, pair["refresh_token"], key)
    assert rotated.status_code == 200, rotated.get_json()
    new = rotated.get_json()["data"]
    assert new["token_type"] == "DPoP"
    assert claims(new["access_token"])["cnf"] == {"jkt": key.jkt}
    assert me(client, new["access_token"], key).status_code == 200
    out = client.post(LOGOUT, headers=key.headers("POST", LOGOUT, new["access_token"]))
    assert out.status_code == 200, out.get_json()
    assert error(refresh(client, new["refresh_token"], key)) == (401, "session_revoked")


def test_a_bound_access_token_as_bearer_or_without_a_proof_is_refused(client, user):
    """Presented as Bearer: token_invalid; as DPoP without a proof: invalid_dpop_proof; both
    401 with a DPoP challenge in the envelope."""
    key = DeviceKey()
    token = dpop_login(client, key)["access_token"]
    as_bearer = client.get(ME, headers=bearer(token))
    assert error(as_bearer) == (401, "token_invalid")
    no_proof = client.get(ME, headers={"Authorization": f"DPoP {token}"})
    assert error(no_proof) == (401, "invalid_dpop_proof")
    challenge = no_proof.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP algs="ES256 EdDSA RS256", error="invalid_dpop_proof"')


def test_an_unbound_token_with_the_dpop_scheme_is_refused(client, user):
    """RFC 9449 section 7.1: the DPoP scheme needs a DPoP-bound token."""
    token = login(client).get_json()["data"]["access_token"]
    response = me(client, token, DeviceKey())
    assert error(response) == (401, "token_invalid")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "proof",
    [
        {"key": "other"},
        {"method": "POST"},
        {"path": "/api/v1/user/sessions"},
        {"base": "https://localhost"},
        {"access_token": "another-token"},
        {"iat": -120},
        {"iat": +120},
    ],
)
def test_a_resource_proof_with_the_wrong_key_htm_htu_ath_or_iat_is_refused(client, user, proof):
    """Wrong key, htm, htu (path or scheme), ath, a stale or future iat: 401
    invalid_dpop_proof."""
    key = DeviceKey()
    token = dpop_login(client, key)["access_token"]
    signer = DeviceKey() if proof.get("key") == "other" else key
    made = signer.proof(
        proof.get("method", "GET"),
        proof.get("path", ME),
        access_token=proof.get("access_token", token),
        base=proof.get("base", "http://localhost"),
        iat=time.time() + proof.get("iat", 0),
    )
    response = client.get(ME, headers={"Authorization": f"DPoP {token}", "DPoP": made})
    assert error(response) == (401, "invalid_dpop_proof")
    assert me(client, token, key).status_code == 200  # the session is untouched


def test_the_same_proof_twice_is_a_replay(client, user):
    """A proof is good once: the same proof again is refused (remembered in Redis)."""
    key = DeviceKey()
    token = dpop_login(client, key)["access_token"]
    headers = key.headers("GET", ME, token)
    assert client.get(ME, headers=headers).status_code == 200
    assert error(client.get(ME, headers=headers)) == (401, "invalid_dpop_proof")
    refresh_token = dpop_login(client, key)["refresh_token"]
    proof = key.proof("POST", REFRESH)
    first = client.post(REFRESH, json={"refresh_token": refresh_token}, headers={"DPoP": proof})
    assert first.status_code == 200
    again = client.post(REFRESH, json={"refresh_token": refresh_token}, headers={"DPoP": proof})
    assert error(again) == (400, "invalid_dpop_proof")


def test_a_replayed_login_proof_opens_no_second_session(client, user):
    """The login's proof is remembered too: sent again, it is refused."""
    key = DeviceKey()
    proof = key.proof("POST", LOGIN)
    body = {"username": "alice", "password": "correct horse battery"}
    assert client.post(LOGIN, json=body, headers={"DPoP": proof}).status_code == 200
    assert error(client.post(LOGIN, json=body, headers={"DPoP": proof})) == (
        400,
        "invalid_dpop_proof",
    )


# -- attackers -----------------------------------------------------------------------


def test_a_thief_without_the_key_changes_nothing(client, user, service):
    """A stolen bound refresh token, without a proof or with the thief's own key, is refused
    and ends nothing: the device refreshes on, even with the previous token."""
    key, thief = DeviceKey(), DeviceKey()
    pair = dpop_login(client, key)
    rotated = refresh(client, pair["refresh_token"], key).get_json()["data"]
    for stolen in (pair["refresh_token"], rotated["refresh_token"]):
        assert error(refresh(client, stolen)) == (400, "invalid_dpop_proof")
        assert error(refresh(client, stolen, thief)) == (400, "invalid_dpop_proof")
        forged = client.get(ME, headers=thief.headers("GET", ME, rotated["access_token"]))
        assert error(forged) == (401, "invalid_dpop_proof")
    again = refresh(client, pair["refresh_token"], key)  # a lost reply: converges
    assert again.get_json()["data"]["refresh_token"] == rotated["refresh_token"]
    assert refresh(client, rotated["refresh_token"], key).status_code == 200


def test_a_bound_previous_token_converges_at_any_time_and_a_grandparent_is_reuse(
    client, user, service
):
    """Long after the grace window (the store's clock moved minutes on), the previous
    refresh token with a proof gets the issued pair, even after that pair's access token was
    used; two steps back is reuse, and the family ends."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    rotated = refresh(client, pair["refresh_token"], key).get_json()["data"]
    assert me(client, rotated["access_token"], key).status_code == 200  # the pair is used
    real_clock = service.store.clock
    service.store.clock = lambda: real_clock() + 10 * 60 * 1000  # 10 minutes on
    try:
        again = refresh(client, pair["refresh_token"], key)
        assert again.status_code == 200, again.get_json()
        assert again.get_json()["data"]["refresh_token"] == rotated["refresh_token"]
        newest = refresh(client, rotated["refresh_token"], key).get_json()["data"]
        assert error(refresh(client, pair["refresh_token"], key)) == (401, "refresh_reused")
        assert error(refresh(client, newest["refresh_token"], key)) == (401, "session_revoked")
    finally:
        service.store.clock = real_clock


def test_the_bearer_theft_sequence_ends_the_session_at_step_2(make_app, redis_client):
    """Issue 15's sequence with grace 1 s: the device rotates R1 -> R2; 2.2 s later the thief
    replays R1: refresh_reused, the family ends; the device's R2 is dead too."""
    app = make_app(REFRESH_GRACE_SECONDS=1)
    service = app.extensions["authsvc"]
    service.add_user("alice", "correct horse battery", ("admin",))
    client = app.test_client()
    r1 = login(client).get_json()["data"]["refresh_token"]
    r2 = client.get(REFRESH, headers=bearer(r1)).get_json()["data"]
    real_clock = service.store.clock
    service.store.clock = lambda: real_clock() + 2200
    try:
        assert error(client.get(REFRESH, headers=bearer(r1))) == (401, "refresh_reused")
        assert error(client.get(REFRESH, headers=bearer(r2["refresh_token"]))) == (
            401,
            "session_revoked",
        )
        assert error(client.get(ME, headers=bearer(r2["access_token"]))) == (
            401,
            "session_revoked",
        )
    finally:
        service.store.clock = real_clock


def test_a_copied_refresh_cookie_cannot_log_a_bound_browser_out(client, user):
    """Cookie transport: the bound cookie refresh and logout need the key's proof."""
    key = DeviceKey()
    data = dpop_login(client, key, transport="cookie")
    assert data["token_type"] == "DPoP"
    csrf = {"X-CSRF-Token": client.get_cookie(CSRF_COOKIE).value}
    assert error(client.post(LOGOUT, headers=csrf)) == (401, "invalid_dpop_proof")
    rotated = client.post(REFRESH, headers={**csrf, "DPoP": key.proof("POST", REFRESH)})
    assert rotated.status_code == 200, rotated.get_json()
    csrf = {"X-CSRF-Token": client.get_cookie(CSRF_COOKIE).value}
    assert (
        client.post(LOGOUT, headers={**csrf, "DPoP": key.proof("POST", LOGOUT)}).status_code == 200
    )


# -- clients, nonces, visibility ---------------------------------------------------------


def test_a_client_that_requires_dpop_refuses_a_login_without_a_proof(client, user, service):
    """dpop=required: no proof is 400 dpop_required (before the password check); with one,
    a bound session. The built-in default client stays optional."""
    service.clients.add("iot-fw", "Firmware", dpop="required")
    assert error(login(client, client_id="iot-fw")) == (400, "dpop_required")
    assert dpop_login(client, DeviceKey(), client_id="iot-fw")["token_type"] == "DPoP"
    assert login(client).status_code == 200


def test_server_nonces_are_asked_for_and_then_accepted(make_app, redis_client):
    """With AUTHSVC_DPOP_NONCE_SECRET: a proof without the nonce is use_dpop_nonce (400 at
    login, 401 at a resource) with a DPoP-Nonce header; with it, accepted."""
    app = make_app(DPOP_NONCE_SECRET="n" * 32)
    app.extensions["authsvc"].add_user("alice", "correct horse battery", ())
    client = app.test_client()
    key = DeviceKey()
    body = {"username": "alice", "password": "correct horse battery"}
    first = client.post(LOGIN, json=body, headers={"DPoP": key.proof("POST", LOGIN)})
    assert error(first) == (400, "use_dpop_nonce")
    nonce = first.headers["DPoP-Nonce"]
    proof = key.proof("POST", LOGIN, claims={"nonce": nonce})
    second = client.post(LOGIN, json=body, headers={"DPoP": proof})
    assert second.status_code == 200, second.get_json()
    assert second.headers["DPoP-Nonce"]
    token = second.get_json()["data"]["access_token"]
    stale = me(client, token, key)
    assert error(stale) == (401, "use_dpop_nonce")
    assert 'error="use_dpop_nonce"' in stale.headers["WWW-Authenticate"]
    assert me(client, token, key, claims={"nonce": nonce}).status_code == 200


def test_introspection_shows_cnf_and_agrees_with_refresh_for_the_previous_token(
    make_app, redis_client
):
    """A bound access token introspects with cnf.jkt; the previous bound refresh token is
    active past the grace window (refresh would converge), a grandparent is not."""
    secret = "orders-api-secret-0123456789abcdef"
    app = make_app(TOKEN_CLIENTS=f"orders-api:{secret}", REFRESH_GRACE_SECONDS=0)
    app.extensions["authsvc"].add_user("alice", "correct horse battery", ())
    client = app.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(f"orders-api:{secret}".encode()).decode()}

    def introspect(token: str) -> dict[str, Any]:
        return client.post(
            "/api/v1/token/introspect", data={"token": token}, headers=auth
        ).get_json()["data"]

    key = DeviceKey()
    pair = dpop_login(client, key)
    assert introspect(pair["access_token"])["cnf"] == {"jkt": key.jkt}
    rotated = refresh(client, pair["refresh_token"], key).get_json()["data"]
    previous = introspect(pair["refresh_token"])
    assert previous["active"] is True
    assert previous["cnf"] == {"jkt": key.jkt}
    refresh(client, rotated["refresh_token"], key)
    assert introspect(pair["refresh_token"]) == {"active": False}


def test_refused_proofs_are_counted_by_reason(client, user, app):
    """/metrics counts authsvc_dpop_refused_total per reason."""
    key = DeviceKey()
    token = dpop_login(client, key)["access_token"]
    headers = key.headers("GET", ME, token)
    client.get(ME, headers=headers)
    client.get(ME, headers=headers)  # replay
    client.get(ME, headers={"Authorization": f"DPoP {token}", "DPoP": "junk"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'authsvc_dpop_refused_total{reason="replay"} 1.0' in text
    assert 'authsvc_dpop_refused_total{reason="malformed"} 1.0' in text


@pytest.mark.parametrize(
    "header",
    [
        "not a jwt",
        "a.b.c",
        "eyJ0eXAiOiJKV1QifQ.e30.AA",
        "x" * 10_000,
        "\u00e9.\u00e9.\u00e9",
    ],
)
def test_malformed_dpop_headers_are_an_envelope_never_a_5xx(client, user, header):
    """Junk in the DPoP header: 400 at login, 401 at a resource, each invalid_dpop_proof."""
    body = {"username": "alice", "password": "correct horse battery"}
    assert error(client.post(LOGIN, json=body, headers={"DPoP": header})) == (
        400,
        "invalid_dpop_proof",
    )
    token = dpop_login(client, DeviceKey())["access_token"]
    response = client.get(ME, headers={"Authorization": f"DPoP {token}", "DPoP": header})
    assert error(response) == (401, "invalid_dpop_proof")


def test_two_dpop_headers_are_refused(client, user):
    """RFC 9449 section 4.3: exactly one DPoP header."""
    key = DeviceKey()
    response = client.post(
        LOGIN,
        json={"username": "alice", "password": "correct horse battery"},
        headers=[("DPoP", key.proof("POST", LOGIN)), ("DPoP", key.proof("POST", LOGIN))],
    )
    assert error(response) == (400, "invalid_dpop_proof")


def test_a_stolen_bound_refresh_token_is_audited_with_its_session(client, user, caplog):
    """A bound refresh token presented without its key leaves an audit line naming the
    user and session (never the token or the proof)."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    with caplog.at_level("INFO", logger="authsvc.audit"):
        refresh(client, pair["refresh_token"], DeviceKey())
    lines = [r for r in caplog.records if getattr(r, "event", None) == "dpop_refused"]
    assert lines, "no audit line"
    assert lines[0].fields["session_id"] == pair["session_id"]
    assert lines[0].fields["reason"] == "key_mismatch"
    assert pair["refresh_token"] not in caplog.text


def test_the_oauth_token_endpoint_takes_dpop_too(client, user):
    """/oauth/token (refresh_token grant) refuses a bound refresh token without its proof
    with RFC 9449's invalid_dpop_proof (400) and rotates it with one; the RFC 8414
    metadata names the proof algorithms."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    refused = client.post("/oauth/token", data=form)
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_dpop_proof")
    rotated = client.post(
        "/oauth/token", data=form, headers={"DPoP": key.proof("POST", "/oauth/token")}
    )
    assert rotated.status_code == 200, rotated.get_json()
    assert rotated.get_json()["token_type"] == "DPoP"
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA", "RS256"]
