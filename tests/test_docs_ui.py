"""/docs (Swagger UI) in headless Chromium against the real `authsvc serve`, over real HTTP.

The page must load only from this origin, list every operation of /openapi.json, and
run them: "Try it out" sends a real fetch to the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, Response, expect

from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER
from tests.test_e2e import API, DEMO_USER, HTTP_TIMEOUT, ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

# Swagger UI renders an expanded operation (a dozen statuses with examples) in about 2 s
# on the shared 2-core machine, and several times that while other suites run: a wait
# limit with room for that, not a speed requirement.
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def docs_site(
    real_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """`authsvc serve` on the test Redis with the quick start's demo account."""
    with serving_on_test_redis(
        real_redis_url, tmp_path_factory.mktemp("docs"), users=(DEMO_USER,)
    ) as serve:
        yield serve


@pytest.fixture
def page(browser: Browser, docs_site: ServeProcess) -> Iterator[Page]:
    """A tab of a fresh browser profile (no cookies) pointed at the server."""
    context = browser.new_context(base_url=docs_site.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def operation(page: Page, method: str, path: str) -> Locator:
    """The block of one operation, expanded, with "Try it out" on."""
    block = page.locator(f".opblock-{method.lower()}:has([data-path='{path}'])")
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    return block


def execute(page: Page, block: Locator, path: str) -> Response:
    """Click Execute in ``block``; the server's answer to the fetch it sends."""
    with page.expect_response(lambda r: urlsplit(r.url).path == path) as answer:
        block.get_by_role("button", name="Execute").click()
    return answer.value


def shown_status(block: Locator) -> Locator:
    """The status code the page shows for the live answer."""
    return block.locator(".live-responses-table .response .response-col_status")


def authorization(response: Response) -> str | None:
    """The Authorization header the page sent."""
    return response.request.all_headers().get("authorization")


def test_page_lists_every_operation_and_loads_nothing_from_elsewhere(page, docs_site):
    """Every request stays on the app's origin, the CSP refuses nothing, all operations show."""
    spec = requests.get(f"{docs_site.url}/openapi.json", timeout=HTTP_TIMEOUT).json()
    expected = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto("/docs")
    expect(page.locator(".opblock")).to_have_count(len(expected))
    shown = page.eval_on_selector_all(
        ".opblock",
        """blocks => blocks.map(b => [
          b.querySelector(".opblock-summary-method").textContent,
          b.querySelector(".opblock-summary-path").dataset.path])""",
    )
    assert {(method, path) for method, path in shown} == expected
    # Markdown is rendered: code in the descriptions is code, not ``literal`` text.
    expect(page.locator(".info .renderedMarkdown code", has_text="data.error")).to_be_visible()
    expect(page.get_by_text("``")).to_have_count(0)

    origin = urlsplit(docs_site.url)
    assert {(urlsplit(url).scheme, urlsplit(url).netloc) for url in requested} == {
        (origin.scheme, origin.netloc)
    }
    assert f"{docs_site.url}/openapi.json" in requested
    assert problems == []


def test_try_it_out_logs_in_with_the_demo_account_and_authorizes_protected_calls(page):
    """Login as prefilled (the demo account) answers 200; GET /me then works with its token."""
    page.goto("/docs")
    login = operation(page, "POST", f"{API}/login")
    answer = execute(page, login, f"{API}/login")
    assert answer.status == 200
    body = answer.json()
    assert (body["code"], body["msg"]) == (200, "ok")
    expect(shown_status(login)).to_have_text("200")

    me = operation(page, "GET", f"{API}/me")
    answer = execute(page, me, f"{API}/me")
    assert authorization(answer) == f"Bearer {body['data']['access_token']}"
    assert answer.status == 200
    assert answer.json()["data"]["username"] == DEMO_USER[0]
    expect(shown_status(me)).to_have_text("200")


def test_a_token_pasted_into_authorize_is_sent_with_protected_calls(page, docs_site):
    """Without a token GET /me is a 401 envelope; with one pasted via Authorize it is a 200."""
    username, password = DEMO_USER
    login = requests.post(
        f"{docs_site.url}{API}/login",
        json={"username": username, "password": password},
        timeout=HTTP_TIMEOUT,
    )
    token = login.json()["data"]["access_token"]
    page.goto("/docs")
    me = operation(page, "GET", f"{API}/me")
    refused = execute(page, me, f"{API}/me")
    assert authorization(refused) is None
    assert (refused.status, refused.json()["data"]["error"]) == (401, "token_missing")

    page.locator(".scheme-container .btn.authorize").click()
    dialog = page.locator(".auth-container", has_text="bearerAuth")
    dialog.locator("input").fill(token)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.get_by_role("button", name="Close").click()

    answer = execute(page, me, f"{API}/me")
    assert authorization(answer) == f"Bearer {token}"
    assert answer.status == 200
    assert answer.json()["data"]["username"] == username


def test_cookie_transport_runs_from_the_page_with_the_csrf_header(page):
    """A cookie login, then POST /refresh with no body: the page adds X-CSRF-Token itself."""
    username, password = DEMO_USER
    page.goto("/docs")
    login = operation(page, "POST", f"{API}/login")
    body: dict[str, Any] = {"username": username, "password": password, "transport": "cookie"}
    login.locator(".body-param__text").fill(json.dumps(body))
    assert "refresh_token" not in execute(page, login, f"{API}/login").json()["data"]
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == CSRF_COOKIE)

    refresh = operation(page, "POST", f"{API}/refresh")
    refresh.locator(".body-param__text").fill("")
    answer = execute(page, refresh, f"{API}/refresh")
    sent = answer.request.all_headers()
    assert sent[CSRF_HEADER.lower()] == csrf
    assert "authorization" not in sent  # POST /refresh takes no Bearer token
    assert answer.status == 200
    assert answer.json()["data"]["access_token"]
    expect(shown_status(refresh)).to_have_text("200")
