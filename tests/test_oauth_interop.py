"""Interop: third-party OAuth libraries against the real `authsvc serve` (gunicorn).

Authlib's ``OAuth2Session`` and requests-oauthlib's ``BackendApplicationClient`` are
the clients; a resource server built on Authlib's ``ResourceProtector`` with its
RFC 7662 ``IntrospectTokenValidator`` is the API. None of our code is on the client side.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from flask import Flask, jsonify
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession

from tests.test_e2e import AUTHSVC, HTTP_TIMEOUT, ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

USER = ("interop-user", "interop password 0123")
RESOURCE_SERVER = ("reports-api", "reports-api-secret-0123456789abcdef")
# RFC 8414 section 2: the members every document must have (response_types_supported
# included); token_endpoint too, since a grant other than implicit is supported.
RFC8414_REQUIRED = ("issuer", "token_endpoint", "response_types_supported")


def cli(env: dict[str, str], *args: str) -> str:
    """Run `authsvc ARGS` against the served Redis; its stdout."""
    result = subprocess.run(
        [str(AUTHSVC), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def served(
    real_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, dict[str, str]]]:
    """`authsvc serve` with a user, a confidential machine client and a confidential web
    back-end (secrets made by the CLI), and a resource server allowed to introspect."""
    # This worker's database: the configured one is worker gw0's, which it flushes.
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("interop"),
        users=(USER,),
        REFRESH_GRACE_SECONDS=0,
        TOKEN_CLIENTS=":".join(RESOURCE_SERVER),
    ) as serve:
        env = serve.env
        cli(env, "client", "add", "billing-job", "--name", "Billing", "--scope", "reports:read")
        cli(env, "client", "add", "web", "--name", "Web back-end", "--scope", "profile")
        secrets = {
            "billing-job": cli(env, "client", "secret", "billing-job"),
            "web": cli(env, "client", "secret", "web"),
        }
        yield serve, secrets


@pytest.fixture(scope="module")
def metadata(served: tuple[ServeProcess, dict[str, str]]) -> dict[str, Any]:
    serve, _ = served
    response = requests.get(
        f"{serve.url}/.well-known/oauth-authorization-server", timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200
    return response.json()


def test_the_metadata_document_has_rfc_8414s_required_fields(
    metadata: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every required member; Authlib's validators pass (plain http allowed for the test)."""
    for member in RFC8414_REQUIRED:
        assert member in metadata, member
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    document = AuthorizationServerMetadata(metadata)
    for key in document.REGISTRY_KEYS:
        # Authlib wants a non-empty list; without an authorization endpoint it is empty.
        if key != "response_types_supported":
            getattr(document, f"validate_{key}")()


def test_authlib_client_credentials_then_revocation(
    served: tuple[ServeProcess, dict[str, str]], metadata: dict[str, Any]
) -> None:
    """OAuth2Session gets a machine token (client_secret_basic), revokes it (RFC 7009)."""
    _, secrets = served
    session = OAuth2Session(
        "billing-job", secrets["billing-job"], scope="reports:read", timeout=HTTP_TIMEOUT
    )
    token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "reports:read"
    assert "refresh_token" not in token
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert introspected["active"] is True
    assert introspected["sub"] == "billing-job"
    revoked = session.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
    assert revoked.status_code == 200
    after = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    assert after == {"active": False}


def test_authlib_client_secret_post_and_a_wrong_secret(
    served: tuple[ServeProcess, dict[str, str]], metadata: dict[str, Any]
) -> None:
    """client_secret_post works; a wrong secret is OAuthError invalid_client."""
    _, secrets = served
    session = OAuth2Session(
        "billing-job",
        secrets["billing-job"],
        token_endpoint_auth_method="client_secret_post",
        timeout=HTTP_TIMEOUT,
    )
    assert session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    wrong = OAuth2Session("billing-job", "not-the-secret", timeout=HTTP_TIMEOUT)
    with pytest.raises(OAuthError) as refused:
        wrong.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_requests_oauthlib_backend_application_client(
    served: tuple[ServeProcess, dict[str, str]],
    metadata: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests-oauthlib's client-credentials client gets a machine token too."""
    _, secrets = served
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test server is plain http
    session = OAuthlibSession(client=BackendApplicationClient(client_id="billing-job"))
    token = session.fetch_token(
        metadata["token_endpoint"],
        client_id="billing-job",
        client_secret=secrets["billing-job"],
        timeout=HTTP_TIMEOUT,
    )
    assert token["access_token"]
    assert token["scope"] == ["reports:read"]


def _login(serve: ServeProcess, client_id: str) -> dict[str, Any]:
    response = requests.post(
        f"{serve.url}/api/v1/user/login",
        json={"username": USER[0], "password": USER[1], "client_id": client_id},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_authlib_refresh_rotates_detects_reuse_and_revokes(
    served: tuple[ServeProcess, dict[str, str]], metadata: dict[str, Any]
) -> None:
    """A confidential web back-end refreshes a user's tokens with OAuth2Session: rotation,
    then the replayed old token is invalid_grant (reuse), then RFC 7009 revocation."""
    serve, secrets = served
    pair = _login(serve, "web")
    session = OAuth2Session("web", secrets["web"], token=pair, timeout=HTTP_TIMEOUT)
    rotated = session.refresh_token(metadata["token_endpoint"])
    assert rotated["refresh_token"] != pair["refresh_token"]
    me = session.get(f"{serve.url}/api/v1/user/me")  # the new pair is used
    assert me.status_code == 200
    assert me.json()["data"]["client_id"] == "web"
    stale = OAuth2Session("web", secrets["web"], timeout=HTTP_TIMEOUT)
    with pytest.raises(OAuthError) as reused:
        stale.refresh_token(metadata["token_endpoint"], refresh_token=pair["refresh_token"])
    assert reused.value.error == "invalid_grant"
    # Reuse ended the session: the rotated token is dead too. A new login, then revoke.
    fresh = OAuth2Session("web", secrets["web"], token=_login(serve, "web"), timeout=HTTP_TIMEOUT)
    refresh_token = fresh.token["refresh_token"]
    response = fresh.revoke_token(
        metadata["revocation_endpoint"], token=refresh_token, token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    with pytest.raises(OAuthError) as revoked:
        fresh.refresh_token(metadata["token_endpoint"], refresh_token=refresh_token)
    assert revoked.value.error == "invalid_grant"


def test_a_public_device_refreshes_with_its_client_id_only(
    served: tuple[ServeProcess, dict[str, str]], metadata: dict[str, Any]
) -> None:
    """token_endpoint_auth_method=none: client_id in the form, no secret (RFC 6749 public)."""
    serve, _ = served
    pair = _login(serve, "default")
    device = OAuth2Session(
        "default", token=pair, token_endpoint_auth_method="none", timeout=HTTP_TIMEOUT
    )
    rotated = device.refresh_token(metadata["token_endpoint"])
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert rotated["scope"] == "profile"


class AuthsvcIntrospection(IntrospectTokenValidator):
    """Authlib's RFC 7662 validator, asking authsvc's /oauth/introspect."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def introspect_token(self, token_string: str) -> dict[str, Any]:
        response = requests.post(
            self.url, data={"token": token_string}, auth=RESOURCE_SERVER, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        return response.json()


def resource_server(introspection_url: str) -> Flask:
    """A small API protected by Authlib's ResourceProtector over introspection."""
    app = Flask("reports-api")
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(AuthsvcIntrospection(introspection_url))

    @app.get("/reports")
    @require_oauth("reports:read")
    def reports() -> Any:
        return jsonify({"for": current_token["sub"], "reports": []})

    return app


def test_an_authlib_resource_server_accepts_a_live_token_and_refuses_a_revoked_one(
    served: tuple[ServeProcess, dict[str, str]], metadata: dict[str, Any]
) -> None:
    """Live machine token: 200; revoked: 401 invalid_token; a user token without the
    scope: 403 insufficient_scope."""
    serve, secrets = served
    api = resource_server(metadata["introspection_endpoint"]).test_client()
    machine = OAuth2Session("billing-job", secrets["billing-job"], timeout=HTTP_TIMEOUT)
    token = machine.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    live = api.get("/reports", headers=headers)
    assert live.status_code == 200
    assert live.get_json()["for"] == "billing-job"
    machine.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
    refused = api.get("/reports", headers=headers)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "invalid_token"
    user_token = _login(serve, "default")["access_token"]
    narrow = api.get("/reports", headers={"Authorization": f"Bearer {user_token}"})
    assert narrow.status_code == 403
    assert narrow.get_json()["error"] == "insufficient_scope"


def test_the_server_log_holds_no_client_secret(
    served: tuple[ServeProcess, dict[str, str]],
) -> None:
    """Secrets never reach a log line."""
    serve, secrets = served
    log = serve.stderr()
    for secret in secrets.values():
        assert secret not in log
