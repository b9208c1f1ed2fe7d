"""The key ring across hosts: publish-then-sign, unknown-kid reload, the encrypted ring in Redis.

Clocks are injected (wall clock for activation times, monotonic for the once-a-second
checks), so nothing here sleeps. Redis tests run on fakeredis and on a real Redis.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import redis
from click.testing import CliRunner

from authsvc import create_app
from authsvc.cli import cli
from authsvc.config import ConfigError, load_settings
from authsvc.keys import (
    KeyCipher,
    KeyDirectory,
    KeyRecordError,
    KeyRing,
    RedisKeys,
    WrongKeyEncryptionKeyError,
    new_key_encryption_key,
)
from authsvc.keys.model import new_pem
from authsvc.store.keyring import KeyRecords
from tests.conftest import PASSWORD, USERNAME, bearer, login_pair
from tests.test_observability import sample

KEK = new_key_encryption_key()
KEEP = 3600
ME = "/api/v1/user/me"
T0 = float(int(time.time()))  # whole seconds: activation times are integers


class Clock:
    """A settable clock: ``now`` for wall time, ``mono`` for the reload rate limits."""

    def __init__(self) -> None:
        # A little ahead of Redis's TIME, which dates the keys: the first key signs.
        self.now = float(int(time.time()) + 5)
        self.mono = 100.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono


class CountingSource:
    """A key source that counts version checks (each is one Redis GET)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.version_checks = 0

    def describe(self) -> str:
        return self.inner.describe()

    def version(self) -> object:
        self.version_checks += 1
        return self.inner.version()

    def records(self) -> list:
        return self.inner.records()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _instance_in_tmp(tmp_path, monkeypatch) -> None:
    """Apps keep their key snapshot in ./instance: here, in the test's own folder."""
    monkeypatch.chdir(tmp_path)


def redis_keys(client: redis.Redis, clock: Clock, kek: str = KEK) -> RedisKeys:
    return RedisKeys(KeyRecords(client), KeyCipher(kek), "ES256")


def ring_over(source: Any, clock: Clock) -> KeyRing:
    return KeyRing(
        algorithm="ES256",
        keep_seconds=KEEP,
        source=source,
        clock=clock.wall,
        monotonic=clock.monotonic,
    )


def kids(ring: KeyRing) -> set[str]:
    return {jwk["kid"] for jwk in ring.jwks()["keys"]}


def test_a_rotated_key_is_published_at_once_and_signs_only_after_the_delay(
    redis_client, clock, monkeypatch
):
    """Rotation publishes: every ring verifies the new kid and lists it in the JWKS after
    its next check, while the old key keeps signing until the activation time; then the
    new key signs and the old one verifies as retired."""
    keys = redis_keys(redis_client, clock)
    old = keys.generate()
    ring = ring_over(keys, clock)
    assert ring.active.kid == old

    rotated = keys.rotate(keep_seconds=KEEP, delay=30)
    assert rotated.activates_at > T0
    clock.now = rotated.activates_at - 30.0  # the ring's clock at the rotation
    clock.mono += 1
    ring.refresh()
    assert kids(ring) == {old, rotated.kid}
    assert ring.verifying_key(rotated.kid) is not None
    clock.now += 29
    assert ring.active.kid == old

    clock.now += 1
    assert ring.active.kid == rotated.kid
    retired = {key.kid: key.retired_at for key in ring.state().verifying}
    assert retired == {rotated.kid: None, old: rotated.activates_at}
    assert ring.verifying_key(old) is not None

    clock.now += KEEP + 2
    assert kids(ring) == {rotated.kid}
    assert keys.prune(keep_seconds=KEEP) == []  # by Redis's clock, nothing expired yet
    monkeypatch.setattr(keys, "server_time", clock.wall)  # Redis's clock, KEEP s later
    assert keys.prune(keep_seconds=KEEP) == [old]


def test_an_unknown_kid_forces_one_reload_at_most_once_a_second(redis_client, clock):
    """A kid the worker does not know rereads the source before the answer is 401, so a
    key another host has just published verifies at once; made-up kids cost at most one
    version GET per second per worker."""
    keys = redis_keys(redis_client, clock)
    keys.generate()
    source = CountingSource(keys)
    ring = ring_over(source, clock)
    clock.mono += 5
    ring.refresh()  # the periodic check: nothing changed
    checks = source.version_checks

    published = keys.rotate(keep_seconds=KEEP, delay=60).kid
    assert ring.verifying_key(published) is not None  # no periodic check was due
    assert source.version_checks == checks + 1

    with pytest.raises(jwt.InvalidTokenError):
        ring.verifying_key("nope-0")  # the same second: no second forced check
    assert source.version_checks == checks + 1

    clock.mono += 1
    for made_up in ("nope-1", "nope-2", "nope-3"):
        with pytest.raises(jwt.InvalidTokenError):
            ring.verifying_key(made_up)
    assert source.version_checks == checks + 2  # one forced check, the others refused at once

    clock.mono += 1
    with pytest.raises(jwt.InvalidTokenError):
        ring.verifying_key("nope-4")
    assert source.version_checks == checks + 3


def test_the_periodic_check_is_one_version_get_a_second(redis_client, clock):
    """refresh() before every request reads the version at most once a second and the
    records only when it moved."""
    keys = redis_keys(redis_client, clock)
    keys.generate()
    source = CountingSource(keys)
    ring = ring_over(source, clock)
    start = source.version_checks
    for _ in range(50):
        ring.refresh()
    assert source.version_checks == start
    clock.mono += 1
    for _ in range(50):
        ring.refresh()
    assert source.version_checks == start + 1


def test_a_key_record_round_trips_and_keeps_its_private_key_out_of_redis(redis_client, clock):
    """The record in Redis holds ciphertext only; the ring decrypts the same key."""
    keys = redis_keys(redis_client, clock)
    kid = keys.generate()
    record = json.loads(redis_client.hget(KeyRecords(redis_client).records_key, kid))
    assert "PRIVATE KEY" not in json.dumps(record)
    assert record["kid"] == kid
    assert record["alg"] == "ES256"
    (key,) = keys.records()
    assert key.signing_key.startswith("-----BEGIN PRIVATE KEY-----")
    token = jwt.encode({"x": 1}, key.signing_key, algorithm="ES256")
    assert jwt.decode(token, key.verifying_key, algorithms=["ES256"]) == {"x": 1}


def _tamper(client: redis.Redis, kid: str, change: Any) -> None:
    records_key = KeyRecords(client).records_key
    record = json.loads(client.hget(records_key, kid))
    change(record)
    client.hset(records_key, kid, json.dumps(record))


def _flip_ciphertext(record: dict) -> None:
    raw = bytearray(record["ciphertext"].encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    record["ciphertext"] = raw.decode()


@pytest.mark.parametrize(
    "change",
    [
        _flip_ciphertext,
        lambda record: record.update(activates_at=record["activates_at"] - 3600),
        lambda record: record.update(created=0),
        lambda record: record.update(kid="another-kid"),
    ],
    ids=["ciphertext", "activation-time", "metadata", "kid"],
)
def test_a_tampered_record_is_refused(redis_client, clock, change):
    """AES-GCM with the kid and metadata as associated data: any change to a record
    (ciphertext, activation time, other metadata, the kid it names) fails."""
    keys = redis_keys(redis_client, clock)
    kid = keys.generate()
    _tamper(redis_client, kid, change)
    with pytest.raises(KeyRecordError):
        keys.records()


def test_a_record_moved_under_another_kid_is_refused(redis_client, clock):
    """A Redis writer cannot file a genuine record under a kid of their choosing."""
    keys = redis_keys(redis_client, clock)
    kid = keys.generate()
    records_key = KeyRecords(redis_client).records_key
    redis_client.hset(records_key, "chosen-kid", redis_client.hget(records_key, kid))
    with pytest.raises(KeyRecordError, match="chosen-kid"):
        keys.records()


def test_a_key_sealed_under_another_kek_cannot_be_slipped_in(redis_client, clock):
    """An attacker's own key, sealed with their own KEK, is refused by name."""
    keys = redis_keys(redis_client, clock)
    keys.generate()
    attacker = redis_keys(redis_client, clock, kek=new_key_encryption_key())
    forged_kid = "20260101000000-0badf00d"
    forged = attacker._seal(new_pem("ES256"), forged_kid, int(T0), int(T0))
    redis_client.hset(KeyRecords(redis_client).records_key, forged_kid, forged)
    with pytest.raises(WrongKeyEncryptionKeyError):
        keys.records()


def test_a_wrong_kek_is_refused_clearly_at_startup(redis_client, clock):
    """An app whose AUTHSVC_KEY_ENCRYPTION_KEY did not seal the ring does not start, and
    says why (naming both KEK ids, never a key)."""
    redis_keys(redis_client, clock).generate()
    wrong = new_key_encryption_key()
    with pytest.raises(WrongKeyEncryptionKeyError, match="AUTHSVC_KEY_ENCRYPTION_KEY") as info:
        create_app(redis_settings(KEY_ENCRYPTION_KEY=wrong), redis_client=redis_client)
    assert wrong not in str(info.value)
    assert KEK not in str(info.value)


def redis_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "JWT_ALGORITHM": "ES256",
        "JWT_KEY_STORE": "redis",
        "KEY_ENCRYPTION_KEY": KEK,
        **overrides,
    }


def test_an_app_on_the_redis_ring_signs_verifies_and_survives_a_bad_reload(redis_client, clock):
    """Tokens carry the Redis ring's kid; a record tampered after startup keeps the last
    good keys serving, /readyz says stale (KeyRecordError), the metrics count it; the
    repair recovers by itself."""
    keys = redis_keys(redis_client, clock)
    kid = keys.generate()
    app = create_app(redis_settings(), redis_client=redis_client)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    pair = login_pair(client)
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == kid

    records = KeyRecords(redis_client)
    good = redis_client.hget(records.records_key, kid)
    _tamper(redis_client, kid, _flip_ciphertext)
    redis_client.incr(records.version_key)
    ring: KeyRing = app.extensions["authsvc_keys"]
    ring._checked_at = -1e9  # the next request checks
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200
    keys_state = client.get("/readyz").get_json()["data"]["keys"]
    assert keys_state["status"] == "stale"
    assert keys_state["error"] == "KeyRecordError"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert sample(metrics, "authsvc_keys_stale") == 1
    assert sample(metrics, "authsvc_key_reload_failures_total", reason="KeyRecordError") >= 1

    redis_client.hset(records.records_key, kid, good)
    redis_client.incr(records.version_key)
    ring._checked_at = -1e9
    assert client.get("/readyz").get_json()["data"]["keys"] == {"status": "ok"}
    assert login_pair(client)["access_token"]


def test_a_key_pruned_from_redis_ends_its_tokens_though_their_header_was_remembered(
    redis_client, clock
):
    """The verifier remembers a token's header once its signature checked out; the key is
    still looked up on every request. An operator who rotates a compromised key out
    (`keys rotate --now`, then prune) ends every token it signed at the next reload,
    even one the worker had already verified."""
    keys = redis_keys(redis_client, clock)
    old = keys.generate()
    app = create_app(redis_settings(), redis_client=redis_client)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    stolen = login_pair(client)["access_token"]
    assert client.get(ME, headers=bearer(stolen)).status_code == 200  # header remembered

    keys.rotate(keep_seconds=KEEP, delay=0, immediate=True)
    # The old key verifies through the second its successor took over (Redis's TIME).
    deadline = time.monotonic() + 3
    while not (pruned := keys.prune(keep_seconds=0)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pruned == [old]
    app.extensions["authsvc_keys"]._checked_at = -1e9  # the next request reloads
    refused = client.get(ME, headers=bearer(stolen))
    assert (refused.status_code, refused.get_json()["data"]["error"]) == (401, "token_invalid")
    assert client.get(ME, headers=bearer(login_pair(client)["access_token"])).status_code == 200


def test_a_redis_outage_during_an_unknown_kid_check_is_503_not_401(
    redis_client, clock, monkeypatch
):
    """A token under a kid the worker does not know, while Redis cannot be asked about
    it: 503 service_unavailable (try again), not a 401 that would sign its holder out;
    the failed check is reported as stale keys."""
    keys = redis_keys(redis_client, clock)
    keys.generate()
    app = create_app(redis_settings(), redis_client=redis_client)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    pair = login_pair(client)
    elsewhere = redis_keys(redis_client, clock).rotate(keep_seconds=KEEP, delay=0).kid
    (new_key,) = [k for k in keys.records() if k.kid == elsewhere]
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    token = jwt.encode(
        claims, new_key.signing_key, algorithm="ES256", headers={"kid": elsewhere, "typ": "at+jwt"}
    )
    ring: KeyRing = app.extensions["authsvc_keys"]

    def unreachable() -> str:
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(ring._source, "version", unreachable)
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 503
    assert response.get_json()["data"]["error"] == "service_unavailable"
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "ConnectionError"

    monkeypatch.undo()
    ring._forced_at = -1e9  # a second later
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_a_key_directory_rotation_with_a_delay_publishes_first(tmp_path, clock, monkeypatch):
    """The key directory follows the same rule: a scheduled key verifies at once and
    signs from its time; the next write records it as active."""
    directory = KeyDirectory(tmp_path, "ES256")
    old = directory.generate(activate=True)
    rotated = directory.rotate(keep_seconds=KEEP, delay=20)
    clock.now = rotated.activates_at - 1
    ring = ring_over(directory, clock)
    assert ring.active.kid == old
    assert kids(ring) == {old, rotated.kid}
    clock.now += 1
    assert ring.active.kid == rotated.kid
    manifest = json.loads((tmp_path / "keyring.json").read_text())
    assert manifest["scheduled"] == {rotated.kid: rotated.activates_at}
    monkeypatch.setattr("time.time", lambda: rotated.activates_at + 1.0)
    assert directory.prune(keep_seconds=KEEP) == []
    manifest = json.loads((tmp_path / "keyring.json").read_text())
    assert manifest["active"] == rotated.kid
    assert manifest["retired"] == {old: rotated.activates_at}
    assert manifest["scheduled"] == {}


def test_a_key_directory_can_be_imported_into_redis(redis_client, tmp_path, clock):
    """`keys import` path: the directory's live keys keep their kids and their times."""
    directory = KeyDirectory(tmp_path, "ES256")
    first = directory.generate(activate=True)
    second = directory.rotate(keep_seconds=KEEP, delay=0).kid
    clock.now = time.time()
    keys = redis_keys(redis_client, clock)
    assert sorted(keys.import_from(directory, keep_seconds=KEEP)) == sorted([first, second])
    ring = ring_over(keys, clock)
    assert ring.active.kid == second
    assert kids(ring) == {first, second}
    with pytest.raises(RuntimeError, match="empty"):
        keys.import_from(directory, keep_seconds=KEEP)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"KEY_ENCRYPTION_KEY": ""}, "AUTHSVC_KEY_ENCRYPTION_KEY is not set"),
        ({"KEY_ENCRYPTION_KEY": "c2hvcnQ"}, "32 random bytes"),
        ({"JWT_ALGORITHM": "HS256", "JWT_SECRET": "s" * 40}, "needs RS256"),
        ({"JWT_KEY_DIR": "/keys"}, "excludes AUTHSVC_JWT_KEY_DIR"),
        ({"JWT_KEY_STORE": "vault"}, "AUTHSVC_JWT_KEY_STORE must be"),
        ({"KEY_PROPAGATION_DELAY": -1}, "AUTHSVC_KEY_PROPAGATION_DELAY"),
        ({"KEY_PROPAGATION_DELAY": 86401}, "AUTHSVC_KEY_PROPAGATION_DELAY"),
    ],
)
def test_key_store_settings_are_validated(overrides, needle):
    """The Redis key ring's settings are checked at startup, each with a clear line."""
    values = {"REDIS_URL": "redis://localhost", **redis_settings(), **overrides}
    with pytest.raises(ConfigError) as info:
        load_settings(values)
    assert any(needle in problem for problem in info.value.problems), info.value.problems


def test_keys_cli_on_the_redis_ring_generates_rotates_lists_and_says_when(
    real_redis, real_redis_url, monkeypatch
):
    """`authsvc keys` with AUTHSVC_JWT_KEY_STORE=redis: rotate publishes and says when the
    new key signs; list shows it waiting; a second rotate before then is refused."""
    for name, value in redis_settings(REDIS_URL=real_redis_url, KEY_PROPAGATION_DELAY=7).items():
        monkeypatch.setenv(f"AUTHSVC_{name}", str(value))
    runner = CliRunner()
    generated = runner.invoke(cli, ["keys", "generate"])
    assert generated.exit_code == 0, generated.output
    rotated = runner.invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "(in 7 s, once every verifier has it)" in rotated.output
    listing = runner.invoke(cli, ["keys", "list"]).output.splitlines()
    assert sorted(line.split("\t")[2].split()[0] for line in listing) == ["active", "signs-from"]
    kek = runner.invoke(cli, ["keys", "new-kek"]).output.strip()
    assert KeyCipher(kek).kek_id != KeyCipher(KEK).kek_id
    again = runner.invoke(cli, ["keys", "rotate"])
    assert again.exit_code != 0
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
