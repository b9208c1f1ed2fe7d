"""The plain OAuth 2.x endpoints: /oauth/token, /oauth/introspect, /oauth/revoke, RFC 8414."""

from __future__ import annotations

import base64
import socket
from typing import Any

import jwt
import pytest
import redis
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from flask import Flask
from flask.testing import FlaskClient

from authsvc import create_app
from authsvc.client_credentials import ClientCredentials, hash_secret
from authsvc.cookies import REFRESH_COOKIE
from authsvc.oauth_metadata import extend_metadata
from authsvc.service import AuthService
from tests.conftest import (
    ADMIN_CLIENT_ID,
    TEST_SECRET,
    add_admin_client,
    admin_login_pair,
    bearer,
    login_pair,
)

# Also on the real Redis Cluster: the client scripts touch the {clients} slot.
pytestmark = pytest.mark.cluster

TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"
REVOKE = "/oauth/revoke"
RS_ID, RS_SECRET = "orders-api", "orders-api-secret-0123456789abcdef"
MACHINE = "billing-job"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app(TOKEN_CLIENTS=f"{RS_ID}:{RS_SECRET}", LOGIN_MAX_FAILURES_PER_ACCOUNT=3)


@pytest.fixture
def credentials(app: Flask) -> ClientCredentials:
    return app.extensions["authsvc_client_credentials"]


@pytest.fixture
def machine(service: AuthService, credentials: ClientCredentials) -> str:
    """A confidential client allowed reports:read and reports:write; its secret."""
    service.clients.add(MACHINE, "Billing job", ("reports:read", "reports:write"))
    return credentials.issue_secret(MACHINE).secret


def grant(client: FlaskClient, secret: str, **form: str) -> Any:
    return client.post(
        TOKEN, data={"grant_type": "client_credentials", **form}, headers=basic(MACHINE, secret)
    )


def machine_token(client: FlaskClient, secret: str, **form: str) -> dict[str, Any]:
    response = grant(client, secret, **form)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def introspect(client: FlaskClient, token: str) -> dict[str, Any]:
    response = client.post(INTROSPECT, data={"token": token}, headers=basic(RS_ID, RS_SECRET))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_oauth_error(response: Any, error: str, status: int) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    return body


# -- RFC 8414 metadata -------------------------------------------------------------------
def test_metadata_lists_the_endpoints_under_the_issuer_and_passes_authlib(make_app: Any) -> None:
    """With an https issuer the document passes Authlib's RFC 8414 checks (bar one)."""
    app = make_app(JWT_ISSUER="https://auth.example.test")
    response = app.test_client().get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    document = response.get_json()
    assert document["issuer"] == "https://auth.example.test"
    assert document["token_endpoint"] == "https://auth.example.test/oauth/token"
    assert document["introspection_endpoint"] == "https://auth.example.test/oauth/introspect"
    assert document["revocation_endpoint"] == "https://auth.example.test/oauth/revoke"
    assert document["jwks_uri"] == "https://auth.example.test/.well-known/jwks.json"
    assert document["grant_types_supported"] == [
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]
    assert "client_secret_post" in document["token_endpoint_auth_methods_supported"]
    # No authorization endpoint, so no response type: RFC 8414 requires the (empty)
    # member; Authlib insists on a non-empty one, so that one check is left out.
    assert document["response_types_supported"] == []
    metadata = AuthorizationServerMetadata(document)
    for key in metadata.REGISTRY_KEYS:
        if key != "response_types_supported":
            getattr(metadata, f"validate_{key}")()
    # DPoP (RFC 9449 section 5.1) and the device flow (RFC 8628 section 4) add theirs.
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA", "RS256"]
    assert document["device_authorization_endpoint"].endswith("/oauth/device_authorization")


def test_metadata_issuer_is_the_tokens_iss(client: FlaskClient, user: Any) -> None:
    """The issuer equals the access token's iss; a non-URL issuer uses this request's URL."""
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    claims = jwt.decode(login_pair(client)["access_token"], options={"verify_signature": False})
    assert document["issuer"] == claims["iss"] == "authsvc"
    assert document["token_endpoint"] == "http://localhost/oauth/token"


def test_metadata_lists_the_clients_scopes_and_takes_extensions(
    app: Flask, client: FlaskClient, machine: str
) -> None:
    """scopes_supported is every client's; a feature adds its fields through the registry."""
    extend_metadata(app, lambda base: {"example_endpoint": base + "/oauth/example"})
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    assert document["scopes_supported"] == ["profile", "reports:read", "reports:write"]
    assert document["example_endpoint"] == "http://localhost/oauth/example"


def test_openid_configuration_is_not_served(client: FlaskClient) -> None:
    """Not an OpenID provider: no document that would promise ID tokens."""
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 404
    assert response.get_json()["data"]["error"] == "not_found"


# -- client credentials ----------------------------------------------------------------
def test_client_credentials_by_basic_gives_a_machine_token(
    client: FlaskClient, machine: str
) -> None:
    """sub = azp = the client, its scopes, no refresh token, never cached."""
    response = grant(client, machine)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "reports:read reports:write"
    claims = jwt.decode(body["access_token"], TEST_SECRET, algorithms=["HS256"], audience="authsvc")
    assert claims["sub"] == claims["azp"] == claims["client_id"] == MACHINE
    assert claims["gty"] == "client_credentials"
    assert "sid" not in claims
    assert "roles" not in claims


def test_client_credentials_by_post_narrows_the_scope(client: FlaskClient, machine: str) -> None:
    """client_secret_post works; a requested scope narrows the token."""
    response = client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": MACHINE,
            "client_secret": machine,
            "scope": "reports:read",
        },
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "reports:read"


def test_a_scope_the_client_lacks_is_invalid_scope(client: FlaskClient, machine: str) -> None:
    """Asking for more than the client allows is refused, not trimmed."""
    assert_oauth_error(grant(client, machine, scope="reports:read admin"), "invalid_scope", 400)


@pytest.mark.parametrize(
    "headers",
    [
        basic(MACHINE, "wrong-secret"),
        basic("nobody", "whatever"),
        basic("default", "whatever"),
        {},
    ],
)
def test_bad_client_authentication_is_401_invalid_client(
    client: FlaskClient, machine: str, headers: dict[str, str]
) -> None:
    """A wrong secret, an unknown or public client, or none: 401 with a Basic challenge."""
    response = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=headers)
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="authsvc"'


def test_a_public_client_gets_no_machine_token(client: FlaskClient, service: AuthService) -> None:
    """A registered client without a secret cannot use client_credentials with its id alone."""
    service.clients.add("thermostat", "Thermostat")
    response = client.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": "thermostat"}
    )
    assert_oauth_error(response, "invalid_client", 401)


def test_client_credentials_are_throttled_like_logins(client: FlaskClient, machine: str) -> None:
    """After the per-client failure budget, even the right secret waits (429 Retry-After)."""
    for _ in range(3):
        assert grant(client, "wrong-secret").status_code == 401
    response = grant(client, machine)
    assert_oauth_error(response, "too_many_attempts", 429)
    assert int(response.headers["Retry-After"]) >= 1


def test_the_secret_is_stored_hashed(app: Flask, machine: str) -> None:
    """Someone reading Redis finds a keyed hash, never the secret."""
    store = app.extensions["authsvc"].store
    raw = store.redis.hgetall(store._client_key(MACHINE))
    assert machine not in str(raw)
    assert raw["sec"] == hash_secret(MACHINE, machine)


def test_rotation_keeps_the_old_secret_for_the_overlap_only(
    app: Flask, client: FlaskClient, credentials: ClientCredentials, machine: str
) -> None:
    """Both secrets work during the overlap; after its deadline only the new one."""
    new = credentials.issue_secret(MACHINE, overlap_seconds=3600)
    assert new.previous_valid_until is not None
    assert grant(client, machine).status_code == 200
    assert grant(client, new.secret).status_code == 200
    store = app.extensions["authsvc"].store
    # The deadline passes (written to Redis as the clock would make it).
    store.redis.hset(store._client_key(MACHINE), "psecexp", store.clock() - 1)
    assert_oauth_error(grant(client, machine), "invalid_client", 401)
    assert grant(client, new.secret).status_code == 200


def test_rotation_without_overlap_ends_the_old_secret_now(
    client: FlaskClient, credentials: ClientCredentials, machine: str
) -> None:
    """overlap 0: the old secret stops at once."""
    new = credentials.issue_secret(MACHINE, overlap_seconds=0)
    assert new.previous_valid_until is None
    assert_oauth_error(grant(client, machine), "invalid_client", 401)
    assert grant(client, new.secret).status_code == 200


# -- machine tokens: introspection, revocation, the user API -------------------------------
def test_a_machine_token_introspects_and_is_revoked_by_jti(
    client: FlaskClient, machine: str
) -> None:
    """Active with sub = client_id = the client; after /oauth/revoke, inactive."""
    token = machine_token(client, machine)["access_token"]
    data = introspect(client, token)
    assert data["active"] is True
    assert data["sub"] == data["client_id"] == data["azp"] == MACHINE
    assert data["scope"] == "reports:read reports:write"
    response = client.post(REVOKE, data={"token": token}, headers=basic(MACHINE, machine))
    assert response.status_code == 200
    assert introspect(client, token) == {"active": False}
    # Another machine token of the same client lives on.
    assert introspect(client, machine_token(client, machine)["access_token"])["active"] is True


def test_making_the_client_public_or_deleting_it_kills_its_tokens(
    client: FlaskClient, service: AuthService, credentials: ClientCredentials, machine: str
) -> None:
    """No confidential client, no live machine token; a new secret does not revive them."""
    token = machine_token(client, machine)["access_token"]
    credentials.remove_secret(MACHINE)
    assert introspect(client, token) == {"active": False}
    credentials.issue_secret(MACHINE)
    assert introspect(client, token) == {"active": False}
    second = machine_token(client, credentials.issue_secret(MACHINE, overlap_seconds=0).secret)
    service.clients.delete(MACHINE)
    assert introspect(client, second["access_token"]) == {"active": False}


def test_a_scope_taken_from_the_client_leaves_its_tokens(
    client: FlaskClient, service: AuthService, machine: str
) -> None:
    """Introspection reports only the scopes the client still allows."""
    token = machine_token(client, machine)["access_token"]
    service.clients.update(MACHINE, scopes=("reports:read",))
    assert introspect(client, token)["scope"] == "reports:read"


def test_the_user_api_refuses_a_machine_token(client: FlaskClient, machine: str) -> None:
    """A machine token has no user: wrong_token_type on /me, invalid_grant as a refresh token."""
    token = machine_token(client, machine)["access_token"]
    response = client.get("/api/v1/user/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["data"]["error"] == "wrong_token_type"
    refresh = client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token})
    assert_oauth_error(refresh, "invalid_grant", 400)


def test_a_forged_machine_token_is_inactive(client: FlaskClient, machine: str) -> None:
    """gty claims signed with another key, or altered, are not machine tokens."""
    token = machine_token(client, machine)["access_token"]
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="authsvc")
    forged = jwt.encode({**claims, "scope": "admin"}, "x" * 48, algorithm="HS256")
    assert introspect(client, forged) == {"active": False}
    other = jwt.encode(
        {**claims, "azp": "someone-else"},
        TEST_SECRET,
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": jwt.get_unverified_header(token)["kid"]},
    )
    assert introspect(client, other) == {"active": False}


# -- the refresh grant ---------------------------------------------------------------------
def test_refresh_grant_rotates_and_detects_reuse(make_app: Any, service: AuthService) -> None:
    """The /api/v1/user/refresh rotation: a new pair; past the grace window, the old
    token is reuse and ends the session."""
    client = make_app(REFRESH_GRACE_SECONDS=0).test_client()
    service.add_user("alice", "correct horse battery")
    pair = login_pair(client)
    response = client.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "client_id": "default",
        },
    )
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    rotated = response.get_json()
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert rotated["token_type"] == "Bearer"
    assert client.get("/api/v1/user/me", headers=bearer(rotated["access_token"])).status_code == 200
    replay = client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    body = assert_oauth_error(replay, "invalid_grant", 400)
    assert body["error_description"] == "refresh_reused"
    again = client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}
    )
    assert_oauth_error(again, "invalid_grant", 400)


def test_refresh_grant_narrows_the_scope(
    client: FlaskClient, service: AuthService, user: Any
) -> None:
    """scope narrows (RFC 6749 section 6); a wider one is invalid_scope."""
    add_admin_client(service)
    pair = login_pair(client, client_id=ADMIN_CLIENT_ID, scope="admin profile")
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    assert_oauth_error(
        client.post(TOKEN, data={**form, "scope": "admin other"}), "invalid_scope", 400
    )
    response = client.post(TOKEN, data={**form, "scope": "profile"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "profile"


def test_refresh_grant_refuses_another_clients_token(
    client: FlaskClient, service: AuthService, user: Any, machine: str
) -> None:
    """A client_id (public or authenticated) other than the token's azp is invalid_grant."""
    pair = login_pair(client)
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    body = assert_oauth_error(
        client.post(TOKEN, data={**form, "client_id": MACHINE}), "invalid_grant", 400
    )
    assert "another client" in body["error_description"]
    authenticated = client.post(TOKEN, data=form, headers=basic(MACHINE, machine))
    assert_oauth_error(authenticated, "invalid_grant", 400)
    # Nothing rotated: the token still works for its own client.
    assert client.post(TOKEN, data={**form, "client_id": "default"}).status_code == 200


def test_a_confidential_client_refreshes_its_users_tokens(
    client: FlaskClient, service: AuthService, credentials: ClientCredentials, user: Any
) -> None:
    """A web back-end (confidential) logs a user in, then refreshes with its secret."""
    service.clients.add("web", "Web back-end")
    secret = credentials.issue_secret("web").secret
    pair = login_pair(client, client_id="web")
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    assert_oauth_error(
        client.post(TOKEN, data=form, headers=basic("web", "wrong")), "invalid_client", 401
    )
    response = client.post(TOKEN, data=form, headers=basic("web", secret))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("form", "error", "status"),
    [
        (
            {"grant_type": "password", "username": "a", "password": "b"},
            "unsupported_grant_type",
            400,
        ),
        ({"grant_type": "refresh_token"}, "invalid_request", 400),
        ({"scope": "profile"}, "invalid_request", 400),
        ({"grant_type": "refresh_token", "refresh_token": "not-a-jwt"}, "invalid_grant", 400),
    ],
)
def test_token_endpoint_refusals_are_rfc_6749_errors(
    client: FlaskClient, form: dict[str, str], error: str, status: int
) -> None:
    """Every refusal is {"error", "error_description"} with the RFC's status."""
    assert_oauth_error(client.post(TOKEN, data=form), error, status)


def test_token_endpoint_wants_a_form_once(client: FlaskClient) -> None:
    """JSON is 415, a repeated parameter 400, GET 405 with Allow: all in RFC 6749 JSON."""
    response = client.post(TOKEN, json={"grant_type": "client_credentials"})
    assert_oauth_error(response, "invalid_request", 415)
    repeated = client.post(
        TOKEN,
        data="grant_type=refresh_token&grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
    )
    assert_oauth_error(repeated, "invalid_request", 400)
    get = client.get(TOKEN)
    assert_oauth_error(get, "invalid_request", 405)
    assert "POST" in get.headers["Allow"]


def test_two_client_authentication_methods_are_refused(client: FlaskClient, machine: str) -> None:
    """RFC 6749 section 2.3: Basic and client_secret in the form together is invalid_request."""
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_secret": machine},
        headers=basic(MACHINE, machine),
    )
    assert_oauth_error(response, "invalid_request", 400)


def test_a_basic_client_and_another_client_id_are_refused(
    client: FlaskClient, machine: str
) -> None:
    """client_id in the form must name the Basic client (else invalid_request)."""
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "someone-else"},
        headers=basic(MACHINE, machine),
    )
    assert_oauth_error(response, "invalid_request", 400)


# -- /oauth/introspect and /oauth/revoke ------------------------------------------------------
def test_oauth_introspection_answers_plain_rfc_7662(client: FlaskClient, user: Any) -> None:
    """Plain JSON (no envelope); a logged-out token is inactive at once."""
    pair = login_pair(client)
    data = introspect(client, pair["access_token"])
    assert data["active"] is True
    assert data["username"] == "alice"
    client.post("/api/v1/user/logout", headers=bearer(pair["access_token"]))
    assert introspect(client, pair["access_token"]) == {"active": False}


@pytest.mark.parametrize("url", [INTROSPECT, REVOKE])
def test_oauth_introspection_and_revocation_need_a_client(
    client: FlaskClient, user: Any, url: str
) -> None:
    """No or wrong credentials: 401 invalid_client in RFC 6749 JSON."""
    token = login_pair(client)["access_token"]
    for headers in ({}, basic(RS_ID, "wrong"), bearer(token)):
        assert_oauth_error(
            client.post(url, data={"token": token}, headers=headers), "invalid_client", 401
        )


def test_a_confidential_client_introspects_by_post_and_revokes_only_its_own(
    client: FlaskClient, user: Any, machine: str
) -> None:
    """client_secret_post works; revoking another client's token is unauthorized_client."""
    pair = login_pair(client)
    creds = {"client_id": MACHINE, "client_secret": machine}
    response = client.post(INTROSPECT, data={"token": pair["access_token"], **creds})
    assert response.get_json()["active"] is True
    refused = client.post(REVOKE, data={"token": pair["refresh_token"], **creds})
    assert_oauth_error(refused, "unauthorized_client", 400)
    assert introspect(client, pair["refresh_token"])["active"] is True


def test_oauth_revocation_of_a_refresh_token_ends_the_session(
    client: FlaskClient, user: Any
) -> None:
    """RFC 7009: 200 (also for garbage); the session's tokens are inactive."""
    pair = login_pair(client)
    for token in ("garbage", pair["refresh_token"]):
        response = client.post(REVOKE, data={"token": token}, headers=basic(RS_ID, RS_SECRET))
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
    assert introspect(client, pair["access_token"]) == {"active": False}


# -- admin API ---------------------------------------------------------------------------------
def test_admin_api_issues_and_removes_a_secret(
    client: FlaskClient, service: AuthService, user: Any
) -> None:
    """POST .../secret shows the secret once; DELETE makes the client public again."""
    add_admin_client(service)
    service.clients.add(MACHINE, "Billing job", ("reports:read",))
    admin = bearer(admin_login_pair(client)["access_token"])
    url = f"/api/v1/admin/clients/{MACHINE}/secret"
    response = client.post(url, json={"overlap_seconds": 0}, headers=admin)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["client_id"] == MACHINE
    assert data["previous_secret_valid_until"] is None
    assert grant(client, data["client_secret"]).status_code == 200
    assert client.delete(url, headers=admin).status_code == 200
    assert_oauth_error(grant(client, data["client_secret"]), "invalid_client", 401)
    for bad in ("/api/v1/admin/clients/nobody/secret", "/api/v1/admin/clients/default/secret"):
        answer = client.post(bad, headers=admin)
        assert answer.get_json()["data"]["error"] in ("not_found", "validation_failed")
    assert client.post(url, json={"overlap_seconds": -1}, headers=admin).status_code == 422


def test_the_enveloped_endpoints_accept_a_confidential_client(
    client: FlaskClient, user: Any, machine: str
) -> None:
    """/api/v1/token/introspect authenticates registered confidential clients too."""
    pair = login_pair(client)
    response = client.post(
        "/api/v1/token/introspect",
        data={"token": pair["access_token"]},
        headers=basic(MACHINE, machine),
    )
    assert response.status_code == 200
    assert response.get_json()["data"]["active"] is True
    wrong = client.post(
        "/api/v1/token/introspect",
        data={"token": pair["access_token"]},
        headers=basic(MACHINE, "wrong"),
    )
    assert wrong.get_json()["data"]["error"] == "invalid_client"


def test_a_client_credentials_flood_from_one_network_is_throttled(make_app: Any) -> None:
    """Guesses spread over many client ids still count against the caller's network."""
    app = make_app(LOGIN_MAX_FAILURES_PER_IP=3)
    client = app.test_client()
    for index in range(3):
        form = {"grant_type": "client_credentials", "client_id": f"c{index}", "client_secret": "x"}
        assert client.post(TOKEN, data=form).status_code == 401
    form = {"grant_type": "client_credentials", "client_id": "c9", "client_secret": "x"}
    assert_oauth_error(client.post(TOKEN, data=form), "too_many_attempts", 429)


def test_a_cookie_only_clients_session_is_refused_at_the_token_endpoint(
    client: FlaskClient, service: AuthService, user: Any
) -> None:
    """The session's client transports hold here too: the form is the body transport."""
    service.clients.add("web", "Web", transports=("cookie",))
    client.post(
        "/api/v1/user/login",
        json={"username": "alice", "password": "correct horse battery", "client_id": "web",
              "transport": "cookie"},
    )  # fmt: skip
    refresh = client.get_cookie(REFRESH_COOKIE)
    assert refresh is not None
    form = {"grant_type": "refresh_token", "refresh_token": refresh.value, "client_id": "web"}
    body = assert_oauth_error(client.post(TOKEN, data=form), "unauthorized_client", 400)
    assert body["error_description"] == "transport_not_allowed"


def test_unknown_oauth_paths_and_outages_answer_in_rfc_6749_json() -> None:
    """A 404 under /oauth/ and Redis down (503 temporarily_unavailable, Retry-After)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = redis.Redis(port=port, socket_connect_timeout=0.2, decode_responses=True)
    app = create_app({"JWT_SECRET": TEST_SECRET}, redis_client=down)
    client = app.test_client()
    assert_oauth_error(client.get("/oauth/nothing"), "invalid_request", 404)
    form = {"grant_type": "client_credentials", "client_id": MACHINE, "client_secret": "x"}
    response = client.post(TOKEN, data=form)
    assert_oauth_error(response, "temporarily_unavailable", 503)
    assert response.headers["Retry-After"] == "1"
