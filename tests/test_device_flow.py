"""The device authorization grant over HTTP (RFC 8628): codes, approval, polling, session.

On fakeredis, a real Redis and the real Redis Cluster (``redis_client``). The device
side is plain RFC-shaped form posts; the user's side is the enveloped /api/v1/device.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authsvc.cli_device import device_pending
from authsvc.service import AuthService
from authsvc.store.devices import hash_device_code
from tests.conftest import (
    PASSWORD,
    add_admin_client,
    admin_login_pair,
    bearer,
    login_pair,
)
from tests.dpop_keys import DeviceKey

pytestmark = pytest.mark.cluster

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TV = "tv-box"


@pytest.fixture
def app(make_app: Any) -> Flask:
    """Polls are allowed at once (interval 1 s is the minimum, and polls sleep past it)."""
    return make_app(DEVICE_POLL_INTERVAL=1)


@pytest.fixture
def tv(service: AuthService) -> None:
    """A registered client allowed the device grant."""
    service.clients.add(TV, "TV box", ("profile",), grants=("device_code",))


def ask(client: FlaskClient, client_id: str = TV, **form: str) -> Any:
    return client.post("/oauth/device_authorization", data={"client_id": client_id, **form})


def codes(client: FlaskClient, **form: str) -> dict[str, Any]:
    response = ask(client, **form)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def poll(client: FlaskClient, device_code: str, client_id: str = TV) -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
    )


def decide(client: FlaskClient, token: str, user_code: str, action: str = "approve") -> Any:
    return client.post(
        f"/api/v1/device/{action}", json={"user_code": user_code}, headers=bearer(token)
    )


def wait_past_interval(app: Flask, device_code: str) -> None:
    """Make the next poll come after the interval (the record's last poll moved back)."""
    store = app.extensions["authsvc_device"].codes
    key = store._record_key(hash_device_code(device_code))
    if store.redis.exists(key):
        store.redis.hset(key, "last", 0)


def approved_device(client: FlaskClient, user_token: str) -> dict[str, Any]:
    """Codes for the TV box, approved by the holder of ``user_token``."""
    issued = codes(client, scope="profile", device_name="living-room")
    assert decide(client, user_token, issued["user_code"]).status_code == 200
    return issued


def test_the_device_gets_rfc_8628_codes(client: FlaskClient, tv: None) -> None:
    issued = codes(client)
    assert set(issued) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert issued["verification_uri"] == "http://localhost/device"
    assert issued["verification_uri_complete"].endswith(f"?user_code={issued['user_code']}")
    assert (issued["expires_in"], issued["interval"]) == (600, 1)
    first, dash, second = issued["user_code"].partition("-")
    assert (len(first), dash, len(second)) == (4, "-", 4)
    assert len(issued["device_code"]) >= 43


def test_approval_then_poll_opens_a_session_of_the_approving_user(
    client: FlaskClient, app: Flask, user: Any, tv: None
) -> None:
    user_token = login_pair(client)["access_token"]
    issued = codes(client, device_name="living-room")
    pending = poll(client, issued["device_code"])
    assert (pending.status_code, pending.get_json()["error"]) == (400, "authorization_pending")
    seen = client.get(
        "/api/v1/device",
        query_string={"user_code": issued["user_code"].lower()},
        headers=bearer(user_token),
    ).get_json()["data"]
    assert (seen["client_id"], seen["client_name"], seen["scope"]) == (TV, "TV box", "profile")
    assert seen["device_name"] == "living-room"
    assert seen["ip"] == "127.0.0.1"
    assert decide(client, user_token, issued["user_code"]).status_code == 200
    wait_past_interval(app, issued["device_code"])
    tokens = poll(client, issued["device_code"])
    assert tokens.status_code == 200, tokens.get_json()
    body = tokens.get_json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "profile"
    assert tokens.headers["Cache-Control"] == "no-store"
    me = client.get("/api/v1/user/me", headers=bearer(body["access_token"])).get_json()["data"]
    assert (me["username"], me["client_id"]) == ("alice", TV)
    sessions = client.get("/api/v1/user/sessions", headers=bearer(user_token)).get_json()["data"]
    names = {s.get("device_id") for s in sessions["sessions"]}
    assert "living-room" in names
    # A normal session: it rotates, and logout-all ends it.
    rotated = client.post("/api/v1/user/refresh", json={"refresh_token": body["refresh_token"]})
    assert rotated.status_code == 200
    assert client.post("/api/v1/user/logout-all", headers=bearer(user_token)).status_code == 200
    after = client.post(
        "/api/v1/user/refresh",
        json={"refresh_token": rotated.get_json()["data"]["refresh_token"]},
    )
    assert after.status_code == 401


def test_a_code_is_redeemed_once(client: FlaskClient, app: Flask, user: Any, tv: None) -> None:
    issued = approved_device(client, login_pair(client)["access_token"])
    assert poll(client, issued["device_code"]).status_code == 200
    wait_past_interval(app, issued["device_code"])
    again = poll(client, issued["device_code"])
    assert (again.status_code, again.get_json()["error"]) == (400, "invalid_grant")


def test_polling_too_fast_is_slow_down_with_a_longer_interval(
    client: FlaskClient, tv: None
) -> None:
    issued = codes(client)
    assert poll(client, issued["device_code"]).get_json()["error"] == "authorization_pending"
    fast = poll(client, issued["device_code"])
    assert (fast.status_code, fast.get_json()["error"]) == (400, "slow_down")
    assert fast.headers["Retry-After"] == "6"
    faster = poll(client, issued["device_code"])
    assert faster.headers["Retry-After"] == "11"


def test_a_denied_device_gets_access_denied(
    client: FlaskClient, app: Flask, user: Any, tv: None
) -> None:
    token = login_pair(client)["access_token"]
    issued = codes(client)
    denied = decide(client, token, issued["user_code"], "deny")
    assert denied.get_json()["data"]["status"] == "denied"
    answer = poll(client, issued["device_code"])
    assert (answer.status_code, answer.get_json()["error"]) == (400, "access_denied")
    wait_past_interval(app, issued["device_code"])
    assert poll(client, issued["device_code"]).get_json()["error"] == "expired_token"
    again = decide(client, token, issued["user_code"])
    assert again.get_json()["data"]["error"] == "device_code_unknown"


def test_an_expired_code_is_expired_token(
    client: FlaskClient, app: Flask, redis_client: Any, tv: None
) -> None:
    issued = codes(client)
    store = app.extensions["authsvc_device"].codes
    redis_client.delete(store._record_key(hash_device_code(issued["device_code"])))
    answer = poll(client, issued["device_code"])
    assert (answer.status_code, answer.get_json()["error"]) == (400, "expired_token")


def test_a_decision_is_final(client: FlaskClient, app: Flask, user: Any, tv: None) -> None:
    token = login_pair(client)["access_token"]
    issued = codes(client)
    assert decide(client, token, issued["user_code"]).status_code == 200
    second = decide(client, token, issued["user_code"], "deny")
    assert (second.status_code, second.get_json()["data"]["error"]) == (409, "device_code_used")


def test_wrong_user_codes_count_as_failed_logins_and_are_throttled(
    client: FlaskClient, service: AuthService, user: Any, tv: None
) -> None:
    token = login_pair(client)["access_token"]
    limit = service.settings.login_max_failures_per_account
    for _ in range(limit):
        wrong = decide(client, token, "BCDF-GHJK")
        assert wrong.get_json()["data"]["error"] == "device_code_unknown"
    issued = codes(client)
    blocked = decide(client, token, issued["user_code"])
    assert (blocked.status_code, blocked.get_json()["data"]["error"]) == (429, "too_many_attempts")
    # ... and it is the account's budget: the password login is throttled as well.
    again = client.post("/api/v1/user/login", json={"username": "alice", "password": PASSWORD})
    assert again.status_code == 429


def test_a_right_code_hands_its_attempt_back(
    client: FlaskClient, service: AuthService, user: Any, tv: None
) -> None:
    token = login_pair(client)["access_token"]
    limit = service.settings.login_max_failures_per_account
    for _ in range(limit * 2):
        issued = codes(client)
        assert decide(client, token, issued["user_code"]).status_code == 200


def test_another_client_cannot_redeem_the_code(
    client: FlaskClient, app: Flask, service: AuthService, user: Any, tv: None
) -> None:
    service.clients.add("thief", "Thief", ("profile",), grants=("device_code",))
    issued = approved_device(client, login_pair(client)["access_token"])
    stolen = poll(client, issued["device_code"], client_id="thief")
    assert (stolen.status_code, stolen.get_json()["error"]) == (400, "invalid_grant")
    wait_past_interval(app, issued["device_code"])
    assert poll(client, issued["device_code"]).status_code == 200


@pytest.mark.parametrize(
    ("client_id", "status", "error"),
    [("nobody", 401, "invalid_client"), ("default", 400, "unauthorized_client")],
)
def test_a_client_must_exist_and_allow_the_grant(
    client: FlaskClient, client_id: str, status: int, error: str
) -> None:
    refused = ask(client, client_id)
    assert (refused.status_code, refused.get_json()["error"]) == (status, error)
    poll_refused = poll(client, "x" * 43, client_id=client_id)
    assert (poll_refused.status_code, poll_refused.get_json()["error"]) == (status, error)


def test_a_scope_beyond_the_clients_is_invalid_scope(client: FlaskClient, tv: None) -> None:
    refused = ask(client, scope="admin")
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": DEVICE_GRANT, "client_id": TV},
        {"grant_type": DEVICE_GRANT, "device_code": "abc"},
        {"grant_type": DEVICE_GRANT, "client_id": TV, "device_code": ""},
        {"grant_type": DEVICE_GRANT, "client_id": TV, "device_code": "x" * 500},
    ],
)
def test_malformed_polls_are_rfc_errors_never_5xx(
    client: FlaskClient, tv: None, form: dict[str, str]
) -> None:
    answer = client.post("/oauth/token", data=form)
    assert answer.status_code == 400
    assert answer.get_json()["error"] in {"invalid_request", "expired_token"}


@pytest.mark.parametrize("typed", ["", "BCDF", "not a code at all", "ÄÖÜ-ÄÖÜÄ", "x" * 40])
def test_malformed_user_codes_are_clear_errors(client: FlaskClient, user: Any, typed: str) -> None:
    token = login_pair(client)["access_token"]
    answer = decide(client, token, typed)
    assert answer.status_code in {400, 422}
    assert answer.get_json()["data"]["error"] in {"device_code_unknown", "validation_failed"}


def test_approval_needs_a_user_access_token(client: FlaskClient, tv: None) -> None:
    issued = codes(client)
    answer = client.post("/api/v1/device/approve", json={"user_code": issued["user_code"]})
    assert (answer.status_code, answer.get_json()["data"]["error"]) == (401, "token_missing")


def test_no_code_reaches_a_log_line(
    client: FlaskClient, app: Flask, user: Any, tv: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = login_pair(client)["access_token"]
    issued = approved_device(client, token)
    decide(client, token, "WRNG-CODE")
    poll(client, issued["device_code"])
    text = caplog.text
    assert issued["device_code"] not in text
    assert issued["user_code"] not in text
    assert issued["user_code"].replace("-", "") not in text
    assert "device_approved" in text
    assert "device_token_issued" in text


def test_the_metadata_lists_the_endpoint_and_the_grant(client: FlaskClient) -> None:
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    assert document["device_authorization_endpoint"].endswith("/oauth/device_authorization")
    assert DEVICE_GRANT in document["grant_types_supported"]
    assert "refresh_token" in document["grant_types_supported"]


def test_admins_see_pending_codes_for_support(
    client: FlaskClient, service: AuthService, user: Any, tv: None
) -> None:
    add_admin_client(service)
    issued = codes(client, device_name="kitchen")
    admin = admin_login_pair(client)["access_token"]
    listed = client.get("/api/v1/admin/device-codes", headers=bearer(admin)).get_json()["data"]
    [entry] = listed["device_codes"]
    assert (entry["user_code"], entry["client_id"], entry["device_name"]) == (
        issued["user_code"],
        TV,
        "kitchen",
    )
    assert "device_code" not in entry
    user_token = login_pair(client)["access_token"]
    refused = client.get("/api/v1/admin/device-codes", headers=bearer(user_token))
    assert refused.status_code == 403


def test_the_device_page_is_served_with_a_strict_policy(client: FlaskClient) -> None:
    with client.get("/device") as page:
        assert page.status_code == 200
        assert b'src="/account/device.js"' in page.data
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    with client.get("/account/device.js") as script:
        assert script.status_code == 200


def test_a_device_that_asked_with_a_proof_gets_a_bound_session_only_with_its_key(
    client: FlaskClient, app: Flask, user: Any, tv: None
) -> None:
    device, thief = DeviceKey(), DeviceKey()
    asked = client.post(
        "/oauth/device_authorization",
        data={"client_id": TV},
        headers={"DPoP": device.proof("POST", "/oauth/device_authorization")},
    )
    issued = asked.get_json()
    token = login_pair(client)["access_token"]
    seen = client.get(
        "/api/v1/device", query_string={"user_code": issued["user_code"]}, headers=bearer(token)
    ).get_json()["data"]
    assert seen["bound"] is True
    assert decide(client, token, issued["user_code"]).status_code == 200
    form = {"grant_type": DEVICE_GRANT, "device_code": issued["device_code"], "client_id": TV}
    for headers in ({}, {"DPoP": thief.proof("POST", "/oauth/token")}):
        stolen = client.post("/oauth/token", data=form, headers=headers)
        assert (stolen.status_code, stolen.get_json()["error"]) == (400, "invalid_dpop_proof")
        wait_past_interval(app, issued["device_code"])
    tokens = client.post(
        "/oauth/token", data=form, headers={"DPoP": device.proof("POST", "/oauth/token")}
    )
    assert tokens.status_code == 200, tokens.get_json()
    body = tokens.get_json()
    assert body["token_type"] == "DPoP"
    # Bound: the access token is useless without the device's key.
    as_bearer = client.get("/api/v1/user/me", headers=bearer(body["access_token"]))
    assert as_bearer.status_code == 401
    me = client.get(
        "/api/v1/user/me",
        headers=device.headers("GET", "/api/v1/user/me", access_token=body["access_token"]),
    )
    assert me.get_json()["data"]["bound"] is True


def test_a_client_requiring_dpop_refuses_a_device_without_a_proof(
    client: FlaskClient, service: AuthService
) -> None:
    service.clients.add("strict-tv", "Strict TV", grants=("device_code",), dpop="required")
    refused = ask(client, "strict-tv")
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_dpop_proof")
    assert refused.get_json()["error_description"] == "dpop_required"


def test_the_cli_lists_pending_codes_for_support(app: Flask, client: FlaskClient, tv: None) -> None:
    issued = codes(client, device_name="hall")
    result = app.test_cli_runner().invoke(device_pending)
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    user_code, client_id, scope, ip, seconds_left, _agent = line.split("\t")
    assert (user_code, client_id, scope, ip) == (issued["user_code"], TV, "profile", "127.0.0.1")
    assert 0 < int(seconds_left) <= 600
    assert issued["device_code"] not in result.output


def test_every_step_is_counted_in_the_metrics(
    client: FlaskClient, app: Flask, user: Any, tv: None
) -> None:
    token = login_pair(client)["access_token"]
    issued = codes(client)
    decide(client, token, "WRNG-CODE")
    decide(client, token, issued["user_code"])
    wait_past_interval(app, issued["device_code"])
    poll(client, issued["device_code"])
    exposition = client.get("/metrics").get_data(as_text=True)
    for event in ("code_issued", "code_failed", "approved", "token_issued"):
        assert f'authsvc_device_flow_total{{event="{event}"}} 1.0' in exposition, event
