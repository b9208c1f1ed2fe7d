"""Device codes in Redis (authsvc.store.devices): issue, decide, poll, redeem once.

Every test runs on fakeredis, a real Redis and the real Redis Cluster (the keys share
the ``{device}`` slot, so each script is atomic there too).
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from authsvc.device_flow import new_user_code, normalize_user_code
from authsvc.store import RedisClient
from authsvc.store.devices import Decision, DeviceCodes, PollStatus, hash_device_code

pytestmark = pytest.mark.cluster

CLIENT_ID = "tv-box"
UID = "u-1"


@pytest.fixture
def codes(redis_client: RedisClient) -> DeviceCodes:
    """The device-code store over the test's Redis."""
    return DeviceCodes(redis_client)


def issue(codes: DeviceCodes, **overrides: Any) -> tuple[str, str]:
    """A new pending authorization; returns (device_code, user_code)."""
    device_code, user_code = secrets.token_urlsafe(32), new_user_code()
    fields: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "scope": "profile",
        "jkt": "",
        "device_name": "living-room",
        "ip": "192.0.2.7",
        "user_agent": "tvbox/1.0",
        "interval": 5,
        "expires_ms": int(time.time() * 1000) + 600_000,
    }
    fields.update(overrides)
    assert codes.issue(device_code, user_code, **fields)
    return device_code, user_code


def every_key(client: RedisClient) -> list[str]:
    if isinstance(client, RedisCluster):
        return client.keys("*", target_nodes=RedisCluster.PRIMARIES)
    return client.keys("*")


def test_only_a_hash_of_the_device_code_is_stored_and_every_key_expires(
    codes: DeviceCodes, redis_client: RedisClient
) -> None:
    device_code, _ = issue(codes)
    keys = every_key(redis_client)
    assert keys
    dump = " ".join(keys) + " ".join(
        str(redis_client.hgetall(k) if redis_client.type(k) == "hash" else "") for k in keys
    )
    assert device_code not in dump
    assert hash_device_code(device_code) in dump
    for key in keys:
        assert 0 < redis_client.pttl(key) <= 600_000
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_a_taken_user_code_is_refused_and_writes_nothing(codes: DeviceCodes) -> None:
    _, user_code = issue(codes)
    other = secrets.token_urlsafe(32)
    expires_ms = int(time.time() * 1000) + 600_000
    assert not codes.issue(
        other,
        user_code,
        client_id="x",
        scope="",
        jkt="",
        device_name="",
        ip="",
        user_agent="",
        interval=5,
        expires_ms=expires_ms,
    )
    assert codes.poll(other, client_id="x", jkt="").status is PollStatus.EXPIRED


def test_polls_are_pending_until_approved_then_redeemed_exactly_once(codes: DeviceCodes) -> None:
    device_code, user_code = issue(codes, interval=0)
    assert codes.poll(device_code, client_id=CLIENT_ID, jkt="").status is PollStatus.PENDING
    assert codes.decide(user_code, UID, approve=True) is Decision.DONE
    result = codes.poll(device_code, client_id=CLIENT_ID, jkt="")
    assert result.status is PollStatus.APPROVED
    assert (result.user_id, result.scope, result.device_name) == (UID, "profile", "living-room")
    again = codes.poll(device_code, client_id=CLIENT_ID, jkt="")
    assert again.status is PollStatus.INVALID_GRANT
    assert codes.decide(user_code, "someone-else", approve=True) is Decision.DECIDED


def test_polling_faster_than_the_interval_raises_it_by_five_seconds(codes: DeviceCodes) -> None:
    device_code, _ = issue(codes, interval=5)
    assert codes.poll(device_code, client_id=CLIENT_ID, jkt="").status is PollStatus.PENDING
    first = codes.poll(device_code, client_id=CLIENT_ID, jkt="")
    assert (first.status, first.interval) == (PollStatus.SLOW_DOWN, 10)
    second = codes.poll(device_code, client_id=CLIENT_ID, jkt="")
    assert (second.status, second.interval) == (PollStatus.SLOW_DOWN, 15)


def test_a_denied_code_answers_access_denied_once_then_is_gone(codes: DeviceCodes) -> None:
    device_code, user_code = issue(codes, interval=0)
    assert codes.decide(user_code, UID, approve=False) is Decision.DONE
    assert codes.poll(device_code, client_id=CLIENT_ID, jkt="").status is PollStatus.DENIED
    assert codes.poll(device_code, client_id=CLIENT_ID, jkt="").status is PollStatus.EXPIRED
    assert codes.decide(user_code, UID, approve=True) is Decision.GONE


def test_another_clients_poll_changes_nothing(codes: DeviceCodes) -> None:
    device_code, user_code = issue(codes, interval=0)
    codes.decide(user_code, UID, approve=True)
    assert codes.poll(device_code, client_id="thief", jkt="").status is PollStatus.INVALID_GRANT
    assert codes.poll(device_code, client_id=CLIENT_ID, jkt="").status is PollStatus.APPROVED


def test_a_bound_code_is_redeemed_only_with_the_same_key(codes: DeviceCodes) -> None:
    device_code, user_code = issue(codes, interval=0, jkt="thumb-1")
    codes.decide(user_code, UID, approve=True)
    for presented in ("", "thumb-2"):
        refused = codes.poll(device_code, client_id=CLIENT_ID, jkt=presented)
        assert refused.status is PollStatus.DPOP_MISMATCH
    result = codes.poll(device_code, client_id=CLIENT_ID, jkt="thumb-1")
    assert (result.status, result.jkt) == (PollStatus.APPROVED, "thumb-1")


def test_an_unknown_or_expired_code_is_expired(codes: DeviceCodes) -> None:
    assert codes.poll("nope", client_id=CLIENT_ID, jkt="").status is PollStatus.EXPIRED
    assert codes.decide("BCDFGHJK", UID, approve=True) is Decision.GONE
    assert codes.find("BCDFGHJK") is None


def test_pending_lists_codes_awaiting_a_decision_for_support(codes: DeviceCodes) -> None:
    _, first = issue(codes)
    _, second = issue(codes)
    assert {r.user_code for r in codes.pending()} == {first, second}
    codes.decide(first, UID, approve=True)
    assert [r.user_code for r in codes.pending()] == [second]
    found = codes.find(second)
    assert found is not None
    assert (found.client_id, found.ip, found.status, found.bound) == (
        CLIENT_ID,
        "192.0.2.7",
        "pending",
        False,
    )


def test_two_pollers_racing_get_one_approval(codes: DeviceCodes) -> None:
    device_code, user_code = issue(codes, interval=0)
    codes.decide(user_code, UID, approve=True)
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: codes.poll(device_code, client_id=CLIENT_ID, jkt=""), range(16))
        )
    assert [r.status for r in results].count(PollStatus.APPROVED) == 1


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("bcdf-ghjk", "BCDFGHJK"), (" BCDF GHJK ", "BCDFGHJK"), ("BCDFGHJK", "BCDFGHJK")],
)
def test_user_codes_compare_without_case_dashes_or_spaces(typed: str, expected: str) -> None:
    assert normalize_user_code(typed) == expected


@pytest.mark.parametrize("typed", ["", "BCDF-GHJ", "BCDF-GHJKL", "AEIO-U123", "BCDF_GHJK"])
def test_malformed_user_codes_are_not_codes(typed: str) -> None:
    assert normalize_user_code(typed) is None


def test_user_codes_use_only_the_unambiguous_alphabet() -> None:
    drawn = "".join(new_user_code() for _ in range(200))
    assert set(drawn) <= set("BCDFGHJKLMNPQRSTVWXZ")
    assert len(set(drawn)) == 20
