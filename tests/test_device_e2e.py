"""The device flow end to end: a device polls `authsvc serve` while its owner approves on
the /device page in headless Chromium; then the device's session lives like any other.

The device side is oauthlib's RFC 8628 client (``oauthlib.oauth2.DeviceClient``): a
third-party implementation builds its requests and parses the answers, over plain HTTP.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import requests
from oauthlib.oauth2 import DeviceClient
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from playwright.sync_api import Browser, Page, expect

from authsvc import create_app
from authsvc.service import AuthService
from tests.conftest import TEST_SECRET, bearer
from tests.test_e2e import API, HTTP_TIMEOUT, WORKERS, ServeProcess, serving_on_test_redis

pytestmark = pytest.mark.e2e

CLIENT_ID = "tv-box"
PASSWORD = "device owner password 01"
UI_TIMEOUT_MS = 15_000
POLL_DEADLINE_S = 60


@pytest.fixture(scope="module")
def site(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`authsvc serve` (2 workers) on the test Redis, polling interval 1 s."""
    with serving_on_test_redis(
        real_redis_url, tmp_path_factory.mktemp("device"), DEVICE_POLL_INTERVAL=1
    ) as serve:
        yield serve


@pytest.fixture(scope="module")
def accounts(site: ServeProcess, real_redis_url: str) -> Iterator[AuthService]:
    """An AuthService over the served Redis: the owner's account and the TV's client."""
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    service = create_app({"JWT_SECRET": TEST_SECRET}, redis_client=client).extensions["authsvc"]
    service.clients.add(CLIENT_ID, "TV box", ("profile",), grants=("device_code",))
    yield service
    client.close()


class Device:
    """A keyboard-less device: asks for codes, then polls until it gets tokens (a thread)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.oauth = DeviceClient(CLIENT_ID)
        self.answers: list[str] = []
        self.token: dict[str, Any] | None = None
        self.codes: dict[str, Any] = {}

    def ask(self) -> dict[str, Any]:
        response = requests.post(
            self.base_url + "/oauth/device_authorization",
            data={"client_id": CLIENT_ID, "scope": "profile", "device_name": "living-room-tv"},
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        self.codes = response.json()
        return self.codes

    def poll_until_done(self) -> None:
        # RFC 8628 section 3.4: a public client names itself with client_id.
        body = self.oauth.prepare_request_body(self.codes["device_code"], include_client_id=True)
        interval = self.codes["interval"]
        deadline = time.monotonic() + POLL_DEADLINE_S
        while time.monotonic() < deadline:
            time.sleep(interval)
            response = requests.post(
                self.base_url + "/oauth/token",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=HTTP_TIMEOUT,
            )
            try:
                self.token = self.oauth.parse_request_body_response(response.text)
            except OAuth2Error as error:
                self.answers.append(error.error)
                if error.error == "slow_down":
                    interval += 5
                elif error.error != "authorization_pending":
                    return
            else:
                self.answers.append("tokens")
                return


@contextmanager
def polling_device(
    site: ServeProcess, accounts: AuthService, browser: Browser
) -> Iterator[tuple[str, Device, dict[str, Any], Page]]:
    """A fresh owner, a device polling in a thread with its codes, and a browser tab.

    On exit the tab's context closes and the poller has ended (it stops by itself).
    """
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    accounts.add_user(owner, PASSWORD)
    device = Device(site.url)
    codes = device.ask()
    poller = threading.Thread(target=device.poll_until_done)
    poller.start()
    # The owner acts once the device has polled at least once (pending): both orders
    # happen in the field, but the test must see the pending answer to prove it.
    waited = time.monotonic() + POLL_DEADLINE_S
    while not device.answers and poller.is_alive() and time.monotonic() < waited:
        time.sleep(0.05)
    context = browser.new_context(base_url=site.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield owner, device, codes, context.new_page()
    finally:
        context.close()
        poller.join(POLL_DEADLINE_S + 10)


def log_in(page: Page, owner: str) -> None:
    """Log in on the /device page's form."""
    page.fill("#username", owner)
    page.fill("#password", PASSWORD)
    page.click("#login-form [type=submit]")


def test_a_device_is_approved_on_the_page_and_gets_a_normal_session(
    site: ServeProcess, accounts: AuthService, browser: Browser
) -> None:
    with polling_device(site, accounts, browser) as (owner, device, codes, page):
        page.goto(codes["verification_uri_complete"].removeprefix(site.url))
        log_in(page, owner)
        expect(page.locator("#confirm-view")).to_be_visible()
        expect(page.locator("#client-name")).to_have_text("TV box")
        expect(page.locator("#scopes")).to_have_text("profile")
        expect(page.locator("#device-name")).to_have_text("living-room-tv")
        expect(page.locator("#device-ip")).to_have_text("127.0.0.1")
        expect(page.locator("#shown-code")).to_have_text(codes["user_code"])
        page.click("#approve")
        expect(page.locator("#done-view")).to_be_visible()
    assert device.answers[-1] == "tokens", device.answers
    assert "authorization_pending" in device.answers
    assert device.token is not None
    access, refresh = device.token["access_token"], device.token["refresh_token"]

    me = requests.get(f"{site.url}{API}/me", headers=bearer(access), timeout=HTTP_TIMEOUT)
    assert (me.json()["data"]["username"], me.json()["data"]["client_id"]) == (owner, CLIENT_ID)
    rotated = requests.post(
        f"{site.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLIENT_ID},
        timeout=HTTP_TIMEOUT,
    )
    assert rotated.status_code == 200, rotated.text
    # The owner ends every session from elsewhere: the device's is among them.
    owner_login = requests.post(
        f"{site.url}{API}/login",
        json={"username": owner, "password": PASSWORD},
        timeout=HTTP_TIMEOUT,
    ).json()["data"]
    sessions = requests.get(
        f"{site.url}{API}/sessions",
        headers=bearer(owner_login["access_token"]),
        timeout=HTTP_TIMEOUT,
    ).json()["data"]["sessions"]
    assert "living-room-tv" in {s.get("device_id") for s in sessions}
    requests.post(
        f"{site.url}{API}/logout-all",
        headers=bearer(owner_login["access_token"]),
        timeout=HTTP_TIMEOUT,
    )
    after = requests.post(
        f"{site.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": rotated.json()["refresh_token"],
            "client_id": CLIENT_ID,
        },
        timeout=HTTP_TIMEOUT,
    )
    assert (after.status_code, after.json()["error"]) == (400, "invalid_grant")


def test_a_denied_device_stops_polling_with_access_denied(
    site: ServeProcess, accounts: AuthService, browser: Browser
) -> None:
    with polling_device(site, accounts, browser) as (owner, device, codes, page):
        page.goto("/device")
        log_in(page, owner)
        page.fill("#user-code", codes["user_code"].lower().replace("-", " "))
        page.click("#code-form [type=submit]")
        page.click("#deny")
        expect(page.locator("#done-title")).to_contain_text("Denied")
    assert device.answers[-1] == "access_denied", device.answers
    assert device.token is None


RACING_POLLS = 16
# A fresh code per race until one race's polls were answered by both workers: the
# kernel spreads new connections, so the first race almost always is.
MAX_RACES = 5
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def log_lines(site: ServeProcess, request_ids: set[str]) -> list[dict[str, Any]]:
    """The JSON log lines (request log and audit) of ``request_ids``, once each request
    has its request-log line (a worker writes it as it answers)."""
    deadline = time.monotonic() + HTTP_TIMEOUT
    while True:
        lines = []
        for text in site.stderr().splitlines():
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("request_id") in request_ids:
                lines.append(entry)
        logged = {e["request_id"] for e in lines if e.get("logger") == "authsvc.request"}
        if logged == request_ids or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def approved_code(site: ServeProcess, accounts: AuthService) -> dict[str, Any]:
    """A device's codes, approved over HTTP by a fresh owner who then logs out (so the
    device's session will be the owner's only one)."""
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    accounts.add_user(owner, PASSWORD)
    codes = Device(site.url).ask()
    login = requests.post(
        f"{site.url}{API}/login",
        json={"username": owner, "password": PASSWORD},
        timeout=HTTP_TIMEOUT,
    )
    assert login.status_code == 200, login.text
    token = login.json()["data"]["access_token"]
    approve = requests.post(
        f"{site.url}/api/v1/device/approve",
        json={"user_code": codes["user_code"]},
        headers=bearer(token),
        timeout=HTTP_TIMEOUT,
    )
    assert approve.status_code == 200, approve.text
    logout = requests.post(f"{site.url}{API}/logout", headers=bearer(token), timeout=HTTP_TIMEOUT)
    assert logout.status_code == 200, logout.text
    return codes


def race_polls(site: ServeProcess, device_code: str) -> dict[str, requests.Response]:
    """RACING_POLLS device-code polls released at once, each on a new connection; the
    answers by request id."""
    body = DeviceClient(CLIENT_ID).prepare_request_body(device_code, include_client_id=True)
    barrier = threading.Barrier(RACING_POLLS)

    def poll(_: int) -> tuple[str, requests.Response]:
        request_id = uuid.uuid4().hex
        barrier.wait(timeout=HTTP_TIMEOUT)
        response = requests.post(
            f"{site.url}/oauth/token",
            data=body,
            headers={**FORM, "X-Request-ID": request_id},
            timeout=HTTP_TIMEOUT,
        )
        return request_id, response

    with ThreadPoolExecutor(RACING_POLLS) as pool:
        return dict(pool.map(poll, range(RACING_POLLS)))


def test_racing_polls_on_both_workers_redeem_an_approved_code_once(
    site: ServeProcess, accounts: AuthService
) -> None:
    """16 polls of one approved device code, released together on new connections to the
    two gunicorn workers: one gets tokens, 15 get invalid_grant, the owner has exactly
    that one session, and one token issuance is logged; both workers answered polls of
    the race (their pids in the request log), so the code is redeemed once across
    processes, not only across one process's threads."""
    for _ in range(MAX_RACES):
        codes = approved_code(site, accounts)
        answers = race_polls(site, codes["device_code"])

        statuses = sorted(r.status_code for r in answers.values())
        assert statuses == [200] + [400] * (RACING_POLLS - 1), statuses
        refused = {r.json()["error"] for r in answers.values() if r.status_code == 400}
        assert refused == {"invalid_grant"}
        ((winner_id, winner),) = [(i, r) for i, r in answers.items() if r.status_code == 200]
        tokens = winner.json()
        sessions = requests.get(
            f"{site.url}{API}/sessions",
            headers=bearer(tokens["access_token"]),
            timeout=HTTP_TIMEOUT,
        )
        assert sessions.status_code == 200, sessions.text
        assert [(s["session_id"], s["client_id"]) for s in sessions.json()["data"]["sessions"]] == [
            (tokens["session_id"], CLIENT_ID)
        ]

        lines = log_lines(site, set(answers))
        pids = {e["request_id"]: e["pid"] for e in lines if e.get("logger") == "authsvc.request"}
        assert set(pids) == set(answers)
        issued = [e for e in lines if e.get("event") == "device_token_issued"]
        assert [(e["request_id"], e["session_id"]) for e in issued] == [
            (winner_id, tokens["session_id"])
        ]
        if len(set(pids.values())) == WORKERS:
            return
    pytest.fail(f"no race of {RACING_POLLS} polls reached both workers in {MAX_RACES} races")
