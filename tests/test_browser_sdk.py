"""The browser SDK (/sdk/v1/authsvc.js) in headless Chromium, several tabs of one origin.

Each tab is a page of one BrowserContext (one cookie jar, one origin) that loads a bare
harness page importing the served SDK. The server hands out 120 s access tokens, so no
renewal timer fires during a test: every refresh counted here is one the test caused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, Request, Route

from authsvc.api.sdk import CACHE_CONTROL, SDK_ROOT
from tests.conftest import bearer
from tests.test_browser import PASSWORD, UI_TIMEOUT_MS, accounts, api_login, context, username
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

__all__ = ["accounts", "context", "username"]  # fixtures shared with test_browser

HARNESS = "/sdk-harness"
# A bare page of the server's origin that imports the served SDK, as a front-end would.
HARNESS_HTML = """<!doctype html><meta charset="utf-8"><title>harness</title>
<script type="module">
  import { AuthClient } from "/sdk/v1/authsvc.js";
  window.ended = [];
  window.auth = new AuthClient();
  auth.addEventListener("sessionended", (event) => ended.push(event.detail.reason));
  window.ready = true;
</script>"""
# Starts auth[method]() in the tab without waiting; window.outcome gets "ok" or the slug.
START = "(method) => { window.outcome = auth[method]().then(() => 'ok', (e) => e.slug); }"
WAIT_S = UI_TIMEOUT_MS / 1000


@pytest.fixture(scope="module")
def site(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`authsvc serve` with access tokens long enough that no renewal timer fires."""
    with serving_on_test_redis(
        real_redis_url, tmp_path_factory.mktemp("browser-sdk"), ACCESS_TOKEN_TTL=120
    ) as serve:
        yield serve


class RefreshLog:
    """Every refresh request of the context and the Authorization header of every /me."""

    def __init__(self, context: BrowserContext) -> None:
        self.refreshes: list[Request] = []
        self.me_tokens: list[str] = []
        context.on("request", self._record)

    def _record(self, request: Request) -> None:
        path = urlsplit(request.url).path
        if path == f"{API}/refresh":
            self.refreshes.append(request)
        elif path == f"{API}/me":
            self.me_tokens.append(request.headers.get("authorization", ""))

    def statuses(self) -> list[int]:
        """The statuses of the refresh answers (None: no answer)."""
        return [r.response().status if r.response() else None for r in self.refreshes]


def open_tabs(context: BrowserContext, count: int) -> list[Page]:
    """``count`` tabs on the harness page, each with its AuthClient ready."""
    context.route(
        f"**{HARNESS}", lambda route: route.fulfill(body=HARNESS_HTML, content_type="text/html")
    )
    tabs = [context.new_page() for _ in range(count)]
    for tab in tabs:
        tab.goto(HARNESS)
        tab.wait_for_function("window.ready === true")
    return tabs


def log_in(tabs: list[Page], username: str) -> str:
    """Log in from the first tab; every tab picks the session up. Returns the session id."""
    result = tabs[0].evaluate("([u, p]) => auth.login(u, p)", [username, PASSWORD])
    for tab in tabs:
        tab.wait_for_function("auth.signedIn")
    return result["sessionId"]


def outcome(tab: Page) -> str:
    """What the call started with START came to."""
    return tab.evaluate("() => window.outcome")


def call_me(tab: Page) -> int:
    """GET /me through the SDK's fetch wrapper; the HTTP status."""
    return tab.evaluate(f"async () => (await auth.fetch('{API}/me')).status")


def wait_until(tab: Page, done: object) -> None:
    """Let Playwright dispatch events (route handlers) until ``done()`` is true."""
    deadline = time.monotonic() + WAIT_S
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        tab.wait_for_timeout(20)


# -- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 5])
def test_tabs_refreshing_at_the_same_moment_send_one_refresh(context, username, count):
    """N tabs ask for a refresh at once: one request, and every tab ends with its token."""
    tabs = open_tabs(context, count)
    log_in(tabs, username)
    log = RefreshLog(context)
    held: list[Route] = []
    # The first refresh is held until every tab has asked: no tab can see it finish first.
    context.route(f"**{API}/refresh", lambda route: held.append(route))

    for tab in tabs:
        tab.evaluate(START, "refresh")
    wait_until(tabs[0], lambda: held)
    context.unroute(f"**{API}/refresh")
    for route in held:
        route.continue_()

    assert [outcome(tab) for tab in tabs] == ["ok"] * count
    assert len(log.refreshes) == 1
    assert log.statuses() == [200]
    assert [call_me(tab) for tab in tabs] == [200] * count
    assert len(set(log.me_tokens)) == 1  # everybody uses the one new token
    assert [tab.evaluate("window.ended") for tab in tabs] == [[]] * count


def test_a_new_tab_takes_the_token_of_an_open_tab_without_refreshing(context, username):
    """A tab opened later resumes with the token another tab holds: no refresh at all."""
    (first,) = open_tabs(context, 1)
    log_in([first], username)
    log = RefreshLog(context)
    (second,) = open_tabs(context, 1)

    assert second.evaluate("auth.resume()") is True
    assert log.refreshes == []
    assert call_me(second) == 200


def test_a_tab_waking_after_a_revocation_elsewhere_ends_the_session_in_every_tab(
    context, site, username
):
    """A refresh answered session_revoked fires sessionended in the tab and in the others."""
    tabs = open_tabs(context, 2)
    session_id = log_in(tabs, username)
    other = api_login(site, username)
    requests.delete(
        f"{site.url}{API}/sessions/{session_id}",
        headers=bearer(other["access_token"]),
        timeout=HTTP_TIMEOUT,
    ).raise_for_status()

    tabs[1].evaluate(START, "refresh")

    assert outcome(tabs[1]) == "session_revoked"
    for tab in tabs:
        tab.wait_for_function("window.ended.length > 0")
        assert tab.evaluate("window.ended") == ["session_revoked"]
        assert tab.evaluate("auth.signedIn") is False


def test_logging_out_in_one_tab_ends_the_session_in_every_tab(context, username):
    """logout() fires sessionended (reason "logout") in every tab and clears the cookie."""
    tabs = open_tabs(context, 3)
    log_in(tabs, username)

    tabs[0].evaluate("auth.logout()")

    for tab in tabs:
        tab.wait_for_function("window.ended.length > 0")
        assert tab.evaluate("window.ended") == ["logout"]
    assert tabs[2].evaluate("auth.resume()") is False


@pytest.mark.parametrize(
    ("status", "content_type", "body", "slug"),
    [
        (502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>", None),
        (401, "text/html", "<html><body>Authorization Required</body></html>", None),
        (401, "application/json", '{"error": "unauthorized"}', None),
        # Enveloped, but a key rotation racing a worker can cause it: not the end.
        (401, "application/json", None, "token_invalid"),
    ],
    ids=["proxy-502", "proxy-401", "foreign-json-401", "token_invalid"],
)
def test_a_refusal_that_does_not_mean_the_session_is_over_keeps_it(
    context, username, status, content_type, body, slug
):
    """A stranger's 401/502 (or token_invalid) on refresh is retryable: the session stays."""
    tabs = open_tabs(context, 2)
    log_in(tabs, username)
    if body is None:
        body = f'{{"code": {status}, "msg": "Invalid token.", "data": {{"error": "{slug}"}}}}'
    context.route(
        f"**{API}/refresh",
        lambda route: route.fulfill(status=status, content_type=content_type, body=body),
        times=1,
    )

    tabs[0].evaluate(START, "refresh")

    assert outcome(tabs[0]) == (slug or "invalid_response")
    for tab in tabs:
        assert tab.evaluate("auth.signedIn") is True
        assert tab.evaluate("window.ended") == []
    tabs[0].evaluate(START, "refresh")
    assert outcome(tabs[0]) == "ok"
    assert [call_me(tab) for tab in tabs] == [200, 200]


def test_the_sdk_is_served_long_cached_with_its_declarations(site):
    """authsvc.js: JavaScript, immutable for a year; authsvc.d.ts next to it declares its API."""
    module = requests.get(f"{site.url}/sdk/v1/authsvc.js", timeout=HTTP_TIMEOUT)
    types = requests.get(f"{site.url}/sdk/v1/authsvc.d.ts", timeout=HTTP_TIMEOUT)

    for response in (module, types):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == CACHE_CONTROL
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert module.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert module.headers["X-TypeScript-Types"] == "./authsvc.d.ts"
    assert types.headers["Content-Type"] == "application/typescript; charset=utf-8"
    assert module.text == (SDK_ROOT / "authsvc.js").read_text()
    exported = set(re.findall(r"^export (?:const|function|class) (\w+)", module.text, re.M))
    declared = set(re.findall(r"^export declare (?:const|function|class) (\w+)", types.text, re.M))
    assert (
        exported
        == declared
        == {
            "SDK_VERSION",
            "CSRF_COOKIE",
            "SESSION_OVER_ERRORS",
            "REFRESH_OVER_ERRORS",
            "readCsrf",
            "AuthError",
            "AuthClient",
        }
    )
    methods = set(re.findall(r"^  (?:async )?([a-z]\w*)\(", module.text, re.M))
    assert methods <= set(re.findall(r"^  ([a-z]\w*)\(", types.text, re.M))
