"""What a session's client allows holds at every refresh, not only at login: its
transports (issue 14 item 3) and, for a previous refresh token, the scope it asks for
(item 5). Every test runs on fakeredis, a real Redis and a real Redis Cluster."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.store import RotationStatus, Store
from tests.conftest import bearer, login, login_pair

pytestmark = pytest.mark.cluster

API = "/api/v1/user"
REFRESH = f"{API}/refresh"
IDLE_MS = 10**9


def claims(token: str) -> dict[str, Any]:
    """The payload of ``token`` (read as data; the service checked it)."""
    return jwt.decode(token, options={"verify_signature": False})


def error_of(response: Any) -> tuple[int, str]:
    """The status and ``data.error`` of an answer."""
    return response.status_code, response.get_json()["data"]["error"]


def is_current(service: Any, refresh_token: str) -> bool:
    """Whether ``refresh_token`` is still its live session's current one (not rotated)."""
    token = claims(refresh_token)
    owner = service.store.current_refresh_owner(
        token["sub"], token["sid"], token["jti"], idle_ms=IDLE_MS
    )
    return owner is not None


def by_cookie(client: Any, refresh_token: str, method: str) -> Any:
    """Refresh with ``refresh_token`` in the refresh cookie and its CSRF value echoed."""
    client.set_cookie(REFRESH_COOKIE, refresh_token)
    response = getattr(client, method)(
        REFRESH, headers={CSRF_HEADER: claims(refresh_token)["csrf"]}
    )
    client.delete_cookie(REFRESH_COOKIE)
    return response


@pytest.fixture
def firmware(service: Any) -> Any:
    """A body-only client (the device firmware)."""
    return service.clients.add("fw", "Device firmware", ("profile",), ("body",))


@pytest.fixture
def web(service: Any) -> Any:
    """A cookie-only client (the web front-end)."""
    return service.clients.add("web", "Web front-end", ("profile",), ("cookie",))


@pytest.fixture
def console(service: Any) -> Any:
    """An admin console: scopes admin and profile, both transports."""
    return service.clients.add("console", "Admin console", ("admin", "profile"))


# -- transports (item 3) ------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_body_only_clients_refresh_token_in_the_cookie_is_refused_and_changes_nothing(
    client, user, service, firmware, method
):
    """A body-only client's refresh token sent as the refresh cookie (with its CSRF
    value, as a thief would) is transport_not_allowed; it is not rotated, and the JSON
    body refresh then rotates it."""
    pair = login_pair(client, client_id="fw")

    assert error_of(by_cookie(client, pair["refresh_token"], method)) == (
        400,
        "transport_not_allowed",
    )
    assert is_current(service, pair["refresh_token"])
    assert client.get_cookie(REFRESH_COOKIE) is None  # no cookie was set by the refusal

    renewed = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200, renewed.get_json()
    assert is_current(service, renewed.get_json()["data"]["refresh_token"])
    assert (
        client.get(
            f"{API}/me", headers=bearer(renewed.get_json()["data"]["access_token"])
        ).status_code
        == 200
    )


def test_a_cookie_only_clients_refresh_token_as_bearer_or_json_body_is_refused(
    client, user, service, web
):
    """A cookie-only client's refresh token (read out of its HttpOnly cookie) sent as a
    Bearer header or a JSON body is transport_not_allowed, nothing rotates, and the
    cookie refresh keeps working."""
    assert login(client, client_id="web", transport="cookie").status_code == 200
    stolen = client.get_cookie(REFRESH_COOKIE).value
    thief = client.application.test_client()

    as_bearer = thief.get(REFRESH, headers=bearer(stolen))
    as_body = thief.post(REFRESH, json={"refresh_token": stolen})
    assert error_of(as_bearer) == (400, "transport_not_allowed")
    assert error_of(as_body) == (400, "transport_not_allowed")
    assert is_current(service, stolen)

    renewed = client.post(REFRESH, headers={CSRF_HEADER: client.get_cookie(CSRF_COOKIE).value})
    assert renewed.status_code == 200, renewed.get_json()
    assert client.get_cookie(REFRESH_COOKIE).value != stolen
    assert is_current(service, client.get_cookie(REFRESH_COOKIE).value)


def test_a_refused_transport_is_never_judged_reuse(client, user, service, web):
    """An old (already rotated) cookie-only token sent as a JSON body is answered
    transport_not_allowed, not refresh_reused: the session lives on."""
    assert login(client, client_id="web", transport="cookie").status_code == 200
    old = client.get_cookie(REFRESH_COOKIE).value
    for _ in range(2):  # old becomes a grandparent: sent by cookie it would be reuse
        response = client.post(REFRESH, headers={CSRF_HEADER: client.get_cookie(CSRF_COOKIE).value})
        assert response.status_code == 200, response.get_json()

    assert error_of(
        client.application.test_client().post(REFRESH, json={"refresh_token": old})
    ) == (
        400,
        "transport_not_allowed",
    )
    current = client.get_cookie(REFRESH_COOKIE).value
    assert is_current(service, current)


def test_the_default_client_keeps_both_transports(client, user, service):
    """A login without client_id (the default client) refreshes by body and by cookie."""
    pair = login_pair(client)
    by_body = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]}).get_json()
    assert by_cookie(client, by_body["data"]["refresh_token"], "post").status_code == 200


def test_the_rotate_script_checks_the_transport_before_anything_changes(redis_client):
    """Store level: a session opened for transports (body,) refuses 'cookie' with
    TRANSPORT_NOT_ALLOWED and keeps its current jti; 'body' then rotates. A session
    recorded without a client (before clients) allows either."""
    store = Store(redis_client)
    assert store.create_user("u1", "bob", "not-a-hash", ())
    arguments = {"grace_ms": 0, "idle_ms": IDLE_MS, "unused_ms": 0, "issued_at": 1}
    for sid, client_id in (("restricted", "fw"), ("legacy", None)):
        store.create_session(
            "u1", sid, refresh_jti=f"{sid}-r0", access_jti=f"{sid}-a0", issued_at=1,
            expires_ms=store.clock() + 3_600_000, device_id=None, user_agent=None,
            ip="192.0.2.1", client_id=client_id, scope="profile", transports=("body",),
        )  # fmt: skip

    refused = store.rotate(
        "u1", "restricted", "restricted-r0", new_refresh_jti="x", new_access_jti="y",
        transport="cookie", **arguments,
    )  # fmt: skip
    assert refused.status is RotationStatus.TRANSPORT_NOT_ALLOWED
    assert store.current_refresh_owner("u1", "restricted", "restricted-r0", idle_ms=IDLE_MS)
    rotated = store.rotate(
        "u1", "restricted", "restricted-r0", new_refresh_jti="r1", new_access_jti="a1",
        transport="body", **arguments,
    )  # fmt: skip
    assert rotated.status is RotationStatus.ROTATED

    legacy = store.rotate(
        "u1", "legacy", "legacy-r0", new_refresh_jti="l1", new_access_jti="la1",
        transport="cookie", **arguments,
    )  # fmt: skip
    assert legacy.status is RotationStatus.ROTATED


# -- scope of a previous refresh token (item 5) ---------------------------------------
def test_a_previous_token_asking_a_narrower_scope_than_the_issued_pair_is_invalid_scope(
    make_app, user, console
):
    """Within grace (20 s), the previous token asking scope=profile when the issued pair
    holds admin profile is invalid_scope, not the wider pair; nothing changes: the child
    still rotates and narrows on the normal path, and the parent without scope still
    gets the pair. (After grace a bearer parent is reuse: test_store; a bound one
    converges with its proof: test_dpop_api.)"""
    client = make_app(REFRESH_GRACE_SECONDS="20").test_client()
    parent = login_pair(client, client_id="console", scope="admin profile")["refresh_token"]
    issued = client.post(REFRESH, json={"refresh_token": parent}).get_json()["data"]
    assert issued["scope"] == "admin profile"

    narrower = client.post(REFRESH, json={"refresh_token": parent, "scope": "profile"})
    assert error_of(narrower) == (400, "invalid_scope")

    again = client.post(REFRESH, json={"refresh_token": parent}).get_json()["data"]
    assert again["refresh_token"] == issued["refresh_token"]
    narrowed = client.post(
        REFRESH, json={"refresh_token": issued["refresh_token"], "scope": "profile"}
    ).get_json()["data"]
    assert (narrowed["scope"], claims(narrowed["access_token"])["scope"]) == ("profile", "profile")


def test_a_previous_token_gets_the_pair_when_it_asks_exactly_what_was_issued(client, user, console):
    """The retry of a narrowing refresh (same scope) converges on the narrowed pair; the
    same scope as the session's also fits; a wider one than the session's is refused."""
    parent = login_pair(client, client_id="console", scope="admin profile")["refresh_token"]
    kept = client.post(REFRESH, json={"refresh_token": parent, "scope": "admin profile"})
    replay = client.post(REFRESH, json={"refresh_token": parent, "scope": "profile admin"})
    assert replay.get_json()["data"]["refresh_token"] == kept.get_json()["data"]["refresh_token"]

    child = kept.get_json()["data"]["refresh_token"]
    narrowed = client.post(REFRESH, json={"refresh_token": child, "scope": "profile"})
    retry = client.post(REFRESH, json={"refresh_token": child, "scope": "profile"})
    assert retry.get_json()["data"]["refresh_token"] == narrowed.get_json()["data"]["refresh_token"]
    # The session is now profile only: the parent of the narrowed pair may not ask wider.
    assert error_of(
        client.post(REFRESH, json={"refresh_token": child, "scope": "admin profile"})
    ) == (
        400,
        "invalid_scope",
    )
