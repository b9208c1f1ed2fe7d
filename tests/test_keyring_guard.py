"""The Redis key ring bound as a whole, the last good ring across restarts, Redis's clock.

- Rollback: a manifest sealed under the KEK lists every kid with its activation time
  and a generation that only grows; each worker keeps the newest it has seen (and
  persists it in its snapshot). An old or pruned genuine record put back, an older
  ring restored from a backup, a record whose activation time moved: refused, stale.
- Restarts: a worker that boots into a bad ring, or while Redis does not answer,
  serves the snapshot's keys (stale) and recovers by itself; only a host that never
  had good keys refuses to start.
- Clock: activation times come from Redis's TIME, checked again inside the change
  script; a CLI host with a wrong clock changes nothing (tested on a real Redis and
  the Cluster: fakeredis's TIME is the host clock).

Redis tests run on fakeredis, a real Redis and the real Redis Cluster (the ring's
keys share the {keyring} slot there; its scripts and TIME run on that slot's node).
"""

from __future__ import annotations

import json
import logging
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from click.testing import CliRunner

from authsvc import create_app
from authsvc.cli import cli
from authsvc.keys import (
    KeyCipher,
    KeyRecordError,
    KeyRing,
    KeyRingRollbackError,
    LastGoodRing,
    RedisKeys,
    new_key_encryption_key,
)
from authsvc.store.keyring import MANIFEST_FIELD, ChangeStatus, KeyRecords
from tests.conftest import PASSWORD, USERNAME, bearer, login_pair
from tests.test_observability import sample

pytestmark = pytest.mark.cluster

KEK = new_key_encryption_key()
KEEP = 3600
ME = "/api/v1/user/me"
LATER = 10 * 365 * 24 * 3600  # a clock far enough ahead that every retired key expired


def redis_keys(client: Any) -> RedisKeys:
    return RedisKeys(KeyRecords(client), KeyCipher(KEK), "ES256")


def worker_ring(client: Any, snapshot: Path, *, ahead: float = 2.0) -> KeyRing:
    """What a worker builds at boot: the Redis ring through its last good snapshot.

    Its clock is a moment ahead: a key rotated in with --now in the same second as its
    predecessor was made signs from the next second (activation times are strictly
    increasing).
    """
    return KeyRing(
        algorithm="ES256",
        keep_seconds=KEEP,
        source=LastGoodRing(redis_keys(client), snapshot),
        clock=lambda: time.time() + ahead,
    )


def check_now(ring: KeyRing) -> None:
    """The next refresh checks the source (as a second later)."""
    ring._checked_at = -1e9
    ring.refresh()


def kids(ring: KeyRing) -> set[str]:
    return {jwk["kid"] for jwk in ring.jwks()["keys"]}


def hash_of(client: Any) -> dict[str, str]:
    return client.hgetall(KeyRecords(client).records_key)


def put_back(client: Any, fields: dict[str, str]) -> None:
    """The attacker's write: fields into the ring's hash, then the version moved."""
    records = KeyRecords(client)
    client.hset(records.records_key, mapping=fields)
    client.incr(records.version_key)


def rotate_now(keys: RedisKeys) -> str:
    return keys.rotate(keep_seconds=KEEP, delay=0, immediate=True).kid


# --- rollback -------------------------------------------------------------------------


def test_a_pruned_genuine_record_put_back_is_refused_and_never_verifies(
    redis_client, tmp_path, monkeypatch
):
    """A retired key's record kept from before its pruning (a backup, a replica) is
    genuine, but the manifest no longer lists it: the worker refuses the ring, keeps
    its keys, reports stale; the old kid neither verifies nor appears in the JWKS."""
    keys = redis_keys(redis_client)
    old = keys.generate()
    old_record = hash_of(redis_client)[old]
    new = rotate_now(keys)
    real_time = keys.server_time
    monkeypatch.setattr(keys, "server_time", lambda: real_time() + LATER)
    assert keys.prune(keep_seconds=KEEP) == [old]
    ring = worker_ring(redis_client, tmp_path / "snap.json", ahead=LATER)
    assert kids(ring) == {new}

    put_back(redis_client, {old: old_record})
    check_now(ring)
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "KeyRingRollbackError"
    assert old in ring.reload_failure.detail
    assert kids(ring) == {new}
    with pytest.raises(jwt.InvalidTokenError):
        ring.verifying_key(old)
    with pytest.raises(KeyRingRollbackError):
        keys.records()  # the CLI refuses to build on it too


def test_an_older_ring_restored_from_a_backup_never_signs_again(redis_client, tmp_path):
    """The whole ring restored from a backup in which a since-replaced key was the newest:
    every record and the manifest are genuine, but its generation is older than the one
    the worker has seen, so the replaced key does not sign, even after a restart (the
    high-water mark lives in the snapshot), nor from a version counter set far ahead."""
    keys = redis_keys(redis_client)
    keys.generate()
    backup = hash_of(redis_client)
    replacement = rotate_now(keys)  # say, after the first key leaked
    snapshot = tmp_path / "snap.json"
    ring = worker_ring(redis_client, snapshot)
    assert ring.active.kid == replacement

    records = KeyRecords(redis_client)
    redis_client.delete(records.records_key)
    redis_client.hset(records.records_key, mapping=backup)
    redis_client.set(records.version_key, 10**6)
    check_now(ring)
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "KeyRingRollbackError"
    assert "generation" in ring.reload_failure.detail
    assert ring.active.kid == replacement

    restarted = worker_ring(redis_client, snapshot)
    assert restarted.active.kid == replacement
    assert restarted.reload_failure is not None
    assert restarted.reload_failure.reason == "KeyRingRollbackError"


def test_a_genuine_record_with_its_activation_time_moved_is_refused(redis_client, tmp_path):
    """A record of a waiting key, sealed (under the real KEK) with an earlier activation
    time, would make that key sign at once: its time disagrees with the manifest's."""
    keys = redis_keys(redis_client)
    first = keys.generate()
    waiting = keys.rotate(keep_seconds=KEEP, delay=300)
    ring = worker_ring(redis_client, tmp_path / "snap.json")
    cipher = KeyCipher(KEK)
    (key,) = [k for k in keys.records() if k.kid == waiting.kid]
    moved = cipher.seal(replace(key, activates_at=int(keys.server_time())), created=0)
    put_back(redis_client, {waiting.kid: moved})
    check_now(ring)
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "KeyRingRollbackError"
    assert "manifest says" in ring.reload_failure.detail
    assert ring.active.kid == first


@pytest.mark.parametrize("damage", ["manifest-deleted", "record-deleted", "manifest-edited"])
def test_a_ring_whose_manifest_and_records_disagree_is_refused(redis_client, tmp_path, damage):
    """Deleting the manifest (to get rid of the binding), deleting a listed record, or
    editing the manifest (its generation) all fail: the worker keeps its keys."""
    keys = redis_keys(redis_client)
    first = keys.generate()
    second = rotate_now(keys)
    ring = worker_ring(redis_client, tmp_path / "snap.json")
    records = KeyRecords(redis_client)
    if damage == "manifest-deleted":
        redis_client.hdel(records.records_key, MANIFEST_FIELD)
    elif damage == "record-deleted":
        redis_client.hdel(records.records_key, second)
    else:
        manifest = json.loads(hash_of(redis_client)[MANIFEST_FIELD])
        manifest["generation"] += 1000
        redis_client.hset(records.records_key, MANIFEST_FIELD, json.dumps(manifest))
    redis_client.incr(records.version_key)
    check_now(ring)
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "KeyRecordError"
    assert kids(ring) == {first, second}
    assert ring.active.kid == second


def test_reseal_blesses_a_ring_without_manifest_and_can_move_past_a_restore(redis_client, tmp_path):
    """A ring written before manifests is refused until `keys reseal` (the operator's
    decision); after a deliberate restore, `reseal --above N` moves past the newest
    generation the workers have seen, and they accept it."""
    keys = redis_keys(redis_client)
    first = keys.generate()
    backup = hash_of(redis_client)
    second = rotate_now(keys)
    records = KeyRecords(redis_client)
    redis_client.hdel(records.records_key, MANIFEST_FIELD)
    with pytest.raises(KeyRecordError, match="no manifest"):
        keys.records()
    assert set(keys.reseal().keys) == {first, second}
    ring = worker_ring(redis_client, tmp_path / "snap.json")
    seen = ring._source.generation

    redis_client.delete(records.records_key)
    redis_client.hset(records.records_key, mapping=backup)  # the operator restores on purpose
    redis_client.incr(records.version_key)
    check_now(ring)
    assert ring.reload_failure is not None
    assert f"--above {seen}" in ring.reload_failure.detail
    assert keys.reseal(above=seen).generation > seen
    check_now(ring)
    assert ring.reload_failure is None
    assert ring.active.kid == first


def test_a_change_from_a_stale_read_writes_nothing(redis_client, monkeypatch):
    """Two operators rotating at once: the second one's write, based on a version that
    moved meanwhile, is refused by the script, and its rotation starts over (here it
    then finds the first one's key waiting, and stops)."""
    keys = redis_keys(redis_client)
    first = keys.generate()
    racing = redis_keys(redis_client)
    real_time = keys.server_time
    raced: list[str] = []

    def time_while_another_rotates() -> float:
        if not raced:
            raced.append(racing.rotate(keep_seconds=KEEP, delay=300).kid)
        return real_time()

    monkeypatch.setattr(keys, "server_time", time_while_another_rotates)
    with pytest.raises(RuntimeError, match="is published and signs from"):
        keys.rotate(keep_seconds=KEEP, delay=300)
    assert {k.kid for k in keys.records()} == {first, raced[0]}


# --- the last good ring across restarts ----------------------------------------------


def ring_settings(instance: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "JWT_ALGORITHM": "ES256",
        "JWT_KEY_STORE": "redis",
        "KEY_ENCRYPTION_KEY": KEK,
        "INSTANCE_PATH": str(instance),
        **overrides,
    }


def test_a_worker_restarted_into_a_damaged_ring_serves_the_last_good_keys_and_recovers(
    redis_client, tmp_path, caplog
):
    """The reported case: a record failing authentication lands in the ring (HSET bogus,
    INCR), then a worker restarts. It boots with the snapshot's keys, signs and
    verifies, says stale (/readyz, metrics, an error line) and recovers by itself."""
    kid = redis_keys(redis_client).generate()
    first = create_app(ring_settings(tmp_path), redis_client=redis_client)
    first.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    before = login_pair(first.test_client())
    snapshot = tmp_path / "keyring-snapshot.json"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in snapshot.read_text()

    put_back(redis_client, {"bogus": '{"v":1}'})
    caplog.set_level(logging.ERROR, logger="authsvc.keys")
    restarted = create_app(ring_settings(tmp_path), redis_client=redis_client)
    client = restarted.test_client()
    assert client.get(ME, headers=bearer(before["access_token"])).status_code == 200
    after = login_pair(client)
    assert jwt.get_unverified_header(after["access_token"])["kid"] == kid
    assert client.get(ME, headers=bearer(after["access_token"])).status_code == 200
    keys_state = client.get("/readyz").get_json()["data"]["keys"]
    assert keys_state["status"] == "stale"
    assert keys_state["error"] == "KeyRecordError"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert sample(metrics, "authsvc_keys_stale") == 1
    assert any("last good keys" in r.getMessage() for r in caplog.records)

    redis_client.hdel(KeyRecords(redis_client).records_key, "bogus")
    redis_client.incr(KeyRecords(redis_client).version_key)
    check_now(restarted.extensions["authsvc_keys"])
    assert client.get("/readyz").get_json()["data"]["keys"] == {"status": "ok"}


def test_a_worker_booting_while_redis_is_unreachable_serves_the_last_good_keys(
    redis_client, tmp_path, monkeypatch
):
    """Redis does not answer while a worker boots: it starts with the snapshot's keys
    (the JWKS is served, stale is reported) and picks the ring up once Redis is back."""
    kid = redis_keys(redis_client).generate()
    create_app(ring_settings(tmp_path), redis_client=redis_client)  # writes the snapshot

    def unreachable(*_: Any, **__: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(KeyRecords, "version", unreachable)
    monkeypatch.setattr(KeyRecords, "read", unreachable)
    app = create_app(ring_settings(tmp_path), redis_client=redis_client)
    ring: KeyRing = app.extensions["authsvc_keys"]
    assert ring.reload_failure is not None
    assert ring.reload_failure.reason == "ConnectionError"
    jwks = app.test_client().get("/.well-known/jwks.json").get_json()
    assert [key["kid"] for key in jwks["keys"]] == [kid]

    monkeypatch.undo()
    check_now(ring)
    assert ring.reload_failure is None


@pytest.mark.parametrize("trouble", ["damaged", "unreachable"])
def test_a_host_that_never_had_good_keys_refuses_to_start(
    redis_client, tmp_path, monkeypatch, trouble
):
    """No snapshot in the instance folder (a new host): the bad ring, or Redis down,
    stops the app from starting, as before."""
    redis_keys(redis_client).generate()
    if trouble == "damaged":
        put_back(redis_client, {"bogus": '{"v":1}'})
        expected: type[Exception] = KeyRecordError
    else:
        expected = redis.exceptions.ConnectionError

        def unreachable(*_: Any, **__: Any) -> Any:
            raise redis.exceptions.ConnectionError("Redis is down")

        monkeypatch.setattr(KeyRecords, "version", unreachable)
    with pytest.raises(expected):
        create_app(ring_settings(tmp_path), redis_client=redis_client)
    assert not (tmp_path / "keyring-snapshot.json").exists()


def test_a_snapshot_from_another_kek_is_not_trusted(redis_client, tmp_path):
    """The snapshot is opened like the ring: one sealed under another KEK (another
    deployment's instance folder) is ignored, so it cannot stand in for good keys."""
    redis_keys(redis_client).generate()
    create_app(ring_settings(tmp_path), redis_client=redis_client)
    put_back(redis_client, {"bogus": '{"v":1}'})
    with pytest.raises(RuntimeError):
        create_app(
            ring_settings(tmp_path, KEY_ENCRYPTION_KEY=new_key_encryption_key()),
            redis_client=redis_client,
        )


# --- activation times from Redis's clock ---------------------------------------------


def test_the_change_script_refuses_an_activation_time_from_another_clock(redis_client):
    """The script checks a new key's activation time against its own TIME: earlier than
    now + delay (a host clock behind: it would sign at once) or far later (a host clock
    ahead: it would block every rotation until then) writes nothing."""
    keys = redis_keys(redis_client)
    keys.generate()
    records = KeyRecords(redis_client)
    before = hash_of(redis_client)
    version = records.version()
    now = int(records.server_time())
    for wrong in (now - 3600, now + 86_400):
        result = records.change(
            expected_version=version,
            generation=99,
            manifest="{}",
            add={"x": "{}"},
            activates_at=wrong,
            delay=300,
        )
        assert result.status is ChangeStatus.CLOCK
        assert abs(result.value - now) <= 2
    assert hash_of(redis_client) == before
    assert records.version() == version


@pytest.fixture(params=["real", "cluster"])
def server_redis(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """A Redis with a clock of its own (not fakeredis, whose TIME is the host's)."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, request.getfixturevalue(
            "cluster_redis"
        )
    return request.getfixturevalue("real_redis_url"), request.getfixturevalue("real_redis")


@pytest.mark.parametrize("skew", [-86_400, 86_400], ids=["host-clock-behind", "host-clock-ahead"])
def test_a_cli_host_with_a_wrong_clock_neither_activates_at_once_nor_blocks(
    server_redis, monkeypatch, skew
):
    """`authsvc keys rotate` on a host whose clock is a day off: the new key still signs
    exactly the propagation delay after Redis's TIME (not at once, not a day late), and
    `keys rotate --now` still works while it waits."""
    url, client = server_redis
    for name, value in ring_settings(Path("."), REDIS_URL=url, KEY_PROPAGATION_DELAY=300).items():
        monkeypatch.setenv(f"AUTHSVC_{name}", str(value))
    runner = CliRunner()
    assert runner.invoke(cli, ["keys", "generate"]).exit_code == 0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + skew)

    rotated = runner.invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    redis_now = KeyRecords(client).server_time()
    (waiting,) = [k for k in redis_keys(client).records() if k.activates_at > redis_now]
    assert redis_now + 300 - 5 <= waiting.activates_at <= redis_now + 301
    assert "(in 300 s, once every verifier has it)" in rotated.output

    emergency = runner.invoke(cli, ["keys", "rotate", "--now"])
    assert emergency.exit_code == 0, emergency.output
    assert "EMERGENCY ROTATION" in emergency.output
    assert "REFUSE its tokens" in emergency.output
    assert f"{waiting.kid} was already waiting" in emergency.output
    new_kid = emergency.output.split("published ")[1].split(";")[0]
    activation = {k.kid: k.activates_at for k in redis_keys(client).records()}
    # At once: this second, or the next when its predecessor was made in this one.
    assert activation[new_kid] <= KeyRecords(client).server_time() + 1
    assert activation[waiting.kid] == waiting.activates_at
    listing = runner.invoke(cli, ["keys", "list"]).output
    assert f"{waiting.kid}\tES256\tsigns-from" in listing
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)


def test_admin_commands_keep_no_key_snapshot(real_redis, real_redis_url, tmp_path, monkeypatch):
    """`authsvc user ...` builds the app too, but only serving processes keep a snapshot:
    an operator's current folder gets no instance/ of its own."""
    redis_keys(real_redis).generate()
    for name, value in ring_settings(Path(""), REDIS_URL=real_redis_url).items():
        monkeypatch.setenv(f"AUTHSVC_{name}", str(value))
    monkeypatch.delenv("AUTHSVC_INSTANCE_PATH")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["user", "list"])
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []
    create_app(ring_settings(tmp_path), redis_client=real_redis)  # a serving process does
    assert (tmp_path / "keyring-snapshot.json").exists()
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)


def test_keys_list_unsealed_shows_what_a_refused_ring_holds(
    real_redis, real_redis_url, monkeypatch
):
    """`keys list` refuses a damaged ring (one line, exit 1); `--unsealed` lists each
    record that authenticates on its own and names the ones that do not."""
    kid = redis_keys(real_redis).generate()
    put_back(real_redis, {"bogus": '{"v":1}'})
    for name, value in ring_settings(Path("."), REDIS_URL=real_redis_url).items():
        monkeypatch.setenv(f"AUTHSVC_{name}", str(value))
    runner = CliRunner()
    refused = runner.invoke(cli, ["keys", "list"])
    assert refused.exit_code != 0
    assert isinstance(refused.exception, KeyRecordError)
    listing = runner.invoke(cli, ["keys", "list", "--unsealed"])
    assert listing.exit_code == 0, listing.output
    assert "bogus\t-\trefused: the record of key bogus is malformed" in listing.output
    assert f"{kid}\tES256\tactive" in listing.output
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)


def test_rotate_now_and_delay_exclude_each_other(monkeypatch):
    """`--now` skips the delay: asking for both is a usage error, nothing is written."""
    result = CliRunner().invoke(cli, ["keys", "rotate", "--now", "--delay", "5"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output
