"""The /account/ page in headless Chromium against the real `authsvc serve`.

Chromium (found or installed by the session's ``browser`` fixture, tests/chromium.py)
is driven by Playwright for Python. The server runs with 6-second access tokens (the
page renews after 2 s, so its countdown visibly moves first) and no leeway, so "past
expiry" is a few seconds of waiting and the server really refuses an expired token.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Response,
    expect,
)

from authsvc import create_app
from authsvc.client import AuthClient
from authsvc.cookies import CSRF_COOKIE, REFRESH_COOKIE
from authsvc.service import AuthService
from tests.conftest import TEST_SECRET, bearer
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, error_of, serving_on_test_redis

pytestmark = pytest.mark.e2e

ACCESS_TTL = 6
PAST_EXPIRY_MS = (ACCESS_TTL + 1) * 1000
UI_TIMEOUT_MS = 10_000
PASSWORD = "browser password 0123"
# __Host- cookies are host-only with Path=/ (no sibling subdomain can plant them).
REFRESH_COOKIE_PATHS = {"/"}
PHONE = {"width": 390, "height": 844}


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`authsvc serve` (2 workers) on the test Redis, with 6 s access tokens and no leeway."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("browser"),
        ACCESS_TOKEN_TTL=ACCESS_TTL,
        JWT_LEEWAY=0,
    ) as serve:
        yield serve


@pytest.fixture(scope="module")
def accounts(site: ServeProcess, real_redis_url: str) -> Iterator[AuthService]:
    """An AuthService over the served Redis, to create accounts without a subprocess."""
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    yield create_app({"JWT_SECRET": TEST_SECRET}, redis_client=client).extensions["authsvc"]
    client.close()


@pytest.fixture
def username(accounts: AuthService) -> str:
    """A fresh account (password PASSWORD), so tests never share sessions."""
    name = f"web-{uuid.uuid4().hex[:10]}"
    accounts.add_user(name, PASSWORD)
    return name


@pytest.fixture
def context(browser: Browser, site: ServeProcess) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the server."""
    ctx = browser.new_context(base_url=site.url)
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A tab of ``context``."""
    return context.new_page()


# -- helpers ----------------------------------------------------------------------------
class Traffic:
    """Every API response the page received, in order."""

    def __init__(self, page: Page) -> None:
        self.responses: list[Response] = []
        page.on("response", self._record)

    def _record(self, response: Response) -> None:
        if urlsplit(response.url).path.startswith("/api/"):
            self.responses.append(response)

    def to(self, endpoint: str) -> list[Response]:
        """The responses of ``API + endpoint``."""
        return [r for r in self.responses if urlsplit(r.url).path == API + endpoint]


def set_cookies(response: Response) -> str:
    """Every Set-Cookie header of ``response``, one per line."""
    return "\n".join(
        h["value"] for h in response.headers_array() if h["name"].lower() == "set-cookie"
    )


def sent_token(response: Response) -> str | None:
    """The access token the page put in the request's Authorization header."""
    header = response.request.all_headers().get("authorization")
    return header.removeprefix("Bearer ") if header else None


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Open /account/, fill the login form, submit, and wait for the session list."""
    page.goto("/account/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#signed-in-as")).to_have_text(username)
    expect(page.locator("li.session.current")).to_contain_text("This device")


def reload_sessions(page: Page) -> Response:
    """Click "Reload" and return the final GET /sessions response."""
    with page.expect_response(
        lambda r: urlsplit(r.url).path == f"{API}/sessions" and r.status == 200
    ) as answer:
        page.get_by_role("button", name="Reload").click()
    return answer.value


def api_login(site: ServeProcess, username: str, password: str = PASSWORD, **extra: Any) -> Any:
    """A second client's login over plain HTTP (body transport)."""
    response = requests.post(
        f"{site.url}{API}/login",
        json={"username": username, "password": password, **extra},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def me(site: ServeProcess, access_token: str) -> requests.Response:
    """GET /me with ``access_token``."""
    return requests.get(f"{site.url}{API}/me", headers=bearer(access_token), timeout=HTTP_TIMEOUT)


def refresh_with(site: ServeProcess, refresh_token: str) -> requests.Response:
    """GET /refresh with ``refresh_token`` as Bearer (the device shape)."""
    return requests.get(
        f"{site.url}{API}/refresh", headers=bearer(refresh_token), timeout=HTTP_TIMEOUT
    )


# Every string reachable from the page's globals (two levels deep) and its storage.
_PAGE_STATE_JS = """() => {
  const seen = [];
  const collect = (value, depth) => {
    if (typeof value === "string") { seen.push(value); return; }
    if (!value || typeof value !== "object" || depth > 1) return;
    for (const key of Object.keys(value)) {
      try { collect(value[key], depth + 1); } catch (error) { /* cross-origin, getters */ }
    }
  };
  for (const name of Object.getOwnPropertyNames(window)) {
    try { collect(window[name], 0); } catch (error) { /* not readable */ }
  }
  return {
    globals: seen.join("\\n"),
    local: JSON.stringify({ ...localStorage }),
    session: JSON.stringify({ ...sessionStorage }),
    html: document.documentElement.outerHTML,
    cookie: document.cookie,
  };
}"""


# -- tests ------------------------------------------------------------------------------
def test_login_shows_a_live_countdown_and_renews_silently_before_expiry(page, site, username):
    """After login the expiry counts down; past expiry the page still works on a renewed token."""
    traffic = Traffic(page)
    log_in(page, username)
    countdown = page.locator("#expires-in")
    expect(countdown).to_have_text(re.compile(rf"^0:0[0-{ACCESS_TTL}]$"))
    expect(countdown).not_to_have_text(countdown.inner_text())  # it moves

    (login,) = traffic.to("/login")
    login_token = login.json()["data"]["access_token"]
    page.wait_for_timeout(PAST_EXPIRY_MS)
    assert error_of(me(site, login_token)) == (401, "token_expired")

    sessions = reload_sessions(page)
    renewed_token = sent_token(sessions)
    assert renewed_token
    assert renewed_token != login_token
    assert me(site, renewed_token).status_code == 200
    renewals = traffic.to("/refresh")
    assert renewals
    assert [r.status for r in renewals] == [200] * len(renewals)
    # Renewed ahead of time: the page never sent an expired token and got refused.
    assert [r for r in traffic.responses if r.status == 401] == []
    expect(page.locator("li.session.current")).to_have_count(1)


def test_an_expired_access_token_is_renewed_on_401_and_the_call_retried(page, site, username):
    """With the page's timers frozen, a call refused as token_expired is refreshed and retried."""
    traffic = Traffic(page)
    page.clock.install()
    page.goto("/account/")
    # From here on no page timer fires, so only the 401 path can renew the token.
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    log_in(page, username)
    page.wait_for_timeout(PAST_EXPIRY_MS)
    assert traffic.to("/refresh") == []

    reload_sessions(page)

    refused, retried = traffic.to("/sessions")[-2:]
    assert refused.status == 401
    assert refused.json()["data"]["error"] == "token_expired"
    (renewal,) = traffic.to("/refresh")
    assert renewal.status == 200
    assert traffic.responses.index(refused) < traffic.responses.index(renewal)
    assert traffic.responses.index(renewal) < traffic.responses.index(retried)
    assert sent_token(retried) != sent_token(refused)
    assert retried.status == 200


def test_a_second_session_is_listed_and_revoked_from_the_page(page, site, username, tmp_path):
    """A session opened elsewhere shows up; its Revoke button ends it on the server."""
    log_in(page, username)
    with AuthClient(site.url) as sdk:
        other = sdk.login(username, PASSWORD, device_id="sdk-thermostat-42")

    reload_sessions(page)
    row = page.locator(f'li.session[data-session-id="{other.session_id}"]')
    expect(row).to_contain_text("sdk-thermostat-42")
    expect(row.get_by_text("This device")).to_be_hidden()
    expect(page.locator("li.session")).to_have_count(2)
    page.screenshot(path=tmp_path / "account.png", full_page=True)

    row.get_by_role("button", name="Revoke").click()

    expect(row).to_have_count(0)
    expect(page.locator("#notice")).to_have_text("The session was ended.")
    expect(page.locator("li.session")).to_have_count(1)
    assert error_of(me(site, other.access_token)) == (401, "session_revoked")
    assert error_of(refresh_with(site, other.refresh_token)) == (401, "session_revoked")
    reload_sessions(page)  # the page's own session is untouched
    expect(page.locator("li.session.current")).to_have_count(1)


def test_the_refresh_token_is_never_readable_from_javascript(page, context, username):
    """Every refresh JWT is only in HttpOnly cookies: not in bodies, storage, globals or DOM."""
    traffic = Traffic(page)
    log_in(page, username)
    with page.expect_response(lambda r: urlsplit(r.url).path == f"{API}/refresh"):
        pass  # wait for one silent renewal, so a rotated refresh token is covered too

    cookies = context.cookies()
    refresh_cookies = [c for c in cookies if c["name"] == REFRESH_COOKIE]
    assert {c["path"] for c in refresh_cookies} == REFRESH_COOKIE_PATHS
    for cookie in refresh_cookies:
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is True
        assert cookie["sameSite"] == "Strict"
    (csrf,) = [c for c in cookies if c["name"] == CSRF_COOKIE]
    assert csrf["httpOnly"] is False
    assert csrf["path"] == "/"

    token_responses = traffic.to("/login") + traffic.to("/refresh")
    refresh_tokens = set()
    for response in token_responses:
        assert response.status == 200
        assert "refresh_token" not in response.json()["data"]
        refresh_tokens |= set(re.findall(rf"{REFRESH_COOKIE}=([^;]+)", set_cookies(response)))
    assert len(refresh_tokens) >= 2  # the login's and at least one rotation's
    bodies = [r.text() for r in token_responses]
    access_token = sent_token(traffic.to("/sessions")[-1])
    assert access_token

    state = page.evaluate(_PAGE_STATE_JS)
    assert f"{CSRF_COOKIE}=" in state["cookie"]
    assert REFRESH_COOKIE not in state["cookie"]
    for where in ("globals", "local", "session", "html"):
        for secret in refresh_tokens | {access_token}:
            assert secret not in state[where], where
    for token in refresh_tokens:
        assert all(token not in body for body in bodies)

    # Even a script running on the cookie's own path cannot read it.
    page.goto(f"{API}/refresh")
    cookie_there = page.evaluate("document.cookie")
    assert f"{CSRF_COOKIE}=" in cookie_there
    assert REFRESH_COOKIE not in cookie_there


def test_cookies_planted_without_the_host_prefix_do_not_resume_a_session(
    page, context, site, accounts
):
    """A sibling subdomain can plant unprefixed authsvc_refresh / authsvc_csrf cookies on
    the parent domain, carrying the attacker's session: the page ignores them (login
    form, no refresh sent) and the attacker's session stays unused."""
    attacker = f"web-{uuid.uuid4().hex[:10]}"
    accounts.add_user(attacker, PASSWORD)
    login = requests.post(
        f"{site.url}{API}/login",
        json={"username": attacker, "password": PASSWORD, "transport": "cookie"},
        timeout=HTTP_TIMEOUT,
    )
    assert login.status_code == 200, login.text
    context.add_cookies(
        [
            {"name": name.removeprefix("__Host-"), "value": login.cookies[name], "url": site.url}
            for name in (REFRESH_COOKIE, CSRF_COOKIE)
        ]
    )
    traffic = Traffic(page)

    page.goto("/account/")

    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.locator("#account-view")).to_be_hidden()
    assert traffic.to("/refresh") == []


def test_a_reload_resumes_the_session_from_the_cookie(page, browser, site, username):
    """Reloading the page refreshes from the cookie and shows the account, no form."""
    log_in(page, username)
    traffic = Traffic(page)
    page.reload()
    expect(page.locator("#signed-in-as")).to_have_text(username)
    expect(page.locator("#login-view")).to_be_hidden()
    assert [r.status for r in traffic.to("/refresh")][:1] == [200]

    stranger = browser.new_context(base_url=site.url)
    try:
        fresh = stranger.new_page()
        fresh.goto("/account/")
        expect(fresh.get_by_role("button", name="Log in")).to_be_visible()
    finally:
        stranger.close()


def test_a_wrong_password_shows_the_servers_error(page, username):
    """A failed login shows the envelope's msg and data.error next to the form."""
    page.goto("/account/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in").click()
    error = page.locator("#login-form .error")
    expect(error).to_have_text("Wrong username or password. (invalid_credentials)")
    expect(page.locator("#account-view")).to_be_hidden()


def test_changing_the_password_from_the_page_ends_the_other_sessions(page, site, username):
    """A wrong current password is refused with the field message; the right one changes it."""
    log_in(page, username)
    other = api_login(site, username)
    new_password = "a brand new passphrase"
    form = page.locator("#password-form")

    form.get_by_label("Current password").fill("wrong current password")
    form.get_by_label("New password", exact=True).fill(new_password)
    form.get_by_label("New password again").fill(new_password)
    form.get_by_role("button", name="Change password").click()
    expect(form.locator(".error")).to_contain_text("The current password is wrong.")
    expect(form.locator(".error")).to_contain_text("(validation_failed)")

    form.get_by_label("Current password").fill(PASSWORD)
    # The other session's tokens renewed just before the change, and checked just after
    # it: its access token (6 s here) must still be unexpired then, however busy the
    # machine, so that only the revocation can refuse it.
    renewed = refresh_with(site, other["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    other = renewed.json()["data"]
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#notice")).to_contain_text("password was changed")
    assert error_of(me(site, other["access_token"])) == (401, "session_revoked")
    assert error_of(refresh_with(site, other["refresh_token"])) == (401, "session_revoked")
    expect(form.locator(".error")).to_be_hidden()

    refused = requests.post(
        f"{site.url}{API}/login",
        json={"username": username, "password": PASSWORD},
        timeout=HTTP_TIMEOUT,
    )
    assert error_of(refused) == (401, "invalid_credentials")
    assert api_login(site, username, new_password)["token_type"] == "Bearer"
    expect(page.locator("li.session.current")).to_have_count(1)


def test_log_out_everywhere_from_the_page(page, site, username):
    """Clicking Log out everywhere ends every session, the page's too; no reload resumes it."""
    traffic = Traffic(page)
    log_in(page, username)
    other = api_login(site, username)
    page_token = sent_token(traffic.to("/sessions")[-1])
    assert page_token
    page.once("dialog", lambda dialog: dialog.accept())

    page.get_by_role("button", name="Log out everywhere").click()

    expect(page.locator("#notice")).to_have_text("You have been logged out everywhere.")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert traffic.to("/logout-all")[-1].status == 200
    assert error_of(me(site, page_token)) == (401, "session_revoked")
    assert error_of(me(site, other["access_token"])) == (401, "session_revoked")
    assert error_of(refresh_with(site, other["refresh_token"])) == (401, "session_revoked")
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.locator("#account-view")).to_be_hidden()


def test_log_out_ends_the_session_and_drops_the_refresh_cookie(page, context, site, username):
    """The "Log out" button revokes the page's session and token and clears the refresh cookie."""
    traffic = Traffic(page)
    log_in(page, username)
    page_token = sent_token(traffic.to("/sessions")[-1])
    assert page_token

    page.locator("#logout").click()

    expect(page.locator("#notice")).to_have_text("You have logged out.")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert error_of(me(site, page_token)) == (401, "token_revoked")
    assert [c for c in context.cookies() if c["name"] == REFRESH_COOKIE] == []
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_the_page_fits_a_phone_and_loads_nothing_from_elsewhere(browser, site, username, tmp_path):
    """At 390x844 nothing overflows sideways; every request stays on the server's origin."""
    phone = browser.new_context(base_url=site.url, viewport=PHONE, device_scale_factor=2)
    phone.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = phone.new_page()
        csp = page.goto("/account/").headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        api_login(site, username, device_id="living-room-thermostat-with-a-long-name-0123456789")
        log_in(page, username)
        reload_sessions(page)
        expect(page.locator("li.session")).to_have_count(2)
        page.screenshot(path=tmp_path / "account-mobile.png", full_page=True)

        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        viewport = page.locator('meta[name="viewport"]').get_attribute("content")
        assert viewport
        assert "width=device-width" in viewport
        assert urls
        assert {urlsplit(url).netloc for url in urls} == {urlsplit(site.url).netloc}
        for button in page.get_by_role("button").all():
            if button.is_visible():
                box = button.bounding_box()
                assert box
                assert box["height"] >= 44, button.inner_text()  # a finger's size
    finally:
        phone.close()
