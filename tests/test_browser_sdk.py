"""The browser SDK (/sdk/v1/authsvc.js) in headless Chromium, several tabs of one origin.

Each tab is a page of one BrowserContext (one cookie jar, one origin) that loads a bare
harness page importing the served SDK. The server hands out 120 s access tokens, so no
renewal timer fires during a test: every refresh counted here is one the test caused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from playwright.sync_api import BrowserContext, Page, Request, Route

from authsvc.api.sdk import (
    BUILD,
    CACHE_CONTROL,
    ENTRY_CACHE_CONTROL,
    ENTRY_MAX_AGE,
    SDK_ROOT,
)
from authsvc.client_dpop import jwk_thumbprint
from tests.conftest import bearer
from tests.test_browser import PASSWORD, UI_TIMEOUT_MS, accounts, api_login, context, username
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

__all__ = ["accounts", "context", "username"]  # fixtures shared with test_browser

HARNESS = "/sdk-harness"
# A bare page of the server's origin that imports the served SDK, as a front-end would.
# ?options=<JSON> passes AuthClient options.
HARNESS_HTML = """<!doctype html><meta charset="utf-8"><title>harness</title>
<script type="module">
  import { AuthClient, SDK_BUILD, SDK_VERSION } from "/sdk/v1/authsvc.js";
  window.sdk = { build: SDK_BUILD, version: SDK_VERSION };
  window.ended = [];
  const options = JSON.parse(new URLSearchParams(location.search).get("options") ?? "{}");
  window.auth = new AuthClient(options);
  auth.addEventListener("sessionended", (event) => ended.push(event.detail.reason));
  window.ready = true;
</script>"""
# Starts auth[method]() in the tab without waiting; window.outcome gets "ok" or the slug.
START = "(method) => { window.outcome = auth[method]().then(() => 'ok', (e) => e.slug); }"
INTROSPECTOR = ("resource-api", "resource-api-secret-0123456789")
WAIT_S = UI_TIMEOUT_MS / 1000


@pytest.fixture(scope="module")
def site(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`authsvc serve` with access tokens long enough that no renewal timer fires."""
    with serving_on_test_redis(
        real_redis_url,
        tmp_path_factory.mktemp("browser-sdk"),
        ACCESS_TOKEN_TTL=120,
        TOKEN_CLIENTS=":".join(INTROSPECTOR),
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


def open_tabs(context: BrowserContext, count: int, options: str = "") -> list[Page]:
    """``count`` tabs on the harness page, each with its AuthClient ready."""
    context.route(
        f"**{HARNESS}*", lambda route: route.fulfill(body=HARNESS_HTML, content_type="text/html")
    )
    tabs = [context.new_page() for _ in range(count)]
    for tab in tabs:
        tab.goto(HARNESS + (f"?options={options}" if options else ""))
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


def test_the_entry_point_is_short_cached_and_the_hashed_build_immutable(site):
    """/sdk/v1/authsvc.js: a short-cached entry point (ETag, 304) re-exporting
    <hash>/authsvc.js; every file of the build immutable for a year under a folder named
    by the hash of all of them; the declarations cover every export."""

    def get(path: str, **options: object) -> requests.Response:
        return requests.get(f"{site.url}/sdk/v1/{path}", timeout=HTTP_TIMEOUT, **options)

    entry, build, types = get("authsvc.js"), get(f"{BUILD}/authsvc.js"), get("authsvc.d.ts")
    dpop, build_types = get(f"{BUILD}/dpop.js"), get(f"{BUILD}/authsvc.d.ts")

    for response in (entry, build, types, dpop, build_types):
        assert response.status_code == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert entry.headers["Cache-Control"] == f"public, max-age={ENTRY_MAX_AGE}"
    assert types.headers["Cache-Control"] == ENTRY_CACHE_CONTROL
    assert CACHE_CONTROL == "public, max-age=31536000, immutable"
    for response in (build, dpop, build_types):
        assert response.headers["Cache-Control"] == CACHE_CONTROL
    assert (
        entry.headers["Content-Type"]
        == build.headers["Content-Type"]
        == ("text/javascript; charset=utf-8")
    )
    assert entry.headers["X-TypeScript-Types"] == "./authsvc.d.ts"
    assert types.headers["Content-Type"] == "application/typescript; charset=utf-8"
    source = (SDK_ROOT / "authsvc.js").read_bytes()
    assert build.content == source
    assert dpop.content == (SDK_ROOT / "dpop.js").read_bytes()
    assert build_types.content == types.content == (SDK_ROOT / "authsvc.d.ts").read_bytes()
    assert 'from "./dpop.js";' in build.text  # resolved inside the build's folder
    assert f'export * from "./{BUILD}/authsvc.js";' in entry.text
    revalidated = get("authsvc.js", headers={"If-None-Match": entry.headers["ETag"]})
    assert revalidated.status_code == 304
    assert revalidated.content == b""

    # An entry point cached before an upgrade names a build this server does not have:
    # it gets this server's build, but never cached as immutable under the wrong name.
    other = get("0123456789abcdef/authsvc.js")
    assert (other.status_code, other.content) == (200, source)
    assert other.headers["Cache-Control"] == ENTRY_CACHE_CONTROL
    assert get("not-a-hash/authsvc.js").status_code == 404
    assert get(f"{BUILD}/app.js").status_code == 404

    exported = set(re.findall(r"^export (?:const|function|class) (\w+)", build.text, re.M))
    exported |= set(re.findall(r"^export const (\w+)", entry.text, re.M))
    declared = set(re.findall(r"^export declare (?:const|function|class) (\w+)", types.text, re.M))
    assert (
        exported
        == declared
        == {
            "SDK_VERSION",
            "SDK_BUILD",
            "CSRF_COOKIE",
            "SESSION_OVER_ERRORS",
            "REFRESH_OVER_ERRORS",
            "readCsrf",
            "AuthError",
            "AuthClient",
        }
    )
    methods = set(re.findall(r"^  (?:async )?([a-z]\w*)\(", build.text, re.M))
    assert methods <= set(re.findall(r"^  ([a-z]\w*)\(", types.text, re.M))


def test_a_page_importing_the_entry_point_runs_the_hashed_build(context):
    """Chromium follows the entry point to <hash>/authsvc.js: the code that runs is the
    current build (SDK_BUILD, SDK_VERSION), fetched under its immutable names."""
    fetched: list[str] = []
    context.on("request", lambda r: fetched.append(urlsplit(r.url).path))

    (tab,) = open_tabs(context, 1)

    assert tab.evaluate("window.sdk") == {"build": BUILD, "version": "1.1.0"}
    assert [p for p in fetched if p.startswith("/sdk/")] == [
        "/sdk/v1/authsvc.js",
        f"/sdk/v1/{BUILD}/authsvc.js",
        f"/sdk/v1/{BUILD}/dpop.js",
    ]


def test_an_entry_point_cached_from_another_build_still_loads_the_current_code(context):
    """A browser still holding an entry point that names another build (cached before
    an upgrade, or served by another host of a rolling deploy) imports without error and
    runs this server's build."""
    stale_entry = (
        'export * from "./0123456789abcdef/authsvc.js";\nexport const SDK_BUILD = "old";\n'
    )
    context.route(
        "**/sdk/v1/authsvc.js",
        lambda route: route.fulfill(body=stale_entry, content_type="text/javascript"),
    )

    (tab,) = open_tabs(context, 1)

    assert tab.evaluate("window.sdk") == {"build": "old", "version": "1.1.0"}
    assert tab.evaluate("typeof auth.refresh") == "function"


def revoke_access_token(site: ServeProcess, token: str) -> None:
    """RFC 7009: revoke this access token alone (the session lives)."""
    requests.post(
        f"{site.url}/api/v1/token/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        auth=INTROSPECTOR,
        timeout=HTTP_TIMEOUT,
    ).raise_for_status()


def test_an_access_token_revoked_alone_renews_once_and_keeps_the_session(context, site, username):
    """me() answered token_revoked renews once (one refresh for both tabs) and retries;
    no tab's session ends. The same through auth.fetch."""
    tabs = open_tabs(context, 2)
    log_in(tabs, username)
    log = RefreshLog(context)
    revoke_access_token(site, tabs[0].evaluate("auth.getAccessToken()"))

    assert tabs[0].evaluate("auth.me().then((me) => me.username)") == username

    assert log.statuses() == [200]
    assert [tab.evaluate("window.ended") for tab in tabs] == [[], []]
    revoke_access_token(site, tabs[1].evaluate("auth.getAccessToken()"))
    assert call_me(tabs[1]) == 200
    assert log.statuses() == [200, 200]
    assert [tab.evaluate("auth.signedIn") for tab in tabs] == [True, True]


def test_token_revoked_with_the_session_over_ends_it_on_the_refreshs_word(context, site, username):
    """Logged out elsewhere: the API says token_revoked, the renewal says session_revoked,
    and that answer ends the session in every tab."""
    tabs = open_tabs(context, 2)
    log_in(tabs, username)
    token = tabs[0].evaluate("auth.getAccessToken()")
    requests.post(f"{site.url}{API}/logout", headers=bearer(token), timeout=HTTP_TIMEOUT)

    tabs[0].evaluate("() => { window.outcome = auth.me().then(() => 'ok', (e) => e.slug); }")

    assert outcome(tabs[0]) == "session_revoked"
    for tab in tabs:
        tab.wait_for_function("window.ended.length > 0")
        assert tab.evaluate("window.ended") == ["session_revoked"]


def test_client_id_and_scope_then_a_narrowing_refresh_reaches_every_tab(
    context, accounts, username
):
    """new AuthClient({clientId, scope}) logs in through that client; refresh({scope})
    narrows the session (even right after a renewal) and every tab gets the new scope."""
    accounts.clients.add("web", "Web", ("admin", "profile"), ("cookie",))
    admin = f"{username}-admin"
    accounts.add_user(admin, PASSWORD, ("admin",))
    tabs = open_tabs(context, 2, '{"clientId": "web", "scope": "admin profile"}')
    log_in(tabs, admin)
    assert [tab.evaluate("auth.scope") for tab in tabs] == ["admin profile"] * 2

    tabs[0].evaluate("auth.refresh()")
    tabs[0].evaluate("auth.refresh({ scope: 'profile' })")

    for tab in tabs:
        tab.wait_for_function("auth.scope === 'profile'")
    assert tabs[1].evaluate("auth.me().then((me) => [me.client_id, me.scope])") == [
        "web",
        "profile",
    ]
    widen = "auth.refresh({ scope: 'admin' }).then(() => 'ok', (e) => e.slug)"
    assert tabs[0].evaluate(widen) == "invalid_scope"
    assert [tab.evaluate("auth.signedIn") for tab in tabs] == [True, True]


def dpop_proofs(context: BrowserContext) -> list[tuple[str, dict[str, Any]]]:
    """(path, verified proof) of every request of ``context`` that carries a DPoP header."""
    proofs: list[tuple[str, dict[str, Any]]] = []

    def record(request: Request) -> None:
        proof = request.headers.get("dpop")
        if proof is not None:
            proofs.append((urlsplit(request.url).path, verified_proof(proof, request)))

    context.on("request", record)
    return proofs


def verified_proof(proof: str, request: Request) -> dict[str, Any]:
    """What a server checks of a browser's proof, with PyJWT: the claims and the jkt."""
    header = jwt.get_unverified_header(proof)
    assert (header["typ"], header["alg"]) == ("dpop+jwt", "ES256")
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # never a private member
    key = jwt.PyJWK(header["jwk"], algorithm="ES256")
    claims = jwt.decode(proof, key=key, algorithms=["ES256"])
    parts = urlsplit(request.url)
    assert claims["htm"] == request.method
    assert claims["htu"] == f"{parts.scheme}://{parts.netloc}{parts.path}"
    assert abs(claims["iat"] - time.time()) < 60
    return {**claims, "jkt": jwk_thumbprint(header["jwk"])}


STORED_KEY = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("authsvc-dpop");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const all = open.result.transaction("keys").objectStore("keys").getAll();
    all.onsuccess = () => resolve(all.result.map((record) => ({
      extractable: record.privateKey.extractable,
      algorithm: record.privateKey.algorithm,
      jwk: record.jwk,
    })));
  };
})"""


def test_dpop_key_is_non_extractable_in_indexeddb_and_shared_by_tabs_and_reloads(context, username):
    """{dpop: true}: the login carries a proof; the key is a non-extractable P-256 key in
    IndexedDB; a cookie refresh from another tab, and after a reload, is signed by it."""
    proofs = dpop_proofs(context)
    tabs = open_tabs(context, 2, '{"dpop": true}')
    log_in(tabs, username)

    (stored,) = tabs[1].evaluate(STORED_KEY)
    assert stored["extractable"] is False
    assert stored["algorithm"] == {"name": "ECDSA", "namedCurve": "P-256"}
    tabs[1].evaluate(START, "refresh")
    assert outcome(tabs[1]) == "ok"
    tabs[1].reload()
    tabs[1].wait_for_function("window.ready === true")
    assert tabs[1].evaluate("auth.resume()") is True  # handed over by the other tab
    tabs[1].evaluate(START, "refresh")
    assert outcome(tabs[1]) == "ok"

    paths = [path for path, _ in proofs]
    assert paths == [f"{API}/login", f"{API}/refresh", f"{API}/refresh"]
    assert {proof["jkt"] for _, proof in proofs} == {jwk_thumbprint(stored["jwk"])}
    assert len({proof["jti"] for _, proof in proofs}) == 3
    assert all("ath" not in proof for _, proof in proofs)  # no access token went with them


def test_a_bound_session_across_two_tabs_a_renewal_and_a_reload(context, site, username):
    """{dpop: true} against the DPoP server: the login binds the cookie session to the
    IndexedDB key; both tabs call as `DPoP`; one refresh renews for both; a reloaded tab
    resumes, calls and refreshes with the same key; the token alone, as Bearer, fails."""
    proofs = dpop_proofs(context)
    tabs = open_tabs(context, 2, '{"dpop": true}')
    log_in(tabs, username)
    (stored,) = tabs[0].evaluate(STORED_KEY)
    jkt = jwk_thumbprint(stored["jwk"])
    me = "auth.me().then((me) => me.cnf && me.cnf.jkt)"

    assert [tab.evaluate(me) for tab in tabs] == [jkt, jkt]
    log = RefreshLog(context)
    for tab in tabs:
        tab.evaluate(START, "refresh")
    assert [outcome(tab) for tab in tabs] == ["ok", "ok"]
    assert log.statuses() == [200]
    tabs[0].reload()
    tabs[0].wait_for_function("window.ready === true")
    assert tabs[0].evaluate("auth.resume()") is True
    assert tabs[0].evaluate(me) == jkt
    tabs[0].evaluate(START, "refresh")
    assert outcome(tabs[0]) == "ok"
    assert [tab.evaluate(me) for tab in tabs] == [jkt, jkt]
    assert call_me(tabs[1]) == 200  # auth.fetch signs too

    assert {proof["jkt"] for _, proof in proofs} == {jkt}
    assert all("ath" in proof for path, proof in proofs if path == f"{API}/me")
    token = tabs[1].evaluate("auth.getAccessToken()")
    stolen = requests.get(f"{site.url}{API}/me", headers=bearer(token), timeout=HTTP_TIMEOUT)
    assert stolen.status_code == 401
    assert [tab.evaluate("window.ended") for tab in tabs] == [[], []]
