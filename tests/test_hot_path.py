"""Per-request work on the hot paths, counted (not timed), so a refactor cannot bring it back.

A protected request and a refresh parse and verify their token once, never through
PyJWT's or flask-jwt-extended's decoders, and make one Redis round trip. A login makes
two: one script before the password hash, one after (three round trips on a Redis
Cluster, never more than two scripts in one slot).
"""

from collections import Counter
from typing import Any

import jwt
import pytest
import redis
from redis.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot

from authsvc import create_app, tokens
from authsvc.cookies import CSRF_COOKIE
from tests.conftest import BASE_SETTINGS, PASSWORD, USERNAME, bearer, login, login_pair
from tests.dpop_keys import DeviceKey
from tests.test_dpop_api import dpop_login
from tests.test_store import monitored, record_commands

ME = "/api/v1/user/me"
REFRESH = "/api/v1/user/refresh"


@pytest.fixture
def work(monkeypatch, app):
    """Counts of token parses, signature checks, PyJWT decodes and Redis round trips."""
    counts: Counter[str] = Counter()

    def counting(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        tokens.TokenVerifier,
        "_signed_parts",
        counting("parse", tokens.TokenVerifier._signed_parts),
    )
    # HS* keys are checked with hmac.digest, others by PyJWT's algorithm: both go here.
    monkeypatch.setattr(
        tokens.TokenVerifier,
        "_signature_matches",
        counting("signature", tokens.TokenVerifier._signature_matches),
    )
    # Any PyJWT decode (flask-jwt-extended's decode_token, get_unverified_header,
    # jwt.decode) goes through PyJWS._load.
    monkeypatch.setattr(
        jwt.api_jws.PyJWS, "_load", counting("pyjwt_decode", jwt.api_jws.PyJWS._load)
    )
    # One call of Redis.execute_command or Pipeline.execute is one round trip (a
    # pipeline's own execute_command only queues).
    original_execute = redis.Redis.execute_command

    def execute_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if not isinstance(self, redis.client.Pipeline):
            counts["redis"] += 1
        return original_execute(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(
        redis.client.Pipeline, "execute", counting("redis", redis.client.Pipeline.execute)
    )
    return counts


def test_protected_request_parses_its_token_once_and_makes_one_round_trip(client, user, work):
    """GET /me: one parse, one signature check, no PyJWT decode, one Redis round trip."""
    pair = login_pair(client)
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200  # scripts loaded
    work.clear()
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200
    assert work == {"parse": 1, "signature": 1, "redis": 1}


@pytest.mark.parametrize("form", ["header", "body"])
def test_refresh_parses_its_token_once_and_makes_one_round_trip(client, user, work, form):
    """A rotation (GET with Bearer, or POST JSON): one parse, one Redis round trip."""
    refresh_token = login_pair(client)["refresh_token"]
    for round_number in range(2):  # the first one loads the scripts
        work.clear()
        if form == "header":
            response = client.get(REFRESH, headers=bearer(refresh_token))
        else:
            response = client.post(REFRESH, json={"refresh_token": refresh_token})
        assert response.status_code == 200, (round_number, response.get_json())
        refresh_token = response.get_json()["data"]["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_cookie_refresh_parses_its_token_once_and_makes_one_round_trip(client, user, work):
    """A cookie refresh with its CSRF header: one parse, one Redis round trip."""
    login_pair(client, transport="cookie")
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        csrf = client.get_cookie(CSRF_COOKIE).value
        response = client.get(REFRESH, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200, response.get_json()
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_refused_token_costs_no_round_trip(client, user, work):
    """A token that fails verification is answered without asking Redis."""
    pair = login_pair(client)
    head, _, _ = pair["access_token"].rpartition(".")
    work.clear()
    response = client.get(ME, headers=bearer(f"{head}.{'A' * 43}"))
    assert response.status_code == 401
    assert work["redis"] == 0
    assert work["pyjwt_decode"] == 0


def test_a_dpop_protected_request_still_makes_one_round_trip(client, user, work):
    """GET /me of a bound session with a proof: the proof's replay check rides in the same
    script as the access check: one parse of the token, one Redis round trip."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    assert client.get(ME, headers=key.headers("GET", ME, pair["access_token"])).status_code == 200
    work.clear()
    response = client.get(ME, headers=key.headers("GET", ME, pair["access_token"]))
    assert response.status_code == 200, response.get_json()
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_dpop_refresh_still_makes_one_round_trip(client, user, work):
    """A bound rotation with its proof: one parse, one Redis round trip (replay memory
    included)."""
    key = DeviceKey()
    refresh_token = dpop_login(client, key)["refresh_token"]
    for round_number in range(2):  # the first one loads the scripts
        work.clear()
        response = client.post(
            REFRESH, json={"refresh_token": refresh_token}, headers=key.headers("POST", REFRESH)
        )
        assert response.status_code == 200, (round_number, response.get_json())
        refresh_token = response.get_json()["data"]["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_a_bound_token_without_its_proof_costs_no_round_trip(client, user, work):
    """A bound refresh or access token without a proof by its key is refused before Redis."""
    key = DeviceKey()
    pair = dpop_login(client, key)
    work.clear()
    refused = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert refused.get_json()["data"]["error"] == "invalid_dpop_proof"
    other = DeviceKey().headers("GET", ME, pair["access_token"])
    assert client.get(ME, headers=other).get_json()["data"]["error"] == "invalid_dpop_proof"
    assert work["redis"] == 0


LOGIN = "/api/v1/user/login"
# What a login's two scripts run on the server, Lua's own commands included (MONITOR):
# 31 before they were folded (five round trips). A rehash or a first attempt in a
# bucket (its PEXPIRE) adds one or two.
LOGIN_SERVER_COMMANDS = 29


def test_a_login_makes_two_round_trips_of_one_script_each(client, user, work):
    """POST /login: one script before the password hash (throttle + user), one after
    (settle + session): two round trips, two commands."""
    sent: list[str] = []
    execute = redis.Redis.execute_command

    def recording(self: redis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return execute(self, *args, **options)

    assert login(client).status_code == 200  # loads the scripts
    for _ in range(2):
        work.clear()
        sent.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(redis.Redis, "execute_command", recording)
            assert login(client).status_code == 200
        assert work["redis"] == 2
        assert sent == ["EVALSHA", "EVALSHA"]


def test_a_refused_login_makes_one_round_trip(make_app, work):
    """Past the budget, the first script refuses: one round trip, no hash, no second."""
    app = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="1")
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    assert login(client, password="wrong password").status_code == 401
    work.clear()
    assert login(client).status_code == 429
    assert work["redis"] == 1


def test_a_login_runs_few_commands_on_the_server(real_redis, real_redis_url):
    """Counted by MONITOR on a real Redis, every command a script runs included."""
    app = create_app(BASE_SETTINGS, redis_client=real_redis)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    for _ in range(2):  # scripts loaded, buckets and the session index in place
        assert login(client).status_code == 200
    with monitored(real_redis_url) as seen:
        assert login(client).status_code == 200
    assert len(seen) == LOGIN_SERVER_COMMANDS, [event["command"][:60] for event in seen]


def test_a_login_on_a_cluster_runs_at_most_two_scripts_per_slot(cluster_redis):
    """On a Redis Cluster the login's keys live in four slots (network bucket, name,
    account buckets, user): three round trips (two before the hash, one after), and
    never more than two commands in one slot."""
    app = create_app(BASE_SETTINGS, redis_client=cluster_redis)
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    assert login(client).status_code == 200
    trips = Counter[str]()
    execute = RedisCluster.execute_command
    pipeline_execute = ClusterPipeline.execute

    def command(self: RedisCluster, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, ClusterPipeline):
            trips["round trips"] += 1
        return execute(self, *args, **kwargs)

    def pipeline(self: ClusterPipeline, *args: Any, **kwargs: Any) -> Any:
        trips["round trips"] += 1
        return pipeline_execute(self, *args, **kwargs)

    log = record_commands(cluster_redis)
    assert login(client).status_code == 200  # each node's connection set up again
    log.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RedisCluster, "execute_command", command)
        patch.setattr(ClusterPipeline, "execute", pipeline)
        assert login(client).status_code == 200
    assert trips["round trips"] == 3
    # No COMMAND GETKEYS either: the client reads an EVAL's keys itself (factory.py).
    assert sorted(log.names()) == ["EVAL", "EVAL", "EVAL", "EVAL", "GET", "HMGET", "ZREM"]
    per_slot = Counter(key_slot(first_key(words).encode()) for words in log.commands)
    assert len(per_slot) == 4
    assert max(per_slot.values()) == 2, log.commands


def first_key(words: tuple[str, ...]) -> str:
    """The first key of a recorded command (an EVAL's is after its script and key count)."""
    return words[3] if words[0] in ("EVAL", "EVALSHA") else words[1]


def test_oauth_refresh_grant_parses_once_and_makes_one_round_trip(client, user, work):
    """POST /oauth/token (refresh_token, a public client_id): the same single round trip."""
    refresh_token = login_pair(client)["refresh_token"]
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "default",
        }
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 200, response.get_json()
        refresh_token = response.get_json()["refresh_token"]
    assert work == {"parse": 1, "signature": 1, "redis": 1}


def test_machine_tokens_cost_counted_round_trips(app, client, work):
    """client_credentials: throttle reserve, client read, settle (3, like a login);
    introspecting a machine token: the caller's client read plus one script (2)."""
    app.extensions["authsvc"].clients.add("job", "Job", ("reports:read",))
    secret = app.extensions["authsvc_client_credentials"].issue_secret("job").secret
    form = {"grant_type": "client_credentials", "client_id": "job", "client_secret": secret}
    for _ in range(2):  # the first one loads the scripts
        work.clear()
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 200, response.get_json()
    assert work == {"redis": 3}
    token = response.get_json()["access_token"]
    creds = {"client_id": "job", "client_secret": secret}
    for _ in range(2):
        work.clear()
        answer = client.post("/oauth/introspect", data={"token": token, **creds})
        assert answer.get_json()["active"] is True
    assert work == {"parse": 1, "signature": 1, "redis": 2}
