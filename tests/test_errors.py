"""The {code, msg, data} envelope for every outcome: Werkzeug errors, validation, bugs, outages."""

import logging
import re

import pytest
import redis
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from authsvc.errors import STATUS_BY_SLUG
from authsvc.service import Client
from tests.conftest import PASSWORD, USERNAME, bearer, login, login_pair

LOGIN_URL = "/api/v1/user/login"
ME_URL = "/api/v1/user/me"
REFRESH_URL = "/api/v1/user/refresh"
BOOM_MESSAGE = "boom-secret-detail-7f3a"


def envelope(response):
    """The response body, asserting it is exactly the {code, msg, data} envelope."""
    body = response.get_json()
    assert isinstance(body, dict), response.get_data(as_text=True)
    assert set(body) == {"code", "msg", "data"}
    assert isinstance(body["code"], int)
    assert isinstance(body["msg"], str)
    assert body["msg"]
    return body


def assert_error(response, status, slug):
    """The response is the error envelope for ``slug`` with HTTP status ``status``."""
    body = envelope(response)
    assert response.status_code == status, body
    assert body["code"] == status
    assert body["data"]["error"] == slug
    assert STATUS_BY_SLUG[slug] == status
    return body


def add_alice(app):
    """Create the account alice / PASSWORD in ``app``."""
    return app.extensions["authsvc"].add_user(USERNAME, PASSWORD, ("admin",))


def login_with_headers(client, headers):
    """POST alice's valid credentials to /login with extra request headers."""
    return client.post(
        LOGIN_URL, json={"username": USERNAME, "password": PASSWORD}, headers=headers
    )


def raise_connection_error(*args, **kwargs):
    """Stand-in for a Redis command while Redis is down."""
    raise redis.exceptions.ConnectionError("Connection refused (simulated)")


def raise_timeout_error(*args, **kwargs):
    """Stand-in for a Redis command while Redis is too slow."""
    raise redis.exceptions.TimeoutError("Timeout reading from socket (simulated)")


# -- Werkzeug errors --------------------------------------------------------------


def test_unknown_path_is_a_404_envelope(client):
    """A path with no route gives 404 not_found in the envelope, not Werkzeug's HTML."""
    response = client.get("/api/v1/user/nothing-here")
    assert_error(response, 404, "not_found")
    assert response.mimetype == "application/json"


def test_wrong_method_is_a_405_envelope_keeping_allow(client):
    """GET on a POST-only route gives 405 method_not_allowed with the Allow header kept."""
    response = client.get(LOGIN_URL)
    assert_error(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "POST" in allowed
    assert "GET" not in allowed


def test_body_over_default_limit_is_a_413_envelope(client):
    """A body over 16 KiB (the default MAX_BODY_BYTES) gives 413 payload_too_large."""
    body = '{"username": "alice", "password": "' + "x" * (16 * 1024) + '"}'
    response = client.post(LOGIN_URL, data=body, content_type="application/json")
    assert_error(response, 413, "payload_too_large")


def test_body_just_under_default_limit_is_not_refused_for_size(client):
    """A 15 KiB body passes the size check (it fails validation for other reasons)."""
    body = '{"username": "alice", "password": "x", "pad": "' + "x" * (15 * 1024) + '"}'
    response = client.post(LOGIN_URL, data=body, content_type="application/json")
    assert_error(response, 422, "validation_failed")


def test_configured_smaller_body_limit_is_enforced(make_app):
    """MAX_BODY_BYTES=512 refuses a 1 KiB body that the default limit lets through."""
    body = '{"username": "alice", "password": "' + "x" * 1024 + '"}'
    small = make_app(MAX_BODY_BYTES=512).test_client()
    assert_error(
        small.post(LOGIN_URL, data=body, content_type="application/json"),
        413,
        "payload_too_large",
    )
    default = make_app().test_client()
    response = default.post(LOGIN_URL, data=body, content_type="application/json")
    assert response.status_code != 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_body_is_a_415_envelope(client, content_type):
    """A login body that is not application/json gives 415 unsupported_media_type."""
    response = client.post(
        LOGIN_URL, data='{"username": "alice", "password": "x"}', content_type=content_type
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("raw", ["{", '{"username": "alice",}', "not json", "\xff\xfe"])
def test_malformed_json_is_a_400_envelope(client, raw):
    """A JSON body that does not parse gives 400 invalid_request."""
    response = client.post(LOGIN_URL, data=raw, content_type="application/json")
    assert_error(response, 400, "invalid_request")


# -- validation -------------------------------------------------------------------


def test_missing_field_is_a_422_with_a_message_for_that_field(client):
    """A login without password gives 422 with fields.password explaining it is required."""
    body = assert_error(
        client.post(LOGIN_URL, json={"username": USERNAME}), 422, "validation_failed"
    )
    fields = body["data"]["fields"]
    assert set(fields) == {"password"}
    assert fields["password"] == ["Missing data for required field."]


def test_wrong_type_is_a_422_with_a_message_for_that_field(client):
    """A numeric username gives 422 with a message on fields.username only."""
    response = client.post(LOGIN_URL, json={"username": 12345, "password": PASSWORD})
    fields = assert_error(response, 422, "validation_failed")["data"]["fields"]
    assert set(fields) == {"username"}
    assert fields["username"] == ["Not a valid string."]


def test_extra_field_is_a_422_naming_the_field(client):
    """An unknown field (here an attempt to set roles) is refused by name."""
    response = client.post(
        LOGIN_URL, json={"username": USERNAME, "password": PASSWORD, "roles": ["admin"]}
    )
    fields = assert_error(response, 422, "validation_failed")["data"]["fields"]
    assert fields == {"roles": ["Unknown field."]}


def test_several_field_problems_are_reported_together(client):
    """Missing, mistyped and extra fields all appear in one 422 response."""
    response = client.post(LOGIN_URL, json={"username": ["a"], "extra": 1})
    fields = assert_error(response, 422, "validation_failed")["data"]["fields"]
    assert set(fields) == {"username", "password", "extra"}


@pytest.mark.parametrize("raw", ["[]", "null", "42", '"text"', "true"])
def test_json_that_is_not_an_object_is_a_422_not_a_500(client, raw):
    """A JSON array, null or scalar body gives a validation envelope, never a crash."""
    response = client.post(LOGIN_URL, data=raw, content_type="application/json")
    assert_error(response, 422, "validation_failed")


def test_over_long_password_is_refused_before_hashing(client, user):
    """A 129-character password is a 422 on fields.password, not a login attempt."""
    response = client.post(LOGIN_URL, json={"username": USERNAME, "password": "p" * 129})
    fields = assert_error(response, 422, "validation_failed")["data"]["fields"]
    assert set(fields) == {"password"}


# -- bugs -------------------------------------------------------------------------


def test_uncaught_exception_is_a_500_envelope_without_traceback(app, caplog):
    """A bug in a view gives 500 internal_error; the details go to the log with the request id."""

    @app.get("/test-only/boom")
    def boom():
        raise RuntimeError(BOOM_MESSAGE)

    with caplog.at_level(logging.ERROR, logger="authsvc.errors"):
        response = app.test_client().get("/test-only/boom", headers={"X-Request-ID": "req-500"})
    assert_error(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert BOOM_MESSAGE not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    logged = [r for r in caplog.records if "req-500" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert BOOM_MESSAGE in str(logged[0].exc_info[1])


def test_uncaught_exception_in_always200_mode_is_http_200(make_app):
    """Legacy firmware mode answers even a bug with HTTP 200 and code 500 in the body."""
    app = make_app(ENVELOPE_HTTP_STATUS="always200")

    @app.get("/test-only/boom")
    def boom():
        raise RuntimeError(BOOM_MESSAGE)

    response = app.test_client().get("/test-only/boom")
    body = envelope(response)
    assert response.status_code == 200
    assert body["code"] == 500
    assert body["data"]["error"] == "internal_error"


# -- legacy firmware mode ---------------------------------------------------------


@pytest.fixture
def legacy_client(make_app):
    """A client of an app with ENVELOPE_HTTP_STATUS=always200."""
    return make_app(ENVELOPE_HTTP_STATUS="always200").test_client()


def test_always200_mode_gives_http_200_with_401_in_the_body(legacy_client):
    """A missing token in always200 mode: HTTP 200, body code 401 token_missing."""
    response = legacy_client.get(ME_URL)
    body = envelope(response)
    assert response.status_code == 200
    assert body["code"] == 401
    assert body["data"]["error"] == "token_missing"


def test_always200_mode_gives_http_200_with_404_in_the_body(legacy_client):
    """An unknown path in always200 mode: HTTP 200, body code 404 not_found."""
    response = legacy_client.get("/no/such/path")
    body = envelope(response)
    assert response.status_code == 200
    assert body["code"] == 404
    assert body["data"]["error"] == "not_found"


def test_always200_mode_gives_http_200_with_422_in_the_body(legacy_client):
    """Validation failures are HTTP 200 too, with code 422 and the field messages."""
    response = legacy_client.post(LOGIN_URL, json={"username": USERNAME})
    body = envelope(response)
    assert response.status_code == 200
    assert body["code"] == 422
    assert "password" in body["data"]["fields"]


def test_mirror_mode_is_the_default(client):
    """Without the switch the HTTP status mirrors the envelope code."""
    assert client.get(ME_URL).status_code == 401


# -- languages --------------------------------------------------------------------


@pytest.mark.parametrize("accept_language", ["zh", "zh-CN,zh;q=0.9,en;q=0.8"])
def test_chinese_success_message(client, user, accept_language):
    """Accept-Language: zh gives msg 请求成功 on success."""
    response = login_with_headers(client, {"Accept-Language": accept_language})
    body = envelope(response)
    assert body["code"] == 200
    assert body["msg"] == "请求成功"


@pytest.mark.parametrize("headers", [{}, {"Accept-Language": "en-US"}, {"Accept-Language": "fr"}])
def test_english_success_message_by_default(client, user, headers):
    """Without zh (none, en, an unsupported language) msg is "ok"."""
    body = envelope(login_with_headers(client, headers))
    assert body["code"] == 200
    assert body["msg"] == "ok"


def test_chinese_error_message(client):
    """Accept-Language: zh gives a Chinese msg on an error; the slug stays English."""
    response = client.get("/no/such/path", headers={"Accept-Language": "zh"})
    body = assert_error(response, 404, "not_found")
    assert body["msg"] == "资源不存在"


def test_english_error_message_by_default(client):
    """Without Accept-Language the error msg is English."""
    body = assert_error(client.get("/no/such/path"), 404, "not_found")
    assert body["msg"] == "Not found."


def test_default_language_zh_answers_firmware_without_accept_language_as_the_seed(make_app):
    """DEFAULT_LANGUAGE=zh: no Accept-Language gives the seed API's login answer, byte for byte."""
    app = make_app(DEFAULT_LANGUAGE="zh")
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    response = app.test_client().post(
        "/api/v1/user/login", json={"username": USERNAME, "password": PASSWORD}
    )
    # Same keys in the same order, the message as UTF-8 (not \u escapes), as in the seed.
    seed_start = re.compile('^{"code": ?200, ?"msg": ?"请求成功", ?"data": ?{'.encode())
    assert seed_start.match(response.data), response.data[:60]
    error = app.test_client().get("/no/such/path")
    assert error.get_json()["msg"] == "资源不存在"


@pytest.mark.parametrize(("accept_language", "msg"), [("en", "ok"), ("fr", "请求成功")])
def test_accept_language_still_wins_over_the_default_language(make_app, accept_language, msg):
    """A supported Accept-Language wins over DEFAULT_LANGUAGE; an unsupported one does not."""
    app = make_app(DEFAULT_LANGUAGE="zh")
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    response = login_with_headers(app.test_client(), {"Accept-Language": accept_language})
    assert envelope(response)["msg"] == msg


# -- 401 challenge ----------------------------------------------------------------


def test_missing_token_gets_a_bare_bearer_challenge(client):
    """No credentials: WWW-Authenticate is a Bearer realm challenge without an error code."""
    response = client.get(ME_URL)
    assert_error(response, 401, "token_missing")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert "realm=" in challenge
    assert "error=" not in challenge


def test_bad_token_gets_an_invalid_token_challenge(client):
    """A token that does not verify: WWW-Authenticate Bearer with error="invalid_token"."""
    response = client.get(ME_URL, headers=bearer("abc.def.ghi"))
    assert_error(response, 401, "token_invalid")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


def test_every_401_carries_a_challenge_in_always200_mode_too(legacy_client):
    """The challenge header is kept when the HTTP status is forced to 200."""
    response = legacy_client.get(ME_URL, headers=bearer("abc.def.ghi"))
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_non_401_errors_carry_no_challenge(client):
    """A 404 is not an authentication problem and has no WWW-Authenticate."""
    assert "WWW-Authenticate" not in client.get("/no/such/path").headers


# -- throttling -------------------------------------------------------------------


def test_throttled_login_is_a_429_with_retry_after(make_app):
    """After the account's failure limit, login answers 429 too_many_attempts + Retry-After."""
    app = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT=2, LOGIN_FAILURE_WINDOW=120)
    add_alice(app)
    client = app.test_client()
    for _ in range(2):
        assert_error(login(client, password="wrong password"), 401, "invalid_credentials")
    response = login(client)
    assert_error(response, 429, "too_many_attempts")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 120


# -- request id and caching -------------------------------------------------------


def test_supplied_request_id_is_echoed(client):
    """A well-formed X-Request-ID from the caller comes back unchanged."""
    response = client.get("/healthz", headers={"X-Request-ID": "device-42.req_7"})
    assert response.headers["X-Request-ID"] == "device-42.req_7"


def test_request_id_is_generated_when_absent(client):
    """Without X-Request-ID each response gets a fresh generated one (errors included)."""
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/no/such/path").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


@pytest.mark.parametrize("supplied", ["has spaces", "x" * 65, "bad\\id", "<script>"])
def test_unsafe_request_id_is_replaced(client, supplied):
    """A request id with unsafe characters or over 64 chars is not echoed into headers/logs."""
    echoed = client.get("/healthz", headers={"X-Request-ID": supplied}).headers["X-Request-ID"]
    assert echoed != supplied
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_token_responses_are_not_cacheable(client, user):
    """Login and refresh responses carry Cache-Control: no-store (RFC 6749 section 5.1)."""
    response = login(client)
    assert response.headers["Cache-Control"] == "no-store"
    refresh_token = response.get_json()["data"]["refresh_token"]
    refreshed = client.get(REFRESH_URL, headers=bearer(refresh_token))
    assert refreshed.status_code == 200
    assert refreshed.headers["Cache-Control"] == "no-store"


# -- Redis outage -----------------------------------------------------------------


@pytest.mark.parametrize("failure", [raise_connection_error, raise_timeout_error])
def test_redis_outage_on_login_is_a_503(client, service, user, monkeypatch, failure):
    """Redis unreachable or timing out during login: 503 service_unavailable, Retry-After."""
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", failure)
        response = login(client)
    assert_error(response, 503, "service_unavailable")
    assert "Retry-After" in response.headers
    assert "access_token" not in response.get_data(as_text=True)


def test_redis_outage_on_protected_request_fails_closed(client, service, user, monkeypatch):
    """A valid access token during an outage gets 503, never 200."""
    pair = login_pair(client)
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", raise_connection_error)
        response = client.get(ME_URL, headers=bearer(pair["access_token"]))
    assert_error(response, 503, "service_unavailable")
    assert client.get(ME_URL, headers=bearer(pair["access_token"])).status_code == 200


def test_redis_outage_on_refresh_is_a_503_and_the_token_still_works(
    client, service, user, monkeypatch
):
    """A refresh during an outage gets 503 and changes nothing: the token works afterwards."""
    pair = login_pair(client)
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", raise_connection_error)
        response = client.get(REFRESH_URL, headers=bearer(pair["refresh_token"]))
    assert_error(response, 503, "service_unavailable")
    recovered = client.get(REFRESH_URL, headers=bearer(pair["refresh_token"]))
    assert envelope(recovered)["code"] == 200


def test_redis_outage_on_readiness_probe_is_a_503(client, service, monkeypatch):
    """/readyz reports 503 while Redis is down and 200 when it answers."""
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", raise_connection_error)
        assert_error(client.get("/readyz"), 503, "service_unavailable")
    assert envelope(client.get("/readyz"))["code"] == 200


def test_liveness_probe_does_not_touch_redis(client, service, monkeypatch):
    """/healthz stays 200 during a Redis outage (it must not restart healthy workers)."""
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", raise_connection_error)
        response = client.get("/healthz")
    assert response.status_code == 200
    assert envelope(response)["data"] == {"status": "up"}


@pytest.mark.parametrize("url", ["/api/v1/user/login", "/api/v1/user/refresh"])
def test_absurdly_nested_json_is_a_400_not_a_500(client, url):
    """10 000 nested brackets (a RecursionError in the parser) are invalid_request."""
    response = client.post(url, data="[" * 10_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["data"]["error"] == "invalid_request"


def test_printed_records_never_carry_tokens_or_hashes(client, service, user):
    """repr() of a token pair or a user record leaves tokens and the hash out."""
    with client.application.app_context():
        pair = service.login(USERNAME, PASSWORD, Client(ip="192.0.2.1"))
    stored = service.store.get_user(user.id)
    assert pair.refresh_token not in repr(pair)
    assert pair.access_token not in repr(pair)
    assert stored.password_hash not in repr(stored)


def _cluster_unreachable(*args, **kwargs):
    """What redis-py's cluster client raises when no node answers its slot-map reload."""
    cause = redis.exceptions.ConnectionError("Connection refused (simulated)")
    raise RedisClusterException("Redis Cluster cannot be connected (simulated)") from cause


def _cluster_down(*args, **kwargs):
    raise redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down (simulated)")


def _try_again(*args, **kwargs):
    raise redis.exceptions.TryAgainError("TRYAGAIN (simulated)")


def _slot_not_covered(*args, **kwargs):
    raise SlotNotCoveredError('Slot "42" is not covered by the cluster (simulated)')


@pytest.mark.parametrize(
    "failure", [_cluster_unreachable, _cluster_down, _try_again, _slot_not_covered]
)
def test_a_cluster_failing_over_or_unreachable_is_a_503(
    client, service, user, monkeypatch, failure
):
    """CLUSTERDOWN, TRYAGAIN, an uncovered slot, or no node answering: 503, not 500."""
    pair = login_pair(client)
    with monkeypatch.context() as patch:
        patch.setattr(service.store.redis, "execute_command", failure)
        response = client.get(ME_URL, headers=bearer(pair["access_token"]))
    assert_error(response, 503, "service_unavailable")


def test_a_cluster_client_misuse_is_still_a_500(client, service, user, monkeypatch, caplog):
    """A cluster client error with no connection failure behind it is a bug: 500."""

    def misuse(*args, **kwargs):
        raise RedisClusterException("deleting multiple keys is not implemented (simulated)")

    pair = login_pair(client)
    with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, "authsvc.errors"):
        patch.setattr(service.store.redis, "execute_command", misuse)
        response = client.get(ME_URL, headers=bearer(pair["access_token"]))
    assert_error(response, 500, "internal_error")
