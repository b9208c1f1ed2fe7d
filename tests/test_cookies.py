"""Cookie transport for browsers: HttpOnly refresh cookie, double-submit CSRF, CORS."""

import pytest

from authsvc.config import ConfigError, load_settings
from authsvc.cookies import CSRF_COOKIE, REFRESH_COOKIE
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
    return client.get_cookie(CSRF_COOKIE).value


def test_cookie_login_keeps_the_refresh_token_out_of_the_body(client, user):
    """transport=cookie: the body has the access token only; the refresh token is a cookie."""
    response = cookie_login(client)
    data = response.get_json()["data"]
    assert "refresh_token" not in data
    assert data["access_token"]
    assert client.get("/api/v1/user/me", headers=bearer(data["access_token"])).status_code == 200


def attributes(header):
    """The attributes of a Set-Cookie header, lower-cased names: {"path": "/", ...}."""
    parts = [part.strip() for part in header.split(";")[1:]]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts)}


def test_cookies_carry_the_host_prefix_with_its_attributes(client, user):
    """Both cookies are __Host- cookies: Secure, Path=/, no Domain (so no sibling subdomain
    can plant them); the refresh cookie HttpOnly, both SameSite=Strict."""
    response = cookie_login(client)
    assert REFRESH_COOKIE.startswith("__Host-")
    assert CSRF_COOKIE.startswith("__Host-")
    (refresh_header,) = set_cookie_headers(response, REFRESH_COOKIE)
    (csrf_header,) = set_cookie_headers(response, CSRF_COOKIE)
    for header in (refresh_header, csrf_header):
        found = attributes(header)
        assert found["path"] == "/"
        assert "secure" in found
        assert "domain" not in found
        assert found["samesite"] == "Strict"
    assert "httponly" in attributes(refresh_header)
    assert "httponly" not in attributes(csrf_header)  # the page must read it


def test_logout_expires_the_host_cookies_at_the_same_path(client, user):
    """Logout's Set-Cookie headers expire both __Host- cookies with Secure and Path=/ (a
    browser ignores a __Host- header without them, which would leave the cookie)."""
    data = cookie_login(client).get_json()["data"]
    response = client.post("/api/v1/user/logout", headers=bearer(data["access_token"]))
    for name in (REFRESH_COOKIE, CSRF_COOKIE):
        (header,) = set_cookie_headers(response, name)
        found = attributes(header)
        assert found["path"] == "/"
        assert "secure" in found
        assert "domain" not in found
        assert found["max-age"] == "0"


@pytest.mark.parametrize("method", ["get", "post"])
def test_planted_unprefixed_cookies_are_not_a_session(client, app, user, method):
    """Cookies a sibling subdomain can plant on the parent domain (no __Host- prefix),
    carrying the attacker's own valid session, are ignored: refresh answers token_missing
    and logout does not end the attacker's session either."""
    attacker = app.test_client()
    cookie_login(attacker)
    refresh_token = attacker.get_cookie(REFRESH_COOKIE).value
    csrf_value = attacker.get_cookie(CSRF_COOKIE).value
    # The server sees no Domain attribute: a planted cookie is just a name and a value.
    client.set_cookie("authsvc_refresh", refresh_token)
    client.set_cookie("authsvc_csrf", csrf_value)
    headers = {"X-CSRF-Token": csrf_value}

    response = getattr(client, method)(REFRESH, headers=headers)

    # Not a cookie refresh: GET wants a Bearer header, POST a JSON body.
    expected = {"get": "token_missing", "post": "unsupported_media_type"}[method]
    assert response.get_json()["data"]["error"] == expected
    logout = client.post("/api/v1/user/logout", headers=headers)
    assert logout.get_json()["data"]["error"] == "token_missing"
    still = attacker.get(REFRESH, headers={"X-CSRF-Token": csrf_value})
    assert still.status_code == 200, still.get_json()


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
    old_cookie = client.get_cookie(REFRESH_COOKIE).value
    response = getattr(client, method)(REFRESH, headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200, response.get_json()
    assert "refresh_token" not in response.get_json()["data"]
    new_cookie = client.get_cookie(REFRESH_COOKIE).value
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
    old_cookie = client.get_cookie(REFRESH_COOKIE).value
    response = client.post("/api/v1/user/logout", headers=bearer(data["access_token"]))
    assert response.status_code == 200
    assert client.get_cookie(REFRESH_COOKIE) is None
    assert client.get_cookie(CSRF_COOKIE) is None
    client.set_cookie(REFRESH_COOKIE, old_cookie)
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
    assert client.get_cookie(REFRESH_COOKIE) is None
