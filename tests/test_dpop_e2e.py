"""DPoP end to end: the real `authsvc serve` (gunicorn, 2 workers) over HTTP.

A proof replayed to another worker must be refused as well: the replay memory is in
Redis, inside the session's script, not in a worker's memory.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.dpop_keys import DeviceKey
from tests.test_e2e import E2E_USER, HTTP_TIMEOUT, serving_on_test_redis

pytestmark = pytest.mark.e2e

COPIES = 16
ROUNDS = 5
ME = "/api/v1/user/me"
LOGIN = "/api/v1/user/login"
REFRESH = "/api/v1/user/refresh"


def pids_answering(stderr: str, path: str) -> dict[int, set[int]]:
    """Per request status of ``path``: the worker pids that answered it (request log)."""
    seen: dict[int, set[int]] = {}
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "authsvc.request" and entry.get("path") == path:
            seen.setdefault(entry["status"], set()).add(entry["pid"])
    return seen


def blast(url: str, method: str, path: str, headers: dict, body: dict | None = None) -> dict:
    """Send COPIES identical requests at once; exactly one is accepted (its data)."""
    barrier = threading.Barrier(COPIES)

    def send(_: int) -> requests.Response:
        barrier.wait(timeout=HTTP_TIMEOUT)
        return requests.request(
            method, url + path, headers=headers, json=body, timeout=HTTP_TIMEOUT
        )

    with ThreadPoolExecutor(COPIES) as pool:
        responses = list(pool.map(send, range(COPIES)))
    refused = 400 if path == REFRESH else 401
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [refused] * (COPIES - 1), statuses
    assert {r.json()["data"]["error"] for r in responses if r.status_code != 200} == {
        "invalid_dpop_proof"
    }
    return next(r.json()["data"] for r in responses if r.status_code == 200)


def test_a_proof_replayed_across_two_workers_is_accepted_once(real_redis_url, tmp_path):
    """16 copies of one /me request (same proof) and of one refresh (same proof) sent at
    once on separate connections, so both workers take some: exactly one of each is
    accepted, every other copy is invalid_dpop_proof, and both workers refused one."""
    with serving_on_test_redis(real_redis_url, tmp_path, users=(E2E_USER,)) as serve:
        key = DeviceKey()
        login = requests.post(
            serve.url + LOGIN,
            json={"username": E2E_USER[0], "password": E2E_USER[1]},
            headers={"DPoP": key.proof("POST", LOGIN, base=serve.url)},
            timeout=HTTP_TIMEOUT,
        )
        assert login.status_code == 200, login.text
        pair = login.json()["data"]
        refresh_token = pair["refresh_token"]
        # Rounds of fresh proofs until both workers have refused a copy of each: the
        # kernel spreads connections, so one round almost always suffices.
        for _ in range(ROUNDS):
            blast(
                serve.url, "GET", ME, key.headers("GET", ME, pair["access_token"], base=serve.url)
            )
            accepted = blast(
                serve.url,
                "POST",
                REFRESH,
                {"DPoP": key.proof("POST", REFRESH, base=serve.url)},
                {"refresh_token": refresh_token},
            )
            refresh_token = accepted["refresh_token"]
            answered = [pids_answering(serve.stderr(), path) for path in (ME, REFRESH)]
            if all(
                len(a.get(status, set())) == 2
                for a, status in zip(answered, (401, 400), strict=True)
            ):
                break
        for path, refused in ((ME, 401), (REFRESH, 400)):
            answered = pids_answering(serve.stderr(), path)
            assert len(answered.get(refused, set())) == 2, answered  # both workers refused
