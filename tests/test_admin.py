"""/api/v1/admin: the admin guard, bulk creation, paged listing and the account actions.

Each test runs on fakeredis and on a real Redis. Hashing uses cheap argon2 parameters
below the OWASP floor the config enforces (as tests/test_text_input.py does): these
tests are about what the API does with rows, not about the cost of a hash.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authsvc.cli_users import user_reindex
from authsvc.events import auth_event
from authsvc.passwords import Passwords
from authsvc.schemas import MAX_BULK_ROWS, MAX_PAGE_LIMIT
from authsvc.service import AuthService
from tests.conftest import (
    ADMIN_CLIENT_ID,
    PASSWORD,
    USERNAME,
    add_admin_client,
    admin_login_pair,
    bearer,
    login,
    login_pair,
)

ADMIN = "/api/v1/admin"
DEVICE_PASSWORD = "device secret 0001"
# Every admin route, with a body good enough to pass validation.
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/users", {"users": [{"username": "x1", "password": DEVICE_PASSWORD}]}),
    ("GET", "/users", None),
    ("GET", "/users/bob", None),
    ("DELETE", "/users/bob", None),
    ("POST", "/users/bob/disable", None),
    ("POST", "/users/bob/enable", None),
    ("POST", "/users/bob/password", {"password": "a new password"}),
    ("POST", "/users/bob/logout-all", None),
    ("GET", "/clients", None),
    ("POST", "/clients", {"client_id": "x1", "name": "X1"}),
    ("GET", f"/clients/{ADMIN_CLIENT_ID}", None),
    ("PATCH", f"/clients/{ADMIN_CLIENT_ID}", {"name": "Changed"}),
    ("DELETE", f"/clients/{ADMIN_CLIENT_ID}", None),
]


@pytest.fixture
def service(app: Flask) -> AuthService:
    """The app's AuthService, hashing cheaply, with the admin console client registered."""
    service: AuthService = app.extensions["authsvc"]
    service.passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    add_admin_client(service)
    return service


@pytest.fixture
def admin(client: FlaskClient, service: AuthService, user: Any) -> dict[str, str]:
    """The Authorization header of alice (admin role) logged in with the admin scope."""
    return bearer(admin_login_pair(client)["access_token"])


@pytest.fixture
def events() -> Any:
    """Every domain event emitted during the test, as (name, fields)."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(event: str, **fields: Any) -> None:
        seen.append((event, fields))

    auth_event.connect(record)
    yield seen
    auth_event.disconnect(record)


def assert_nothing_done(service: AuthService) -> None:
    """No admin route of ROUTES changed anything."""
    assert service.find_user("bob").disabled is False
    assert service.store.find_user_id("x1") is None
    assert service.clients.get(ADMIN_CLIENT_ID).name == "Admin console"
    assert [c.id for c in service.clients.list()] == ["default", ADMIN_CLIENT_ID]


def call(client: FlaskClient, method: str, path: str, headers: Any, body: Any = None) -> Any:
    """One admin request; returns (status, data).

    The body is sent as ASCII JSON, so a lone surrogate travels as its escape.
    """
    data = None if body is None else json.dumps(body)
    response = client.open(
        ADMIN + path, method=method, headers=headers, data=data, content_type="application/json"
    )
    return response.status_code, response.get_json()["data"]


def create(client: FlaskClient, headers: Any, rows: list[Any]) -> dict[str, Any]:
    """Bulk-create ``rows``, asserting the request itself succeeded."""
    status, data = call(client, "POST", "/users", headers, {"users": rows})
    assert status == 200, data
    return data


def devices(start: int, count: int) -> list[dict[str, Any]]:
    """Rows for devices dev-<n> with the device password."""
    return [
        {"username": f"dev-{n:05d}", "password": DEVICE_PASSWORD, "roles": ["device"]}
        for n in range(start, start + count)
    ]


def every_page(client: FlaskClient, headers: Any, **query: Any) -> list[list[str]]:
    """The usernames of every page of the listing, following next_cursor."""
    pages, cursor = [], None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"{ADMIN}/users", headers=headers, query_string=params)
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        pages.append([u["username"] for u in data["users"]])
        cursor = data["next_cursor"]
        if cursor is None:
            return pages


# -- the guard --------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_token_without_the_admin_role_is_forbidden(client, service, method, path, body):
    """A valid access token of a user without the admin role gets 403 forbidden, nothing done."""
    service.add_user("bob", PASSWORD)
    token = login_pair(client, username="bob")["access_token"]
    status, data = call(client, method, path, bearer(token), body)
    assert (status, data["error"]) == (403, "forbidden")
    assert_nothing_done(service)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_an_admin_token_without_the_admin_scope_is_403_insufficient_scope(
    client, service, user, method, path, body
):
    """Alice has the admin role but logged in through the default client (scope profile
    only): 403 insufficient_scope with the RFC 6750 challenge, nothing done."""
    service.add_user("bob", PASSWORD)
    token = login_pair(client)["access_token"]
    response = client.open(ADMIN + path, method=method, headers=bearer(token), json=body)
    assert (response.status_code, response.get_json()["data"]["error"]) == (
        403,
        "insufficient_scope",
    )
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="authsvc", error="insufficient_scope"'
    )
    assert_nothing_done(service)


def test_a_user_without_the_role_gets_no_admin_scope_and_is_forbidden(client, service):
    """Bob (no admin role) asking the admin console for scope admin is not granted it, and
    the admin API answers 403 forbidden: the role is checked first."""
    service.add_user("bob", PASSWORD)
    pair = admin_login_pair(client, username="bob")
    assert "admin" not in pair["scope"].split()
    status, data = call(client, "GET", "/users", bearer(pair["access_token"]))
    assert (status, data["error"]) == (403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_token_is_401_token_missing(client, service, method, path, body):
    """Without a bearer token every admin route is 401 token_missing with the bare challenge."""
    response = client.open(ADMIN + path, method=method, json=body)
    assert response.status_code == 401
    assert response.get_json()["data"]["error"] == "token_missing"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authsvc"'


def test_a_revoked_admin_token_is_401(client, service, admin):
    """After the admin logs out, its access token is 401 token_revoked on the admin API."""
    assert call(client, "GET", "/users", admin)[0] == 200
    assert client.post("/api/v1/user/logout", headers=admin).status_code == 200
    status, data = call(client, "GET", "/users", admin)
    assert (status, data["error"]) == (401, "token_revoked")


def test_a_disabled_admin_loses_the_admin_api_at_once(client, service, admin):
    """Disabling the admin (e.g. from the CLI) ends its token: 401 session_revoked."""
    service.set_disabled(USERNAME, True)
    status, data = call(client, "GET", "/users", admin)
    assert (status, data["error"]) == (401, "session_revoked")


# -- bulk creation ----------------------------------------------------------------------
def test_bulk_creation_reports_each_row_and_never_stops_at_a_bad_one(client, service, admin):
    """Bad rows get an error slug at their index; every good row around them is created."""
    rows = [
        {"username": "Dev-A", "password": DEVICE_PASSWORD, "roles": ["device"]},
        {"username": "dev-a", "password": DEVICE_PASSWORD},  # taken (case-folded)
        {"username": "bad name!", "password": DEVICE_PASSWORD},
        {"username": "dev-b", "password": "short"},
        {"username": "dev-c", "password": DEVICE_PASSWORD, "roles": ["a,b"]},
        {"username": "dev-d", "password": DEVICE_PASSWORD, "extra": 1},
        "not an object",
        {"username": "dev-e", "password": DEVICE_PASSWORD},
        {"username": "dev-f\ud800", "password": DEVICE_PASSWORD},
        {"username": "dev-g", "password": DEVICE_PASSWORD, "\ud800": 1},
        {"username": USERNAME, "password": DEVICE_PASSWORD},
    ]
    data = create(client, admin, rows)
    results = data["results"]
    assert [r["index"] for r in results] == list(range(len(rows)))
    assert [r["status"] for r in results] == [
        "created", "error", "error", "error", "error", "error", "error", "created", "error",
        "error", "error",
    ]  # fmt: skip
    assert (data["created"], data["failed"]) == (2, 9)
    assert [r.get("error") for r in results if r["status"] == "error"] == [
        "username_taken", "validation_failed", "validation_failed", "validation_failed",
        "validation_failed", "validation_failed", "validation_failed", "validation_failed",
        "username_taken",
    ]  # fmt: skip
    assert results[0]["username"] == "dev-a"
    assert results[1]["username"] == "dev-a"
    assert "username" in results[2]["fields"]
    assert "password" in results[3]["fields"]
    assert "roles" in results[4]["fields"]
    assert "extra" in results[5]["fields"]
    assert "_schema" in results[6]["fields"]
    assert "username" in results[8]["fields"]
    assert "\\ud800" in results[9]["fields"]
    created = service.find_user("dev-a")
    assert (created.id, created.roles) == (results[0]["user_id"], ("device",))
    assert login(client, "dev-a", DEVICE_PASSWORD).status_code == 200
    assert login(client, "dev-e", DEVICE_PASSWORD).status_code == 200


def test_more_rows_than_the_maximum_is_413_and_creates_nothing(client, service, admin):
    """MAX_BULK_ROWS + 1 rows: 413 too_many_rows before any row is hashed or stored."""
    status, data = call(client, "POST", "/users", admin, {"users": devices(0, MAX_BULK_ROWS + 1)})
    assert (status, data["error"]) == (413, "too_many_rows")
    assert service.store.find_user_id("dev-00000") is None


@pytest.mark.parametrize("body", [{"users": []}, {"users": "dev"}, {}, [], {"users": [], "x": 1}])
def test_a_malformed_bulk_body_is_422(client, service, admin, body):
    """No rows, rows that are not a list, or unknown top-level fields: 422 validation_failed."""
    status, data = call(client, "POST", "/users", admin, body)
    assert (status, data["error"]) == (422, "validation_failed")


def test_a_full_request_is_accepted_beyond_the_default_body_limit(make_app, redis_client):
    """A maximal request of long rows exceeds AUTHSVC_MAX_BODY_BYTES yet is read; others are not."""
    app = make_app(MAX_BODY_BYTES=4096)
    app.extensions["authsvc"].passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD, ("admin",))
    add_admin_client(app.extensions["authsvc"])
    client = app.test_client()
    headers = bearer(admin_login_pair(client)["access_token"])
    rows = [dict(row, password="p" * 100) for row in devices(0, MAX_BULK_ROWS)]
    data = create(client, headers, rows)
    assert data["created"] == MAX_BULK_ROWS
    status, body = call(
        client, "POST", "/users/dev-00000/password", headers, {"password": "p" * 5000}
    )
    assert (status, body["error"]) == (413, "payload_too_large")


def test_one_thousand_devices_in_full_requests_then_listed_page_by_page(client, service, admin):
    """1,000 devices in requests of MAX_BULK_ROWS, a bad row in each: all good rows created,
    each bad one reported; the listing then pages through every account once, in order."""
    total, batches = 1000, 1000 // MAX_BULK_ROWS
    for batch in range(batches):
        rows = devices(batch * MAX_BULK_ROWS, MAX_BULK_ROWS)
        rows[batch] = {"username": rows[batch]["username"], "password": "short"}
        data = create(client, admin, rows)
        assert (data["created"], data["failed"]) == (MAX_BULK_ROWS - 1, 1)
        assert data["results"][batch]["error"] == "validation_failed"
    expected = sorted(
        {f"dev-{n:05d}" for n in range(total)}
        - {f"dev-{b * MAX_BULK_ROWS + b:05d}" for b in range(batches)}
    )
    pages = every_page(client, admin, q="dev-", limit=MAX_PAGE_LIMIT)
    assert all(len(page) == MAX_PAGE_LIMIT for page in pages[:-1])
    assert [name for page in pages for name in page] == expected
    assert [
        name for page in every_page(client, admin, limit=MAX_PAGE_LIMIT) for name in page
    ] == sorted([*expected, USERNAME])


# -- listing ----------------------------------------------------------------------------
def test_listing_pages_by_prefix_in_name_order(client, service, admin):
    """q is a username prefix (normalised like usernames), limit a page size, cursor opaque."""
    for name in ("ab", "ab-1", "ab.2", "abc", "b", "aa"):
        service.add_user(name, DEVICE_PASSWORD, ("device",) if name == "abc" else ())
    assert every_page(client, admin, q="AB", limit=2) == [["ab", "ab-1"], ["ab.2", "abc"]]
    assert every_page(client, admin, q="zz") == [[]]
    response = client.get(f"{ADMIN}/users", headers=admin, query_string={"q": "abc"})
    assert response.get_json()["data"] == {
        "users": [
            {
                "user_id": service.find_user("abc").id,
                "username": "abc",
                "roles": ["device"],
                "disabled": False,
            }
        ],
        "next_cursor": None,
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": MAX_PAGE_LIMIT + 1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"a b c").decode()}, "cursor"),
        ({"cursor": "%%%"}, "cursor"),
        ({"q": "x" * 65}, "q"),
        ({"page": 2}, "page"),
    ],
)
def test_a_bad_listing_query_is_422_naming_the_parameter(client, service, admin, query, field):
    """Out-of-range limits, cursors not made by the listing, unknown parameters: 422."""
    response = client.get(f"{ADMIN}/users", headers=admin, query_string=query)
    assert response.status_code == 422
    assert field in response.get_json()["data"]["fields"]


def test_listing_never_scans_the_keyspace(client, service, admin, redis_client, monkeypatch):
    """The listing reads the username index: SCAN and KEYS are never sent."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("keyspace scan")

    for name in ("scan", "scan_iter", "keys"):
        monkeypatch.setattr(redis_client, name, refuse)
    service.add_user("bob", PASSWORD)
    assert every_page(client, admin, limit=1) == [["alice"], ["bob"]]


def test_users_from_before_the_index_are_indexed_on_the_first_listing(
    client, service, admin, redis_client
):
    """Accounts stored without the index (older data) are listed: it is rebuilt by SSCAN."""
    service.add_user("bob", PASSWORD)
    redis_client.delete("authsvc:usernames")
    assert every_page(client, admin) == [["alice", "bob"]]
    assert redis_client.zcard("authsvc:usernames") == 2


def test_an_index_entry_whose_user_is_gone_is_dropped(client, service, admin, redis_client):
    """A member left by a crash between delete and unindex is skipped and removed."""
    bob = service.add_user("bob", PASSWORD)
    service.store.delete_user(bob.id, bob.username)  # without the index update
    assert every_page(client, admin) == [["alice"]]
    assert redis_client.zrange("authsvc:usernames", 0, -1) == [
        f"alice {service.find_user(USERNAME).id}"
    ]


# -- one account ------------------------------------------------------------------------
def test_show_user_lists_its_sessions(client, service, admin):
    """GET /users/<name>: the account and its live sessions with their devices."""
    bob = service.add_user("Bob", PASSWORD, ("device",))
    login(client, "bob", PASSWORD, device_id="thermostat-7")
    status, data = call(client, "GET", "/users/BOB", admin)
    assert status == 200
    assert {k: data[k] for k in ("user_id", "username", "roles", "disabled")} == {
        "user_id": bob.id,
        "username": "bob",
        "roles": ["device"],
        "disabled": False,
    }
    assert [(s["device_id"], s["current"]) for s in data["sessions"]] == [("thermostat-7", False)]


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ROUTES if "/users/" in r[1]])
def test_an_unknown_user_is_404(client, service, admin, method, path, body):
    """Every per-account route answers 404 not_found for a name nobody has."""
    status, data = call(client, method, path, admin, body)
    assert (status, data["error"]) == (404, "not_found")


def test_disable_ends_sessions_and_enable_lets_the_user_back(client, service, admin, events):
    """Disable: the user's token dies, login is account_disabled; enable: login works again."""
    service.add_user("bob", PASSWORD)
    bob = bearer(login_pair(client, username="bob")["access_token"])
    assert call(client, "POST", "/users/bob/disable", admin) == (200, None)
    assert client.get("/api/v1/user/me", headers=bob).status_code == 401
    assert login(client, "bob").get_json()["data"]["error"] == "account_disabled"
    assert call(client, "POST", "/users/bob/enable", admin) == (200, None)
    assert login(client, "bob").status_code == 200
    assert client.get("/api/v1/user/me", headers=bob).status_code == 401  # stays ended


def test_reset_password_ends_sessions_and_sets_the_new_one(client, service, admin):
    """POST /users/<name>/password: old password and old tokens dead, the new password works."""
    service.add_user("bob", PASSWORD)
    bob = bearer(login_pair(client, username="bob")["access_token"])
    assert call(client, "POST", "/users/bob/password", admin, {"password": "new password 1"}) == (
        200,
        None,
    )
    assert client.get("/api/v1/user/me", headers=bob).get_json()["data"]["error"] == (
        "session_revoked"
    )
    assert login(client, "bob").status_code == 401
    assert login(client, "bob", "new password 1").status_code == 200
    status, data = call(client, "POST", "/users/bob/password", admin, {"password": "short"})
    assert (status, list(data["fields"])) == (422, ["password"])


def test_logout_all_ends_sessions_but_not_the_account(client, service, admin):
    """POST /users/<name>/logout-all: every token of the user dies; it can log in again."""
    service.add_user("bob", PASSWORD)
    bob = bearer(login_pair(client, username="bob")["access_token"])
    assert call(client, "POST", "/users/bob/logout-all", admin) == (200, None)
    assert client.get("/api/v1/user/me", headers=bob).status_code == 401
    assert login(client, "bob").status_code == 200


def test_delete_removes_the_account_from_everything(client, service, admin):
    """DELETE /users/<name>: tokens dead, login fails, 404 afterwards, gone from the listing."""
    service.add_user("bob", PASSWORD)
    bob = bearer(login_pair(client, username="bob")["access_token"])
    assert call(client, "DELETE", "/users/bob", admin) == (200, None)
    assert client.get("/api/v1/user/me", headers=bob).status_code == 401
    assert login(client, "bob").status_code == 401
    assert call(client, "GET", "/users/bob", admin)[0] == 404
    assert every_page(client, admin) == [["alice"]]


# -- registered clients -----------------------------------------------------------------
def test_a_client_is_created_listed_shown_updated_and_deleted(client, service, admin):
    """The client lifecycle over the API; each step takes effect on logins at once."""
    status, created = call(
        client, "POST", "/clients", admin, {"client_id": "web", "name": "Web front-end"}
    )
    assert status == 200, created
    assert created == {
        "client_id": "web",
        "name": "Web front-end",
        "scopes": ["profile"],
        "transports": ["body", "cookie"],
        "access_ttl": None,
        "refresh_ttl": None,
        "builtin": False,
        "dpop": "optional",
        "grants": [],
    }
    status, listed = call(client, "GET", "/clients", admin)
    assert [c["client_id"] for c in listed["clients"]] == ["default", ADMIN_CLIENT_ID, "web"]
    assert listed["clients"][0]["builtin"] is True
    assert call(client, "GET", "/clients/web", admin) == (200, created)
    assert login_pair(client, client_id="web")["scope"] == "profile"

    changes = {"scopes": ["profile", "orders"], "transports": ["body"], "access_ttl": 60}
    status, updated = call(client, "PATCH", "/clients/web", admin, changes)
    assert status == 200, updated
    assert updated == {
        **created,
        "scopes": ["orders", "profile"],
        "transports": ["body"],
        "access_ttl": 60,
    }
    assert login_pair(client, client_id="web", scope="profile")["expires_in"] == 60
    status, reset = call(client, "PATCH", "/clients/web", admin, {"access_ttl": None})
    assert (status, reset["access_ttl"], reset["name"]) == (200, None, "Web front-end")
    assert service.clients.get("web").access_ttl is None

    assert call(client, "DELETE", "/clients/web", admin) == (200, None)
    assert call(client, "GET", "/clients/web", admin)[0] == 404
    assert login(client, client_id="web").get_json()["data"]["error"] == "unknown_client"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": "Bad Id", "name": "X"}, "client_id"),
        ({"client_id": "default", "name": "X"}, "client_id"),
        ({"client_id": ADMIN_CLIENT_ID, "name": "X"}, "client_id"),  # taken
        ({"client_id": "x", "name": "X", "access_ttl": 10**6}, "access_ttl"),  # > service's
        ({"client_id": "x", "name": "X", "refresh_ttl": 0}, "refresh_ttl"),
        ({"client_id": "x", "name": "X", "access_ttl": "60"}, "access_ttl"),
        ({"client_id": "x", "name": "X", "transports": ["pigeon"]}, "transports"),
        ({"client_id": "x", "name": "X", "transports": []}, "transports"),
        ({"client_id": "x", "name": "X", "scopes": ["a b"]}, "scopes"),
        ({"client_id": "x", "name": "X", "scopes": ["x"] * 33}, "scopes"),
        ({"client_id": "x", "name": "bad\ud800"}, "name"),
        ({"client_id": "x", "name": "   "}, "name"),
        ({"client_id": "x"}, "name"),
        ({"client_id": "x", "name": "X", "secret": "s"}, "secret"),
    ],
)
def test_a_client_the_registry_refuses_is_422_naming_the_field(client, service, admin, body, field):
    """Shapes (schema) and rules (registry, as the CLI applies them) both answer 422
    validation_failed naming the field with a list of messages; nothing is stored."""
    status, data = call(client, "POST", "/clients", admin, body)
    assert (status, data["error"]) == (422, "validation_failed")
    assert field in data["fields"], data
    # A list of messages per field, as the error schema says (not one per list item).
    assert all(isinstance(message, str) for message in data["fields"][field])
    assert [c.id for c in service.clients.list()] == ["default", ADMIN_CLIENT_ID]


def test_the_builtin_client_is_shown_but_never_changed(client, service, user, admin):
    """GET /clients/default shows it (builtin); PATCH and DELETE are 422 on client_id."""
    status, data = call(client, "GET", "/clients/default", admin)
    assert (status, data["scopes"], data["builtin"]) == (200, ["profile"], True)
    for method, body in (("PATCH", {"scopes": ["profile", "admin"]}), ("DELETE", None)):
        status, data = call(client, method, "/clients/default", admin, body)
        assert (status, data["error"]) == (422, "validation_failed")
        assert "built-in" in data["fields"]["client_id"][0]
    assert login_pair(client)["scope"] == "profile"


@pytest.mark.parametrize("client_id", ["nope", "UPPER", "a" * 200])
@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("PATCH", {"name": "N"}), ("DELETE", None)]
)
def test_an_unknown_client_is_404(client, service, admin, client_id, method, body):
    """A client id that is not registered (or could never be) is 404 not_found."""
    status, data = call(client, method, f"/clients/{client_id}", admin, body)
    assert (status, data["error"]) == (404, "not_found")


def test_client_changes_are_audited_with_the_acting_admin(client, service, admin, events):
    """Creating, updating and deleting a client each emit an audit event with actor=api,
    the admin's user id and the client id; counted in authsvc_admin_actions_total."""
    alice_id = service.find_user(USERNAME).id
    call(client, "POST", "/clients", admin, {"client_id": "web", "name": "Web"})
    call(client, "PATCH", "/clients/web", admin, {"name": "Web 2", "access_ttl": None})
    call(client, "DELETE", "/clients/web", admin)
    call(client, "DELETE", "/clients/web", admin)  # 404: nothing to audit
    audited = [
        (event, fields["client_id"], fields.get("changed"))
        for event, fields in events
        if fields.get("actor") == "api" and fields.get("admin_user_id") == alice_id
    ]
    assert audited == [
        ("client_created", "web", None),
        ("client_updated", "web", "access_ttl,name"),
        ("client_deleted", "web", None),
    ]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'authsvc_admin_actions_total{action="client_deleted",actor="api"} 1.0' in text


# -- audit ------------------------------------------------------------------------------
def test_every_action_is_audited_with_the_acting_admin(client, service, admin, events):
    """Each admin action emits an audit event naming actor=api and the admin's user id."""
    alice_id = service.find_user(USERNAME).id
    create(client, admin, [{"username": "bob", "password": DEVICE_PASSWORD}, {"username": "x"}])
    bob_id = service.find_user("bob").id
    for action in ("disable", "enable", "logout-all"):
        call(client, "POST", f"/users/bob/{action}", admin)
    call(client, "POST", "/users/bob/password", admin, {"password": "new password 1"})
    call(client, "DELETE", "/users/bob", admin)
    audited = [
        (event, fields.get("reason"), fields.get("created"), fields.get("failed"))
        for event, fields in events
        if fields.get("actor") == "api"
        and fields.get("admin_user_id") == alice_id
        and fields.get("user_id") in (bob_id, None)
    ]
    assert audited == [
        ("user_created", None, None, None),
        ("users_bulk_created", None, 1, 1),
        ("logout_all", "account_disabled", None, None),
        ("account_enabled", None, None, None),
        ("logout_all", "admin_request", None, None),
        ("logout_all", "password_reset", None, None),
        ("logout_all", "account_deleted", None, None),
    ]


def test_admin_actions_are_counted_by_action_and_actor(app, client, service, admin):
    """authsvc_admin_actions_total{action, actor} counts API and CLI actions apart."""
    with app.app_context():  # as the authsvc command runs it
        service.add_user("bob", PASSWORD)
    call(client, "POST", "/users/bob/disable", admin)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'authsvc_admin_actions_total{action="user_created",actor="cli"} 1.0' in text
    assert 'authsvc_admin_actions_total{action="account_disabled",actor="api"} 1.0' in text


def test_user_reindex_repairs_an_account_missing_from_the_index(app, client, service, admin):
    """`authsvc user reindex` adds an account whose index entry was lost (a crash)."""
    bob = service.add_user("bob", PASSWORD)
    service.store.unindex_username(bob.id, bob.username)
    assert every_page(client, admin) == [["alice"]]
    result = app.test_cli_runner().invoke(user_reindex)
    assert result.output == "indexed 2 accounts\n"
    assert every_page(client, admin) == [["alice", "bob"]]
