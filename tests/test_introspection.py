"""Introspection (RFC 7662) and revocation (RFC 7009) for resource servers."""

import base64

import pytest

from tests.conftest import PASSWORD, bearer, login_pair

# Also on the real Redis Cluster (conftest's redis_client).
pytestmark = pytest.mark.cluster

CLIENT_ID = "orders-api"
CLIENT_SECRET = "orders-api-secret-0123456789abcdef"
INTROSPECT = "/api/v1/token/introspect"
REVOKE = "/api/v1/token/revoke"


def basic(client_id=CLIENT_ID, secret=CLIENT_SECRET):
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def app(make_app):
    return make_app(TOKEN_CLIENTS=f"{CLIENT_ID}:{CLIENT_SECRET},other:{'x' * 24}")


def introspect(client, token, **extra):
    response = client.post(INTROSPECT, data={"token": token, **extra}, headers=basic())
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


@pytest.mark.parametrize(
    "headers",
    [{}, basic(secret="wrong-secret-0123456789abcdef"), basic(client_id="nobody"), bearer("x.y.z")],
)
def test_introspection_needs_client_credentials(client, user, headers):
    """Without valid HTTP Basic client credentials: 401 invalid_client with a Basic challenge."""
    pair = login_pair(client)
    for url in (INTROSPECT, REVOKE):
        response = client.post(url, data={"token": pair["access_token"]}, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["data"]["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"] == 'Basic realm="authsvc"'


def test_a_live_access_token_is_active_with_its_claims(client, user):
    """A live access token introspects as active, with sub, username, sid, exp, roles."""
    pair = login_pair(client)
    data = introspect(client, pair["access_token"])
    assert data["active"] is True
    assert data["token_type"] == "access_token"
    assert data["username"] == "alice"
    assert data["sid"] == pair["session_id"]
    assert data["roles"] == ["admin"]
    assert data["exp"] > data["iat"]


def test_introspection_sees_a_logout_at_once(client, user):
    """After logout the same access token is inactive: only `active: false`, no reason."""
    pair = login_pair(client)
    client.post("/api/v1/user/logout", headers=bearer(pair["access_token"]))
    assert introspect(client, pair["access_token"]) == {"active": False}
    assert introspect(client, pair["refresh_token"]) == {"active": False}


def test_only_the_current_refresh_token_is_active(make_app, redis_client):
    """Without a grace window a rotated-away refresh token is inactive, its successor
    active; nothing rotates."""
    app = make_app(TOKEN_CLIENTS=f"{CLIENT_ID}:{CLIENT_SECRET}", REFRESH_GRACE_SECONDS=0)
    app.extensions["authsvc"].add_user("alice", PASSWORD, ("admin",))
    client = app.test_client()
    pair = login_pair(client)
    assert introspect(client, pair["refresh_token"])["token_type"] == "refresh_token"
    rotated = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    new_refresh = rotated.get_json()["data"]["refresh_token"]
    assert introspect(client, pair["refresh_token"]) == {"active": False}
    assert introspect(client, new_refresh, token_type_hint="access_token")["active"] is True
    assert introspect(client, new_refresh)["active"] is True  # introspecting twice is harmless


def test_the_previous_refresh_token_is_active_exactly_when_refresh_would_accept_it(client, user):
    """Within the grace window /refresh hands the previous bearer refresh token the issued
    pair, so introspection calls it active too; once it is reuse, both agree it is dead."""
    pair = login_pair(client)
    rotated = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    assert introspect(client, pair["refresh_token"])["active"] is True
    again = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    issued, handed_again = rotated.get_json()["data"], again.get_json()["data"]
    # The same pair; its lifetimes count from now, and a second boundary may lie between.
    lifetimes = ("expires_in", "refresh_expires_in")
    assert {k: v for k, v in handed_again.items() if k not in lifetimes} == {
        k: v for k, v in issued.items() if k not in lifetimes
    }
    for name in lifetimes:
        assert issued[name] - 1 <= handed_again[name] <= issued[name]
    newest = client.get(
        "/api/v1/user/refresh", headers=bearer(rotated.get_json()["data"]["refresh_token"])
    )
    assert newest.status_code == 200
    assert introspect(client, pair["refresh_token"]) == {"active": False}  # a grandparent
    replay = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    assert replay.get_json()["data"]["error"] == "refresh_reused"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000])
def test_junk_is_inactive(client, token):
    """Anything that is not a live token of ours is simply inactive (or a 422 if oversized)."""
    response = client.post(INTROSPECT, data={"token": token}, headers=basic())
    if len(token) > 4096:
        assert response.get_json()["data"]["error"] == "validation_failed"
    else:
        assert response.get_json()["data"] == {"active": False}


def test_json_bodies_are_accepted_too(client, user):
    """Besides the RFC's form encoding, a JSON body works."""
    pair = login_pair(client)
    response = client.post(INTROSPECT, json={"token": pair["access_token"]}, headers=basic())
    assert response.get_json()["data"]["active"] is True


def test_revoking_a_refresh_token_ends_its_session(client, user):
    """RFC 7009 revoke of a refresh token: the session and its tokens are dead."""
    pair = login_pair(client)
    other = login_pair(client)
    response = client.post(REVOKE, data={"token": pair["refresh_token"]}, headers=basic())
    assert response.status_code == 200
    refreshed = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    assert refreshed.get_json()["data"]["error"] == "session_revoked"
    me = client.get("/api/v1/user/me", headers=bearer(pair["access_token"]))
    assert me.get_json()["data"]["error"] == "session_revoked"
    assert client.get("/api/v1/user/me", headers=bearer(other["access_token"])).status_code == 200


def test_revoking_an_access_token_denies_only_it(client, user):
    """Revoke of an access token: that token is refused, the session's refresh still works."""
    pair = login_pair(client)
    client.post(REVOKE, data={"token": pair["access_token"]}, headers=basic())
    me = client.get("/api/v1/user/me", headers=bearer(pair["access_token"]))
    assert me.get_json()["data"]["error"] == "token_revoked"
    refreshed = client.get("/api/v1/user/refresh", headers=bearer(pair["refresh_token"]))
    assert refreshed.status_code == 200


def test_revoking_an_unknown_token_answers_200(client):
    """RFC 7009 section 2.2: an invalid or unknown token still gets 200."""
    response = client.post(REVOKE, data={"token": "not-a-token"}, headers=basic())
    assert response.status_code == 200
    assert response.get_json()["code"] == 200
