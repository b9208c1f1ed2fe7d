"""HTTP behaviour of /api/v1/user/* through the Flask test client, over fake and real Redis."""

import json
import logging
import time
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

import authsvc.service_core
import authsvc.tokens
from authsvc.networks import login_network
from tests.conftest import PASSWORD, USERNAME, bearer, login, login_pair

# Also on the real Redis Cluster (conftest's redis_client).
pytestmark = pytest.mark.cluster

API = "/api/v1/user"
ACCESS_TTL_DEFAULT = 15 * 60
REFRESH_TTL_DEFAULT = 30 * 24 * 3600
WRONG_PASSWORD = "not the right password"
NEW_PASSWORD = "a brand new passphrase"


def error_slug(response):
    """The ``data.error`` slug of an error envelope."""
    return response.get_json()["data"]["error"]


def assert_error(response, status, slug):
    """The response is the error envelope for ``slug`` with HTTP ``status``."""
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == status
    assert body["data"]["error"] == slug


def assert_ok(response):
    """The response is the success envelope; returns its ``data``."""
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["code"] == 200
    assert body["msg"] == "ok"
    return body["data"]


def me(client, access_token):
    """GET /me with ``access_token``."""
    return client.get(f"{API}/me", headers=bearer(access_token))


def refresh(client, refresh_token):
    """GET /refresh with ``refresh_token`` as a Bearer header (the IoT shape)."""
    return client.get(f"{API}/refresh", headers=bearer(refresh_token))


def login_from(client, *, ip, username=USERNAME, password=PASSWORD, user_agent=None, **extra):
    """POST /login from ``ip`` (REMOTE_ADDR), optionally with a User-Agent."""
    headers = {"User-Agent": user_agent} if user_agent else {}
    return client.post(
        f"{API}/login",
        json={"username": username, "password": password, **extra},
        headers=headers,
        environ_base={"REMOTE_ADDR": ip},
    )


def headers_without_request_id(response):
    """Every response header but X-Request-ID, in a comparable form."""
    return sorted((k, v) for k, v in response.headers.items() if k != "X-Request-ID")


def retry_after_seconds(response):
    """The Retry-After header as an integer, asserting it is one."""
    value = response.headers.get("Retry-After", "")
    assert value.isdigit(), f"Retry-After {value!r} is not integer seconds"
    return int(value)


def assert_session_dead(client, pair, *, access_slug):
    """Both tokens of ``pair`` are refused: the access one with ``access_slug``."""
    assert_error(me(client, pair["access_token"]), 401, access_slug)
    assert_error(refresh(client, pair["refresh_token"]), 401, "session_revoked")


def assert_session_alive(client, pair):
    """The access token of ``pair`` works and its refresh token still rotates."""
    assert_ok(me(client, pair["access_token"]))
    assert_ok(refresh(client, pair["refresh_token"]))


@pytest.fixture
def frozen_token_time(monkeypatch):
    """Token minting sees one fixed whole second (login lifetimes count from issued_at)."""
    frozen = SimpleNamespace(time=lambda: float(int(time.time())))
    monkeypatch.setattr(authsvc.service_core, "time", frozen)


@pytest.fixture
def argon2_verify_calls(monkeypatch):
    """Every hash argon2's PasswordHasher.verify is asked to check, in order."""
    calls = []
    original = PasswordHasher.verify

    def spy(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return calls


@pytest.fixture
def bob(service):
    """A second account, bob, with no roles."""
    return service.add_user("bob", "bob's own password", ())


# -- login ------------------------------------------------------------------------


def test_login_returns_a_complete_token_pair_and_records_the_device(
    client, user, frozen_token_time
):
    """Login answers access/refresh tokens, Bearer, 900 s, 30 days, a session id; device kept."""
    data = assert_ok(login(client, device_id="thermostat-7"))
    assert set(data) >= {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "refresh_expires_in",
        "session_id",
    }
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == ACCESS_TTL_DEFAULT
    assert data["refresh_expires_in"] == REFRESH_TTL_DEFAULT
    assert data["access_token"] != data["refresh_token"]
    assert data["session_id"]
    sessions = assert_ok(client.get(f"{API}/sessions", headers=bearer(data["access_token"])))
    [session] = sessions["sessions"]
    assert session["session_id"] == data["session_id"]
    assert session["device_id"] == "thermostat-7"


def test_unknown_user_and_wrong_password_answer_identically(client, user):
    """Unknown user and wrong password: same status, body and headers (but X-Request-ID)."""
    wrong_password = login(client, password=WRONG_PASSWORD)
    unknown_user = login(client, username="mallory", password=WRONG_PASSWORD)
    assert_error(wrong_password, 401, "invalid_credentials")
    assert unknown_user.status_code == wrong_password.status_code
    assert unknown_user.get_json() == wrong_password.get_json()
    assert headers_without_request_id(unknown_user) == headers_without_request_id(wrong_password)


def test_unknown_user_login_still_runs_a_full_argon2_verification(
    client, service, argon2_verify_calls
):
    """A login for a nonexistent user verifies an argon2id hash with the configured cost."""
    assert_error(login(client, username="nobody-here"), 401, "invalid_credentials")
    assert len(argon2_verify_calls) == 1
    params = extract_parameters(argon2_verify_calls[0])
    settings = service.settings
    assert params.type is Type.ID
    assert params.time_cost == settings.argon2_time_cost
    assert params.memory_cost == settings.argon2_memory_kib
    assert params.parallelism == settings.argon2_parallelism


def test_usernames_are_nfkc_normalised_and_case_folded(client, user):
    """Upper-case and fullwidth spellings of alice both log into alice's account."""
    fullwidth_alice = "\uff41\uff4c\uff49\uff43\uff45"
    for spelling in ("ALICE", fullwidth_alice):
        pair = login_pair(client, username=spelling)
        identity = assert_ok(me(client, pair["access_token"]))
        assert identity["user_id"] == user.id
        assert identity["username"] == "alice"


def test_non_ascii_look_alike_usernames_are_refused(client, service, user):
    """A Cyrillic look-alike of alice can neither be registered nor log into alice."""
    cyrillic_alice = "\u0430lice"
    with pytest.raises(ValueError, match="username"):
        service.add_user(cyrillic_alice, "some password", ())
    assert_error(login(client, username=cyrillic_alice), 401, "invalid_credentials")


def test_password_longer_than_128_is_refused_before_hashing(client, user, argon2_verify_calls):
    """A 129-character password is a 422 on fields.password and never reaches argon2."""
    response = login(client, password="x" * 129)
    assert_error(response, 422, "validation_failed")
    assert "password" in response.get_json()["data"]["fields"]
    assert argon2_verify_calls == []


def test_empty_password_is_refused(client, user, argon2_verify_calls):
    """An empty password is a 422 on fields.password and never reaches argon2."""
    response = login(client, password="")
    assert_error(response, 422, "validation_failed")
    assert "password" in response.get_json()["data"]["fields"]
    assert argon2_verify_calls == []


# -- throttling -----------------------------------------------------------------


def test_account_is_throttled_after_max_failures_even_with_the_right_password(make_app, user):
    """From a network the account never logged in from, after 3 wrong passwords even the
    right one gets 429 with an integer Retry-After."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="3").test_client()
    for _ in range(3):
        assert_error(login(client, password=WRONG_PASSWORD), 401, "invalid_credentials")
    throttled = login(client)
    assert_error(throttled, 429, "too_many_attempts")
    assert retry_after_seconds(throttled) > 0


def test_nonexistent_account_is_throttled_with_the_same_response(make_app, user):
    """A nonexistent account is throttled like a real one, with the same response."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="3").test_client()
    for username in (USERNAME, "ghost"):
        for _ in range(3):
            login(client, username=username, password=WRONG_PASSWORD)
    existing = login(client, username=USERNAME)
    nonexistent = login(client, username="ghost")
    assert_error(existing, 429, "too_many_attempts")
    assert nonexistent.status_code == existing.status_code
    assert nonexistent.get_json() == existing.get_json()
    assert retry_after_seconds(nonexistent) > 0
    assert retry_after_seconds(existing) > 0


def test_client_ip_is_throttled_across_usernames_while_other_ips_pass(make_app, user):
    """Failures for different usernames from one IP block that IP only."""
    client = make_app(LOGIN_MAX_FAILURES_PER_IP="2").test_client()
    for username in ("bob", "carol"):
        response = login_from(client, ip="10.0.0.1", username=username, password=WRONG_PASSWORD)
        assert_error(response, 401, "invalid_credentials")
    blocked = login_from(client, ip="10.0.0.1")
    assert_error(blocked, 429, "too_many_attempts")
    assert retry_after_seconds(blocked) > 0
    assert_ok(login_from(client, ip="10.0.0.2"))


def test_successful_login_clears_the_account_failure_count(make_app, user):
    """2 failures, a success, 2 more failures: the limit of 3 is not reached."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="3").test_client()
    for _ in range(2):
        for _ in range(2):
            assert_error(login(client, password=WRONG_PASSWORD), 401, "invalid_credentials")
        assert_ok(login(client))


def test_an_attacker_cannot_lock_the_owner_out_of_a_network_it_logged_in_from(make_app, user):
    """Guessing from network A (and any other stranger) is bounded by the account limit, yet
    the owner, known on network B by an earlier login, still logs in from B; guessing from
    B itself is bounded too."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="3").test_client()
    assert_ok(login_from(client, ip="198.51.100.7"))  # the owner's usual network
    for _ in range(3):
        wrong = login_from(client, ip="192.0.2.66", password=WRONG_PASSWORD)
        assert_error(wrong, 401, "invalid_credentials")
    assert_error(login_from(client, ip="192.0.2.66"), 429, "too_many_attempts")
    for stranger in ("203.0.113.1", "2001:db8:bad::1"):  # the shared budget is spent
        assert_error(login_from(client, ip=stranger), 429, "too_many_attempts")
    for _ in range(5):
        assert_ok(login_from(client, ip="198.51.100.7"))
    for _ in range(3):
        wrong = login_from(client, ip="198.51.100.7", password=WRONG_PASSWORD)
        assert_error(wrong, 401, "invalid_credentials")
    assert_error(login_from(client, ip="198.51.100.7"), 429, "too_many_attempts")


def test_one_ipv6_subnet_is_throttled_as_one_client(make_app, user):
    """Addresses of one /64 share the per-network limit; the next /64 is another client."""
    client = make_app(LOGIN_MAX_FAILURES_PER_IP="3").test_client()
    for n, username in enumerate(("bob", "carol", "dave"), start=1):
        response = login_from(
            client, ip=f"2001:db8:1:2::{n}", username=username, password=WRONG_PASSWORD
        )
        assert_error(response, 401, "invalid_credentials")
    assert_error(login_from(client, ip="2001:db8:1:2:ffff::9"), 429, "too_many_attempts")
    assert_ok(login_from(client, ip="2001:db8:1:3::1"))


def test_the_ipv6_prefix_is_configurable(make_app, user):
    """With a /128 prefix every IPv6 address is a client of its own again."""
    client = make_app(LOGIN_MAX_FAILURES_PER_IP="1", LOGIN_IPV6_PREFIX="128").test_client()
    response = login_from(client, ip="2001:db8::1", username="bob", password=WRONG_PASSWORD)
    assert_error(response, 401, "invalid_credentials")
    assert_error(login_from(client, ip="2001:db8::1"), 429, "too_many_attempts")
    assert_ok(login_from(client, ip="2001:db8::2"))


@pytest.mark.parametrize(
    ("ip", "prefix", "network"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8::6", 128, "2001:db8::6/128"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("not-an-address", 64, "not-an-address"),
    ],
)
def test_login_network_groups_ipv6_by_prefix_and_keeps_ipv4_per_address(ip, prefix, network):
    """IPv4 (mapped or not) is one address; IPv6 is its prefix; anything else is itself."""
    assert login_network(ip, prefix) == network


# -- disabled and deleted accounts ------------------------------------------------


def test_disabled_account_login_is_403_only_with_the_right_password(client, service, user):
    """A disabled account: wrong password stays invalid_credentials, right one account_disabled."""
    service.set_disabled(USERNAME, True)
    assert_error(login(client, password=WRONG_PASSWORD), 401, "invalid_credentials")
    assert_error(login(client), 403, "account_disabled")


def test_disabling_an_account_kills_its_existing_tokens_at_once(client, service, user):
    """Disabling ends every session: its access and refresh tokens are refused immediately."""
    pair = login_pair(client)
    assert_ok(me(client, pair["access_token"]))
    service.set_disabled(USERNAME, True)
    assert_session_dead(client, pair, access_slug="session_revoked")


def test_deleting_a_user_kills_its_tokens(client, service, user):
    """Deleting an account: its access and refresh tokens are refused."""
    pair = login_pair(client)
    service.delete_user(USERNAME)
    assert_session_dead(client, pair, access_slug="session_revoked")


def test_login_rehashes_a_password_stored_with_other_argon2_parameters(client, service, user):
    """A login replaces a hash made with other argon2 parameters by one with the configured."""
    old_hash = PasswordHasher(time_cost=3, memory_cost=19456).hash(PASSWORD)
    service.store.set_password_hash(user.id, old_hash)
    assert_ok(login(client))
    stored = service.store.get_user(user.id).password_hash
    assert stored != old_hash
    params = extract_parameters(stored)
    settings = service.settings
    assert params.type is Type.ID
    assert params.time_cost == settings.argon2_time_cost
    assert params.memory_cost == settings.argon2_memory_kib
    assert params.parallelism == settings.argon2_parallelism
    assert_ok(login(client))


# -- refresh ------------------------------------------------------------------------


def test_get_refresh_with_bearer_header_rotates(client, user):
    """GET /refresh with the refresh token as Bearer returns a new pair that works."""
    pair = login_pair(client)
    rotated = assert_ok(refresh(client, pair["refresh_token"]))
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert rotated["token_type"] == "Bearer"
    assert rotated["session_id"] == pair["session_id"]
    assert_ok(me(client, rotated["access_token"]))
    assert_ok(refresh(client, rotated["refresh_token"]))


def test_post_refresh_with_json_body_rotates(client, user):
    """POST /refresh with {refresh_token} returns a new pair that works."""
    pair = login_pair(client)
    response = client.post(f"{API}/refresh", json={"refresh_token": pair["refresh_token"]})
    rotated = assert_ok(response)
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert rotated["session_id"] == pair["session_id"]
    assert_ok(me(client, rotated["access_token"]))


@pytest.mark.parametrize("parameter", ["refresh_token", "access_token"])
def test_refresh_token_in_the_query_string_is_ignored(client, user, parameter):
    """A refresh token in the query string is not read (401 token_missing) nor consumed."""
    pair = login_pair(client)
    response = client.get(f"{API}/refresh", query_string={parameter: pair["refresh_token"]})
    assert_error(response, 401, "token_missing")
    rotated = assert_ok(refresh(client, pair["refresh_token"]))
    assert rotated["refresh_token"] != pair["refresh_token"]


def test_reused_refresh_token_ends_the_whole_session(make_app, user):
    """Outside the grace window an old refresh token is refresh_reused and kills its session."""
    client = make_app(REFRESH_GRACE_SECONDS="0").test_client()
    victim = login_pair(client)
    bystander = login_pair(client)
    rotated = assert_ok(refresh(client, victim["refresh_token"]))
    assert_ok(me(client, rotated["access_token"]))  # the child is used: no lost reply
    assert_error(refresh(client, victim["refresh_token"]), 401, "refresh_reused")
    assert_error(refresh(client, rotated["refresh_token"]), 401, "session_revoked")
    assert_error(me(client, rotated["access_token"]), 401, "session_revoked")
    assert_error(me(client, victim["access_token"]), 401, "session_revoked")
    assert_session_alive(client, bystander)


def test_old_refresh_token_within_grace_returns_the_same_pair(client, user):
    """Within the default grace window the previous token gets byte-identical tokens back."""
    pair = login_pair(client)
    rotated = assert_ok(refresh(client, pair["refresh_token"]))
    replayed = assert_ok(refresh(client, pair["refresh_token"]))
    assert replayed["access_token"] == rotated["access_token"]
    assert replayed["refresh_token"] == rotated["refresh_token"]
    assert replayed["session_id"] == rotated["session_id"]
    assert_session_alive(client, rotated)


def test_access_token_is_never_accepted_as_a_refresh_token(client, user):
    """GET and POST /refresh refuse an access token with wrong_token_type."""
    pair = login_pair(client)
    assert_error(refresh(client, pair["access_token"]), 401, "wrong_token_type")
    response = client.post(f"{API}/refresh", json={"refresh_token": pair["access_token"]})
    assert_error(response, 401, "wrong_token_type")


def test_refresh_token_is_never_accepted_as_an_access_token(client, user):
    """Protected endpoints refuse a refresh token with wrong_token_type."""
    pair = login_pair(client)
    assert_error(me(client, pair["refresh_token"]), 401, "wrong_token_type")
    response = client.post(f"{API}/logout", headers=bearer(pair["refresh_token"]))
    assert_error(response, 401, "wrong_token_type")
    assert_session_alive(client, pair)


# -- logout ---------------------------------------------------------------------------


def test_logout_ends_only_the_callers_session(client, user):
    """Logout revokes that access token and its session's refresh token, nothing else."""
    leaving = login_pair(client)
    staying = login_pair(client)
    assert assert_ok(client.post(f"{API}/logout", headers=bearer(leaving["access_token"]))) is None
    assert_session_dead(client, leaving, access_slug="token_revoked")
    assert_session_alive(client, staying)


def test_logout_all_ends_every_session_and_a_new_login_works(client, user):
    """Logout-all refuses every token of every session; logging in again works normally."""
    first = login_pair(client)
    second = login_pair(client)
    assert_ok(client.post(f"{API}/logout-all", headers=bearer(first["access_token"])))
    for pair in (first, second):
        assert_session_dead(client, pair, access_slug="session_revoked")
    fresh = login_pair(client)
    assert_ok(me(client, fresh["access_token"]))
    listed = assert_ok(client.get(f"{API}/sessions", headers=bearer(fresh["access_token"])))
    assert [s["session_id"] for s in listed["sessions"]] == [fresh["session_id"]]
    assert_ok(refresh(client, fresh["refresh_token"]))


# -- sessions -------------------------------------------------------------------------


def test_sessions_lists_live_sessions_with_their_details(client, user):
    """GET /sessions shows each session's device, user agent, ip, times; current only for caller."""
    phone = assert_ok(
        login_from(client, ip="10.0.0.5", user_agent="phone-app/2.1", device_id="phone-1")
    )
    sensor = assert_ok(
        login_from(client, ip="10.0.0.6", user_agent="sensor-fw/0.9", device_id="sensor-9")
    )
    listed = assert_ok(client.get(f"{API}/sessions", headers=bearer(phone["access_token"])))
    by_id = {s["session_id"]: s for s in listed["sessions"]}
    assert set(by_id) == {phone["session_id"], sensor["session_id"]}
    phone_row, sensor_row = by_id[phone["session_id"]], by_id[sensor["session_id"]]
    assert (phone_row["device_id"], phone_row["user_agent"], phone_row["ip"]) == (
        "phone-1",
        "phone-app/2.1",
        "10.0.0.5",
    )
    assert (sensor_row["device_id"], sensor_row["user_agent"], sensor_row["ip"]) == (
        "sensor-9",
        "sensor-fw/0.9",
        "10.0.0.6",
    )
    assert phone_row["current"] is True
    assert sensor_row["current"] is False
    for row in (phone_row, sensor_row):
        assert isinstance(row["created"], int)
        assert isinstance(row["last_refresh"], int)
        assert row["created"] <= row["last_refresh"]


def test_deleting_another_own_session_ends_it(client, user):
    """DELETE /sessions/<id> of another own session kills its tokens and drops it from the list."""
    keeper = login_pair(client)
    doomed = login_pair(client)
    response = client.delete(
        f"{API}/sessions/{doomed['session_id']}", headers=bearer(keeper["access_token"])
    )
    assert_ok(response)
    assert_session_dead(client, doomed, access_slug="session_revoked")
    listed = assert_ok(client.get(f"{API}/sessions", headers=bearer(keeper["access_token"])))
    assert [s["session_id"] for s in listed["sessions"]] == [keeper["session_id"]]
    assert_session_alive(client, keeper)


def test_deleting_an_unknown_session_id_is_not_found(client, user):
    """DELETE /sessions/<unknown id> is 404 not_found."""
    pair = login_pair(client)
    response = client.delete(
        f"{API}/sessions/no-such-session", headers=bearer(pair["access_token"])
    )
    assert_error(response, 404, "not_found")
    assert_session_alive(client, pair)


def test_deleting_another_users_session_is_not_found_and_harmless(client, user, bob):
    """DELETE of another user's session id is 404 and that session keeps working."""
    alice_pair = login_pair(client)
    bob_pair = login_pair(client, username="bob", password="bob's own password")
    response = client.delete(
        f"{API}/sessions/{bob_pair['session_id']}", headers=bearer(alice_pair["access_token"])
    )
    assert_error(response, 404, "not_found")
    assert_session_alive(client, bob_pair)


# -- password change --------------------------------------------------------------------


def change_password(client, access_token, old_password, new_password):
    """POST /password."""
    return client.post(
        f"{API}/password",
        json={"old_password": old_password, "new_password": new_password},
        headers=bearer(access_token),
    )


def test_password_change_with_wrong_old_password_changes_nothing(client, user):
    """A wrong old_password is a 422 on fields.old_password; password and sessions unchanged."""
    caller = login_pair(client)
    other = login_pair(client)
    response = change_password(client, caller["access_token"], WRONG_PASSWORD, NEW_PASSWORD)
    assert_error(response, 422, "validation_failed")
    assert "old_password" in response.get_json()["data"]["fields"]
    assert_session_alive(client, other)
    assert_session_alive(client, caller)
    assert_error(login(client, password=NEW_PASSWORD), 401, "invalid_credentials")
    assert_ok(login(client))


def test_password_change_ends_every_other_session_but_keeps_the_callers(client, user):
    """A right change: new password works, old fails, other sessions die, caller's lives on."""
    caller = login_pair(client)
    other = login_pair(client)
    assert_ok(change_password(client, caller["access_token"], PASSWORD, NEW_PASSWORD))
    assert_session_dead(client, other, access_slug="session_revoked")
    assert_session_alive(client, caller)
    assert_error(login(client), 401, "invalid_credentials")
    assert_ok(login(client, password=NEW_PASSWORD))


def test_password_change_refuses_a_new_password_shorter_than_8(client, user):
    """A new_password under 8 characters is a 422 on fields.new_password; the old one stays."""
    caller = login_pair(client)
    response = change_password(client, caller["access_token"], PASSWORD, "short7!")
    assert_error(response, 422, "validation_failed")
    assert "new_password" in response.get_json()["data"]["fields"]
    assert_ok(login(client))


# -- me, health, validation ---------------------------------------------------------


def test_me_describes_the_token_owner(client, user):
    """GET /me returns user_id, username, roles, session_id, client and scope of the caller."""
    pair = login_pair(client)
    identity = assert_ok(me(client, pair["access_token"]))
    assert identity == {
        "user_id": user.id,
        "username": USERNAME,
        "roles": ["admin"],
        "session_id": pair["session_id"],
        "client_id": "default",
        "scope": "profile",
        "bound": False,
        "cnf": None,
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_answer_200_in_the_envelope(client, path):
    """/healthz and /readyz answer 200 in the {code, msg, data} envelope."""
    response = client.get(path)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"code", "msg", "data"}
    assert body["code"] == 200
    assert body["msg"] == "ok"


def test_extra_login_field_is_a_validation_error_naming_it(client, user):
    """An unknown field in the login body is a 422 whose fields name it."""
    response = login(client, role="admin")
    assert_error(response, 422, "validation_failed")
    assert "role" in response.get_json()["data"]["fields"]


def test_json_array_login_body_is_a_validation_error(client, user):
    """A JSON array instead of an object is a 422 validation_failed."""
    response = client.post(f"{API}/login", json=[USERNAME, PASSWORD])
    assert_error(response, 422, "validation_failed")
    assert response.get_json()["data"]["fields"]


def test_login_without_json_content_type_is_415(client, user):
    """A login body without a JSON Content-Type is 415 unsupported_media_type."""
    body = json.dumps({"username": USERNAME, "password": PASSWORD})
    response = client.post(f"{API}/login", data=body)
    assert_error(response, 415, "unsupported_media_type")


# -- logging --------------------------------------------------------------------------


def test_no_password_or_token_ever_reaches_a_log_record(make_app, user, caplog):
    """A full flow logged at DEBUG never shows a password, a token or a token's signature."""
    caplog.set_level(logging.DEBUG)
    client = make_app(REFRESH_GRACE_SECONDS="0").test_client()
    first = login_pair(client)
    assert_error(login(client, password=WRONG_PASSWORD), 401, "invalid_credentials")
    rotated = assert_ok(refresh(client, first["refresh_token"]))
    assert_ok(me(client, rotated["access_token"]))
    assert_error(refresh(client, first["refresh_token"]), 401, "refresh_reused")
    second = login_pair(client)
    assert_ok(client.post(f"{API}/logout", headers=bearer(second["access_token"])))

    tokens = [
        pair[kind]
        for pair in (first, rotated, second)
        for kind in ("access_token", "refresh_token")
    ]
    secrets = [PASSWORD, WRONG_PASSWORD, *tokens, *(t.rsplit(".", 1)[1] for t in tokens)]
    assert any("refresh_reused" in r.getMessage() for r in caplog.records), "nothing logged"
    for record in caplog.records:
        logged = f"{record.getMessage()} {record.msg} {record.args!r}"
        for secret in secrets:
            assert secret not in logged, f"{record.name} logged a secret: {record.msg!r}"


def test_a_login_checked_while_a_password_reset_lands_is_cut_off(
    client, service, user, monkeypatch
):
    """A reset that lands while a login's password is being verified ends that login too."""
    verify = service.passwords.verify

    def verify_while_an_admin_resets(stored_hash, password):
        matched = verify(stored_hash, password)
        service.reset_password(USERNAME, "a brand new password")
        return matched

    monkeypatch.setattr(service.passwords, "verify", verify_while_an_admin_resets)
    pair = login_pair(client)
    assert_session_dead(client, pair, access_slug="session_revoked")


def audit_events(caplog):
    return [(r.event, r.fields) for r in caplog.records if r.name == "authsvc.audit"]


def test_admin_actions_that_end_sessions_are_audited(service, user, caplog):
    """Disabling, resetting and deleting an account each leave an audit line with the reason."""
    caplog.set_level("INFO", logger="authsvc.audit")
    service.set_disabled(USERNAME, True)
    service.reset_password(USERNAME, "another password")
    service.delete_user(USERNAME)
    reasons = [f["reason"] for event, f in audit_events(caplog) if event == "logout_all"]
    assert reasons == ["account_disabled", "password_reset", "account_deleted"]


def test_a_wrong_old_password_is_audited(client, user, caplog):
    """A failed password change leaves a password_change_failed audit line."""
    caplog.set_level("INFO", logger="authsvc.audit")
    pair = login_pair(client)
    client.post(
        f"{API}/password",
        json={"old_password": "not it at all", "new_password": "whatever new"},
        headers=bearer(pair["access_token"]),
    )
    assert [event for event, _ in audit_events(caplog)][-1] == "password_change_failed"


ADMIN_PASSWORD = "the admin's reset password"


def user_key_exists(service, user_id):
    """Whether the user's hash exists at all (get_user hides a hash without a username)."""
    return bool(service.store.redis.exists(f"authsvc:{{u:{user_id}}}:user"))


def test_a_password_change_racing_an_admin_reset_does_not_overwrite_it(
    client, service, user, monkeypatch
):
    """An admin reset landing between the old-password check and the write wins: the change
    answers session_revoked (the reset ended the session) and the admin's password stands."""
    caller = login_pair(client)
    verify = service.passwords.verify

    def verify_while_an_admin_resets(stored_hash, password):
        matched = verify(stored_hash, password)
        service.reset_password(USERNAME, ADMIN_PASSWORD)
        return matched

    monkeypatch.setattr(service.passwords, "verify", verify_while_an_admin_resets)
    response = change_password(client, caller["access_token"], PASSWORD, NEW_PASSWORD)
    monkeypatch.undo()
    assert_error(response, 401, "session_revoked")
    assert_error(login(client, password=NEW_PASSWORD), 401, "invalid_credentials")
    assert_ok(login(client, password=ADMIN_PASSWORD))


def test_a_password_change_racing_a_hash_upgrade_changes_nothing_and_can_be_retried(
    client, service, user, monkeypatch
):
    """A parallel login's rehash of the same password between check and write: 422, nothing
    changed, the caller's session lives, and the same request then succeeds."""
    caller = login_pair(client)
    verify = service.passwords.verify

    def verify_while_a_login_rehashes(stored_hash, password):
        matched = verify(stored_hash, password)
        service.store.rehash_password(user.id, stored_hash, service.passwords.hash(PASSWORD))
        return matched

    monkeypatch.setattr(service.passwords, "verify", verify_while_a_login_rehashes)
    response = change_password(client, caller["access_token"], PASSWORD, NEW_PASSWORD)
    monkeypatch.undo()
    assert_error(response, 422, "validation_failed")
    assert "old_password" in response.get_json()["data"]["fields"]
    assert_ok(me(client, caller["access_token"]))
    assert_ok(change_password(client, caller["access_token"], PASSWORD, NEW_PASSWORD))
    assert_ok(login(client, password=NEW_PASSWORD))


def test_a_user_deleted_during_a_password_change_or_logout_all_stays_deleted(
    client, service, monkeypatch
):
    """/password (deleted during the old-password check) and /logout-all (deleted just after
    the access check) write nothing: the user hash does not come back."""
    carol_password = "carol's own password"
    for path, body, racing_call in (
        ("password", {"old_password": carol_password, "new_password": NEW_PASSWORD}, "verify"),
        ("logout-all", None, "check_access"),
    ):
        account = service.add_user("carol", carol_password)
        pair = login_pair(client, username="carol", password=carol_password)
        owner = service.passwords if racing_call == "verify" else service.store
        original = getattr(owner, racing_call)

        def call_then_deleted(*args, original=original, **kwargs):
            result = original(*args, **kwargs)
            service.delete_user("carol")
            return result

        monkeypatch.setattr(owner, racing_call, call_then_deleted)
        response = client.post(f"{API}/{path}", json=body, headers=bearer(pair["access_token"]))
        monkeypatch.undo()
        assert response.status_code in (200, 401), response.get_json()
        assert not user_key_exists(service, account.id), path
        assert_error(me(client, pair["access_token"]), 401, "session_revoked")


@pytest.mark.parametrize(
    "admin_write",
    [
        lambda service: service.set_disabled(USERNAME, False),
        lambda service: service.set_disabled(USERNAME, True),
        lambda service: service.reset_password(USERNAME, ADMIN_PASSWORD),
    ],
    ids=["enable", "disable", "set-password"],
)
def test_an_admin_write_racing_a_delete_reports_the_user_gone(
    service, user, admin_write, monkeypatch
):
    """CLI enable/disable/set-password that found the user just before a delete: LookupError
    (the CLI prints it), and the user hash does not come back."""
    find_user = service.find_user

    def found_then_deleted(username):
        found = find_user(username)
        service.store.delete_user(found.id, found.username)
        return found

    monkeypatch.setattr(service, "find_user", found_then_deleted)
    with pytest.raises(LookupError):
        admin_write(service)
    assert not user_key_exists(service, user.id)
