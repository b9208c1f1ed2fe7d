"""Cookie transport for browsers: HttpOnly refresh cookie, double-submit CSRF, CORS."""

import pytest

from authsvc.config import ConfigError, load_settings
from tests.conftest import PASSWORD, TEST_SECRET, USERNAME, bearer

LOGIN = "/api/v1/user/login"
REFRESH = "/api/v1/user/refresh"


def cookie_login(client):
    response = client.post(
        LOGIN, json={"username": USERNAME, "password": PASSWORD, "transport": "cookie"}
    )
    assert response.status_code == 200, response.get_json()
    return response


def set_cookie_headers(response, name):
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]


def csrf(client):
    return client.get_cookie("authsvc_csrf").value


def test_cookie_login_keeps_the_refresh_token_out_of_the_body(client, user):
    """transport=cookie: the body has the access token only; the refresh token is a cookie."""
    response = cookie_login(client)
    data = response.get_json()["data"]
    assert "refresh_token" not in data
    assert data["access_token"]
    assert client.get("/api/v1/user/me", headers=bearer(data["access_token"])).status_code == 200


def test_refresh_cookie_is_httponly_secure_strict_and_scoped_to_refresh_and_logout(client, user):
    """The refresh cookie: HttpOnly, Secure, SameSite=Strict, only on /refresh and /logout."""
    headers = set_cookie_headers(cookie_login(client), "authsvc_refresh")
    paths = sorted(h.split("Path=")[1].split(";")[0] for h in headers)
    assert paths == ["/api/v1/user/logout", "/api/v1/user/refresh"]
    for header in headers:
        assert "HttpOnly" in header
        assert "Secure" in header
        assert "SameSite=Strict" in header
    (csrf_header,) = set_cookie_headers(cookie_login(client), "authsvc_csrf")
    assert "HttpOnly" not in csrf_header  # the page must read it
    assert "Secure" in csrf_header
    assert "SameSite=Strict" in csrf_header


@pytest.mark.parametrize("method", ["get", "post"])
def test_cookie_refresh_needs_the_csrf_header(client, user, method):
    """A cookie refresh without X-CSRF-Token, or with a wrong one, is 403 csrf_failed."""
    cookie_login(client)
    send = getattr(client, method)
    for headers in ({}, {"X-CSRF-Token": "not-the-value"}):
        response = send(REFRESH, headers=headers)
        assert response.status_code == 403
        assert response.get_json()["data"]["error"] == "csrf_failed"


@pytest.mark.parametrize("method", ["get", "post"])
def test_cookie_refresh_with_csrf_rotates_the_cookie(client, user, method):
    """With the CSRF header, GET or POST refresh answers a new access token and a new cookie."""
    cookie_login(client)
    old_cookie = client.get_cookie("authsvc_refresh", path=REFRESH).value
    response = getattr(client, method)(REFRESH, headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200, response.get_json()
    assert "refresh_token" not in response.get_json()["data"]
    new_cookie = client.get_cookie("authsvc_refresh", path=REFRESH).value
    assert new_cookie != old_cookie


def test_a_csrf_value_of_another_session_is_refused(client, user, app):
    """The CSRF value is bound to the refresh token: another session's value fails."""
    other = app.test_client()
    cookie_login(other)
    cookie_login(client)
    response = client.get(REFRESH, headers={"X-CSRF-Token": csrf(other)})
    assert response.get_json()["data"]["error"] == "csrf_failed"


def test_an_authorization_header_wins_over_the_cookie(client, user):
    """With an Authorization header the cookie is not read (and no CSRF is asked for)."""
    cookie_login(client)
    response = client.get(REFRESH, headers={"Authorization": "Bearer junk.junk.junk"})
    assert response.get_json()["data"]["error"] == "token_invalid"


def test_logout_clears_the_cookies_and_ends_the_session(client, user):
    """Logout expires the refresh and CSRF cookies; the old refresh cookie no longer works."""
    data = cookie_login(client).get_json()["data"]
    old_csrf = csrf(client)
    old_cookie = client.get_cookie("authsvc_refresh", path=REFRESH).value
    response = client.post("/api/v1/user/logout", headers=bearer(data["access_token"]))
    assert response.status_code == 200
    assert client.get_cookie("authsvc_refresh", path=REFRESH) is None
    assert client.get_cookie("authsvc_csrf") is None
    client.set_cookie("authsvc_refresh", old_cookie, path=REFRESH)
    again = client.get(REFRESH, headers={"X-CSRF-Token": old_csrf})
    assert again.get_json()["data"]["error"] == "session_revoked"


def test_cors_allows_only_the_configured_origins_with_credentials(make_app):
    """Preflight from a configured origin is allowed with credentials and X-CSRF-Token."""
    client = make_app(CORS_ORIGINS="https://app.example.com").test_client()
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-CSRF-Token",
    }
    allowed = client.options(REFRESH, headers={"Origin": "https://app.example.com", **preflight})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "x-csrf-token" in allowed.headers["Access-Control-Allow-Headers"].lower()
    denied = client.options(REFRESH, headers={"Origin": "https://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_cors_wildcard_is_refused_at_startup():
    """A credentialed API cannot allow "*": the setting is refused with a clear message."""
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_settings({"JWT_SECRET": TEST_SECRET, "CORS_ORIGINS": "*"}, require_redis=False)


def test_logout_by_refresh_cookie_needs_csrf_and_ends_the_session(client, user):
    """With no access token, the refresh cookie + CSRF header logs out; without CSRF, 403."""
    data = cookie_login(client).get_json()["data"]
    refused = client.post("/api/v1/user/logout")
    assert refused.status_code == 403
    assert refused.get_json()["data"]["error"] == "csrf_failed"
    response = client.post("/api/v1/user/logout", headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200
    me = client.get("/api/v1/user/me", headers=bearer(data["access_token"]))
    assert me.get_json()["data"]["error"] == "session_revoked"
    assert client.get_cookie("authsvc_refresh", path=REFRESH) is None
