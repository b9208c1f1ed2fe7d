"""Registered clients and scopes: azp/scope claims, the intersection rule, refresh
narrowing, per-client lifetimes, introspection, sessions, tokens from before clients,
and require_scope. Every test runs on fakeredis and on a real Redis."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest
from flask import Flask

from authsvc import tokens
from authsvc.auth import current_principal, require_scope
from authsvc.clients import ADMIN_SCOPE, InvalidClient
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER
from authsvc.errors import ok
from authsvc.store import RotationStatus
from tests.conftest import PASSWORD, bearer, login, login_pair

API = "/api/v1/user"
ME = f"{API}/me"
REFRESH = f"{API}/refresh"
INTROSPECT = "/api/v1/token/introspect"
RESOURCE_SERVER = "orders-api"
RESOURCE_SECRET = "orders-api-secret-0123456789abcdef"
ADMIN_ONLY = "/test/admin-only"


@pytest.fixture
def app(make_app: Any) -> Flask:
    """The app with a resource server for introspection and a route behind require_scope."""
    app = make_app(TOKEN_CLIENTS=f"{RESOURCE_SERVER}:{RESOURCE_SECRET}")

    @app.get(ADMIN_ONLY)
    @require_scope(ADMIN_SCOPE, role="admin")
    def admin_only() -> Any:
        return ok({"user_id": current_principal().user_id})

    return app


@pytest.fixture
def console(service: Any) -> Any:
    """A registered admin console: scopes admin, orders, profile; body transport only."""
    return service.clients.add(
        "console", "Admin console", ("admin", "orders", "profile"), ("body",)
    )


def claims(token: str) -> dict[str, Any]:
    """The payload of ``token`` (already checked by the service; read here as data)."""
    return jwt.decode(token, options={"verify_signature": False})


def error_of(response: Any) -> tuple[int, str]:
    """The status and ``data.error`` of an error answer."""
    return response.status_code, response.get_json()["data"]["error"]


def refresh(client: Any, refresh_token: str, **extra: Any) -> Any:
    """POST /refresh with the JSON form."""
    return client.post(REFRESH, json={"refresh_token": refresh_token, **extra})


def test_login_with_a_client_and_scope_puts_azp_and_scope_in_both_tokens(client, user, console):
    """Both tokens carry azp (the client id) and scope; the answer says the scope granted."""
    pair = login_pair(client, client_id="console", scope="admin profile")

    assert pair["scope"] == "admin profile"
    for token in (pair["access_token"], pair["refresh_token"]):
        assert (claims(token)["azp"], claims(token)["scope"]) == ("console", "admin profile")
    me = client.get(ME, headers=bearer(pair["access_token"])).get_json()["data"]
    assert (me["client_id"], me["scope"]) == ("console", "admin profile")


def test_a_login_without_client_is_the_default_client_with_profile(client, user):
    """No client_id: azp default, scope profile (admin is not the default client's)."""
    pair = login_pair(client)
    assert (claims(pair["access_token"])["azp"], pair["scope"]) == ("default", "profile")


@pytest.mark.parametrize(
    ("roles", "requested", "granted"),
    [
        # Asked-for scopes the user has no role for are left out, not refused.
        (("admin",), "admin orders profile", "admin profile"),
        ((), "admin profile", "profile"),
        (("orders",), "orders", "orders"),
        # Nothing asked for: every scope of the client the user holds.
        (("admin",), None, "admin profile"),
        (("admin", "orders"), None, "admin orders profile"),
    ],
)
def test_scope_is_requested_and_allowed_and_granted_by_role(
    client, service, console, roles, requested, granted
):
    """scope = requested (or the client's) ∩ allowed ∩ (profile + one scope per role)."""
    service.add_user("bob", PASSWORD, roles)
    extra = {"scope": requested} if requested is not None else {}
    pair = login_pair(client, username="bob", client_id="console", **extra)
    assert pair["scope"] == granted
    assert claims(pair["access_token"])["scope"] == granted


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"client_id": "no-such-app"}, (400, "unknown_client")),
        ({"client_id": "Bad Id!"}, (400, "unknown_client")),
        ({"client_id": "console", "scope": "admin billing"}, (400, "invalid_scope")),
        ({"scope": "admin"}, (400, "invalid_scope")),  # not the default client's
        ({"client_id": "console", "scope": "   "}, (400, "invalid_scope")),
        ({"client_id": "console", "scope": 'quo"te'}, (400, "invalid_scope")),
        ({"client_id": "console", "transport": "cookie"}, (400, "transport_not_allowed")),
    ],
)
def test_client_mistakes_are_clear_slugs_before_the_password_is_checked(
    client, user, console, extra, expected
):
    """Unknown client, scope not allowed, transport not allowed: a 400 slug each, even
    with a wrong password (answered first: no hashing, no throttle attempt)."""
    assert error_of(login(client, **extra)) == expected
    assert error_of(login(client, password="wrong password", **extra)) == expected


def test_refresh_keeps_azp_and_scope_and_may_only_narrow_them(client, user, console):
    """Refresh keeps azp and scope; a narrower scope sticks; a wider one is invalid_scope
    and leaves the refresh token usable."""
    pair = login_pair(client, client_id="console", scope="admin orders profile")
    assert pair["scope"] == "admin profile"  # alice has no orders role

    kept = refresh(client, pair["refresh_token"]).get_json()["data"]
    assert (claims(kept["access_token"])["azp"], kept["scope"]) == ("console", "admin profile")

    narrowed = refresh(client, kept["refresh_token"], scope="profile").get_json()["data"]
    assert narrowed["scope"] == "profile"
    assert claims(narrowed["refresh_token"])["scope"] == "profile"

    assert error_of(refresh(client, narrowed["refresh_token"], scope="admin profile")) == (
        400,
        "invalid_scope",
    )
    # The refused refresh consumed nothing; later refreshes stay narrowed.
    again = refresh(client, narrowed["refresh_token"]).get_json()["data"]
    assert (claims(again["access_token"])["azp"], again["scope"]) == ("console", "profile")


def test_the_rotate_script_refuses_a_wider_scope_without_changing_the_session(
    client, user, console, service
):
    """The atomic check: a scope not within the session's is INVALID_SCOPE, nothing rotates."""
    pair = login_pair(client, client_id="console", scope="profile")
    token = claims(pair["refresh_token"])
    arguments = {
        "new_refresh_jti": "r2",
        "new_access_jti": "a2",
        "issued_at": int(time.time()),
        "grace_ms": 0,
        "idle_ms": 10**9,
        "unused_ms": 0,
    }
    wider = service.store.rotate(
        token["sub"], token["sid"], token["jti"], scope="admin profile", **arguments
    )
    assert wider.status is RotationStatus.INVALID_SCOPE
    same = service.store.rotate(token["sub"], token["sid"], token["jti"], scope="", **arguments)
    assert same.status is RotationStatus.ROTATED
    assert (same.pair.client_id, same.pair.scope) == ("console", "profile")


def test_per_client_lifetimes_are_honoured_at_login_and_refresh(client, user, service):
    """A client's access and refresh lifetimes set expires_in, exp, and survive refresh."""
    service.clients.add("fw", "Device firmware", access_ttl=60, refresh_ttl=3600)
    before = int(time.time())
    pair = login_pair(client, client_id="fw")

    assert (pair["expires_in"], pair["refresh_expires_in"]) == (60, 3600)
    assert claims(pair["access_token"])["exp"] - claims(pair["access_token"])["iat"] == 60
    assert before + 3600 <= claims(pair["refresh_token"])["exp"] <= int(time.time()) + 3600
    renewed = refresh(client, pair["refresh_token"]).get_json()["data"]
    assert renewed["expires_in"] == 60
    assert claims(renewed["refresh_token"])["exp"] == claims(pair["refresh_token"])["exp"]


def test_a_client_lifetime_cannot_exceed_the_service_maximum(service):
    """Registering or updating a client with a lifetime above the service's is refused."""
    with pytest.raises(ValueError, match="1 to 900"):
        service.clients.add("fw", "Firmware", access_ttl=901)
    with pytest.raises(ValueError, match="1 to 2592000"):
        service.clients.add("fw", "Firmware", refresh_ttl=2592001)
    service.clients.add("fw", "Firmware", access_ttl=900)
    with pytest.raises(ValueError, match="1 to 900"):
        service.clients.update("fw", access_ttl=1000)
    assert service.clients.update("fw", access_ttl=0).access_ttl is None  # the service's


def test_client_registry_refuses_bad_or_reserved_settings(service):
    """Taken or reserved ids, unknown transports and bad scopes are ValueErrors; an
    unknown client is a LookupError (the CLI prints one line for either)."""
    service.clients.add("web", "Web front-end", ("profile",), ("cookie",))
    for call, reason in (
        (lambda: service.clients.add("web", "Again"), "taken"),
        (lambda: service.clients.add("default", "Mine"), "reserved"),
        (lambda: service.clients.add("Web App", "Spaces"), "client id must be"),
        (lambda: service.clients.add("app", "App", transports=("pigeon",)), "transports"),
        (lambda: service.clients.add("app", "App", scopes=("has space",)), "scopes"),
        (lambda: service.clients.add("app", "   "), "name"),
        (lambda: service.clients.update("default", name="Mine"), "built-in"),
        (lambda: service.clients.delete("default"), "built-in"),
    ):
        with pytest.raises(ValueError, match=reason):
            call()
    for call in (
        lambda: service.clients.get("nope"),
        lambda: service.clients.update("nope", name="x"),
        lambda: service.clients.delete("nope"),
    ):
        with pytest.raises(LookupError):
            call()
    assert [c.id for c in service.clients.list()] == ["default", "web"]


def test_a_deleted_client_can_no_longer_log_in(client, user, service, console):
    """After delete, its id is unknown_client."""
    service.clients.delete("console")
    assert error_of(login(client, client_id="console")) == (400, "unknown_client")


def introspect(client: Any, token: str) -> dict[str, Any]:
    raw = base64.b64encode(f"{RESOURCE_SERVER}:{RESOURCE_SECRET}".encode()).decode()
    response = client.post(
        INTROSPECT, data={"token": token}, headers={"Authorization": f"Basic {raw}"}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_introspection_shows_client_and_scope_of_both_tokens(client, user, console):
    """RFC 7662: client_id, azp and scope of the access and of the refresh token."""
    pair = login_pair(client, client_id="console", scope="admin")
    for token in (pair["access_token"], pair["refresh_token"]):
        data = introspect(client, token)
        assert data["active"] is True
        assert (data["client_id"], data["azp"], data["scope"]) == ("console", "console", "admin")


def test_sessions_list_shows_the_client_of_each_session(client, user, console):
    """GET /sessions names each session's client."""
    login_pair(client)
    pair = login_pair(client, client_id="console")
    sessions = client.get(f"{API}/sessions", headers=bearer(pair["access_token"]))
    listed = {s["session_id"]: s["client_id"] for s in sessions.get_json()["data"]["sessions"]}
    assert sorted(listed.values()) == ["console", "default"]
    assert listed[pair["session_id"]] == "console"


def legacy_pair(app: Flask, service: Any, user: Any) -> dict[str, str]:
    """A session and tokens exactly as authsvc made them before clients: no azp, no scope."""
    sid, refresh_jti, access_jti = "legacy-sid", "legacy-rjti", "legacy-ajti"
    issued = int(time.time())
    service.store.create_session(
        user.id,
        sid,
        refresh_jti=refresh_jti,
        access_jti=access_jti,
        issued_at=issued,
        expires_ms=(issued + 3600) * 1000,
        device_id=None,
        user_agent=None,
        ip="127.0.0.1",
    )
    with app.app_context():
        signer = app.extensions[tokens.SIGNER_EXTENSION]
        key = signer.active_key()
        common = {"sid": sid, "roles": list(user.roles)}
        access = signer.claims(tokens.ACCESS, user.id, access_jti, issued, issued + 900)
        refresh_claims = signer.claims(tokens.REFRESH, user.id, refresh_jti, issued, issued + 3600)
        return {
            "access_token": signer.sign(key, {**access, **common}, typ=tokens.ACCESS_TYP),
            "refresh_token": signer.sign(
                key, {**refresh_claims, **common, "csrf": tokens.csrf_token_for(refresh_jti)}
            ),
        }


def test_tokens_from_before_clients_still_work_as_the_default_client(app, client, service, user):
    """A token without azp/scope verifies as the default client's (scope profile), its
    session refreshes into tokens that carry azp default, and it introspects so."""
    old = legacy_pair(app, service, user)
    assert "azp" not in claims(old["access_token"])

    me = client.get(ME, headers=bearer(old["access_token"]))
    assert me.status_code == 200, me.get_json()
    assert (me.get_json()["data"]["client_id"], me.get_json()["data"]["scope"]) == (
        "default",
        "profile",
    )
    assert (introspect(client, old["access_token"])["azp"]) == "default"
    renewed = refresh(client, old["refresh_token"])
    assert renewed.status_code == 200, renewed.get_json()
    data = renewed.get_json()["data"]
    assert (claims(data["access_token"])["azp"], data["scope"]) == ("default", "profile")


def test_require_scope_needs_the_role_and_the_scope(client, service, user, console):
    """Role admin AND scope admin: 200; the scope missing: 403 insufficient_scope with an
    RFC 6750 challenge; the role missing: 403 forbidden; no token: 401."""
    with_scope = login_pair(client, client_id="console", scope="admin")
    assert client.get(ADMIN_ONLY, headers=bearer(with_scope["access_token"])).status_code == 200

    without_scope = login_pair(client)  # default client: profile only
    response = client.get(ADMIN_ONLY, headers=bearer(without_scope["access_token"]))
    assert error_of(response) == (403, "insufficient_scope")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    service.add_user("bob", PASSWORD)
    no_role = login_pair(client, username="bob", client_id="console", scope="admin profile")
    assert no_role["scope"] == "profile"
    assert error_of(client.get(ADMIN_ONLY, headers=bearer(no_role["access_token"]))) == (
        403,
        "forbidden",
    )
    assert error_of(client.get(ADMIN_ONLY)) == (401, "token_missing")


def test_cookie_transport_with_a_cookie_client(client, user, service):
    """A client allowing the cookie transport logs in with it; the scope is in the body."""
    service.clients.add("web", "Web front-end", ("profile",), ("cookie",))
    response = login(client, client_id="web", transport="cookie")
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert "refresh_token" not in data
    assert (claims(data["access_token"])["azp"], data["scope"]) == ("web", "profile")
    assert error_of(login(client, client_id="web")) == (400, "transport_not_allowed")


def test_a_grace_replay_gets_the_same_pair_with_its_client_and_scope(client, user, console):
    """The parent refresh token within the grace window gets the issued pair byte for
    byte, azp and (narrowed) scope included."""
    pair = login_pair(client, client_id="console", scope="admin profile")
    first = refresh(client, pair["refresh_token"], scope="profile").get_json()["data"]
    replay = refresh(client, pair["refresh_token"], scope="profile").get_json()["data"]
    assert replay["access_token"] == first["access_token"]
    assert replay["refresh_token"] == first["refresh_token"]
    assert (claims(replay["access_token"])["azp"], replay["scope"]) == ("console", "profile")


def test_client_keys_share_one_cluster_slot_and_are_listed_from_a_set(service, console):
    """The client hash and the id set carry the hash tag {clients} (one Redis Cluster slot
    per script); listing reads the id set."""
    keys = service.store.redis.keys("*clients*")
    assert len(keys) == 2
    assert {key[key.index("{") : key.index("}") + 1] for key in keys} == {"{clients}"}
    assert [c.id for c in service.store.list_clients()] == ["console"]


def test_a_cookie_refresh_narrows_with_a_scope_body(client, user, service):
    """The cookie form of POST /refresh takes {"scope": ...} (the browser SDK's
    refresh({scope})): narrowed for good; wider is invalid_scope and nothing rotates."""
    service.clients.add("web", "Web", ("admin", "profile"), ("cookie",))
    body = {"username": "alice", "password": PASSWORD, "transport": "cookie"}
    login_answer = client.post(f"{API}/login", json={**body, "client_id": "web"})
    assert login_answer.get_json()["data"]["scope"] == "admin profile"

    def cookie_refresh(payload: Any) -> Any:
        csrf = client.get_cookie(CSRF_COOKIE).value
        return client.post(REFRESH, json=payload, headers={CSRF_HEADER: csrf})

    narrowed = cookie_refresh({"scope": "profile"}).get_json()["data"]
    assert narrowed["scope"] == "profile"
    assert "refresh_token" not in narrowed
    assert claims(narrowed["access_token"])["azp"] == "web"
    assert error_of(cookie_refresh({"scope": "admin"})) == (400, "invalid_scope")
    assert error_of(cookie_refresh({"scope": "profile", "junk": 1})) == (422, "validation_failed")
    csrf = client.get_cookie(CSRF_COOKIE).value
    again = client.post(REFRESH, headers={CSRF_HEADER: csrf}).get_json()["data"]
    assert again["scope"] == "profile"  # the refused ones rotated nothing


def test_a_clients_dpop_mode_is_stored_validated_and_defaults_to_optional(service, redis_client):
    """dpop=required persists and updates; another value is refused naming the field; a
    client stored before DPoP (no field) reads as optional, like the built-in one."""
    registry = service.clients
    assert registry.add("fw", "Firmware", dpop="required").dpop == "required"
    assert registry.get("fw").dpop == "required"
    assert registry.update("fw", dpop="optional").dpop == "optional"
    with pytest.raises(InvalidClient) as caught:
        registry.add("web", "Web", dpop="sometimes")
    assert caught.value.field == "dpop"
    redis_client.hdel(service.store._client_key("fw"), "dpop")
    assert registry.get("fw").dpop == "optional"
    assert registry.get("default").dpop == "optional"
