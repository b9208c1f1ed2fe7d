"""The `authsvc` command: account administration, check-config, and serve's startup checks.

In-process through click's CliRunner where only behaviour matters; as a subprocess of
the console script where its error formatting (main()) or a real process matters.
"""

from __future__ import annotations

import subprocess

import psutil
import pytest
import redis
from click.testing import CliRunner, Result

from authsvc import create_app
from authsvc.cli import cli
from tests.conftest import BASE_SETTINGS, TEST_SECRET, bearer
from tests.test_e2e import AUTHSVC, free_port, serve_env

API = "/api/v1/user"
PASSWORD = "first password 123"
NEW_PASSWORD = "second password 456"
SHORT_SECRET = "short"


def run_authsvc(
    env: dict[str, str], *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion; on timeout kill it and its children by PID."""
    with subprocess.Popen(
        [str(AUTHSVC), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_one_clear_line(stderr: str, *fragments: str) -> None:
    """A single error line mentioning every fragment, and no traceback."""
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr


@pytest.fixture
def redis_url(real_redis: redis.Redis, real_redis_url: str) -> str:
    """The real test Redis, flushed before and after the test."""
    return real_redis_url


@pytest.fixture
def cli_env(redis_url: str) -> dict[str, str]:
    """AUTHSVC_* settings for the CLI: the real test Redis and a valid secret."""
    return {"AUTHSVC_REDIS_URL": redis_url, "AUTHSVC_JWT_SECRET": TEST_SECRET}


@pytest.fixture
def process_env(cli_env: dict[str, str]) -> dict[str, str]:
    """The environment for a console-script subprocess: ours without AUTHSVC_*, plus cli_env."""
    return {**serve_env(), **cli_env}


@pytest.fixture
def authsvc(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """Invoke ``authsvc ARGS...`` in-process; assert it succeeded unless told otherwise."""
    # FlaskGroup exports FLASK_RUN_FROM_CLI; monkeypatch undoes it after the test.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None, expect_ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), input=stdin, env=cli_env)
        if expect_ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    return invoke


@pytest.fixture
def add_user(authsvc):
    """Create an account through `authsvc user add --password-stdin`."""

    def add(name: str, password: str = PASSWORD, *roles: str) -> Result:
        role_args = [arg for role in roles for arg in ("--role", role)]
        return authsvc("user", "add", name, "--password-stdin", *role_args, stdin=f"{password}\n")

    return add


@pytest.fixture
def api(real_redis: redis.Redis):
    """A test client of the app over the same Redis the CLI writes to."""
    return create_app(BASE_SETTINGS, redis_client=real_redis).test_client()


def login(api, username: str, password: str):
    """POST /login through the test client."""
    return api.post(f"{API}/login", json={"username": username, "password": password})


def logged_in_pair(api, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in and return the token pair, asserting success."""
    response = login(api, username, password)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def slug(response) -> tuple[int, str]:
    """The status and the envelope's error slug."""
    return response.status_code, response.get_json()["data"]["error"]


def assert_session_ended(api, pair: dict[str, str]) -> None:
    """Neither the access token nor the refresh token of ``pair`` is accepted any more."""
    assert slug(api.get(f"{API}/me", headers=bearer(pair["access_token"]))) == (
        401,
        "session_revoked",
    )
    assert slug(api.get(f"{API}/refresh", headers=bearer(pair["refresh_token"]))) == (
        401,
        "session_revoked",
    )


def listed_users(authsvc) -> dict[str, list[str]]:
    """`user list` parsed: username -> [id, state, roles]."""
    rows = (line.split("\t") for line in authsvc("user", "list").output.splitlines())
    return {name: rest for name, *rest in rows}


def test_user_add_with_roles_then_list_shows_them(add_user, authsvc):
    """`user add --role` stores the normalised name with its roles; `user list` shows both."""
    created = add_user("Bob", PASSWORD, "admin", "ops")
    add_user("carol")

    users = listed_users(authsvc)

    assert list(users) == ["bob", "carol"]
    assert users["bob"][1:] == ["enabled", "admin,ops"]
    assert created.output == f"created bob ({users['bob'][0]})\n"
    assert users["carol"][1:] == ["enabled", ""]


def test_added_user_can_log_in_with_the_stdin_password(add_user, api):
    """The password read from stdin (newline stripped) is the one that logs in."""
    add_user("dave", PASSWORD, "admin")
    me = logged_in_pair(api, "dave")
    response = api.get(f"{API}/me", headers=bearer(me["access_token"]))
    assert response.get_json()["data"]["roles"] == ["admin"]


def test_adding_a_taken_name_fails_with_one_clear_line(process_env):
    """A second `user add` of a name (any case) exits 1 with one error line, no traceback."""
    first = run_authsvc(
        process_env, "user", "add", "erin", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    assert first.returncode == 0, first.stderr

    again = run_authsvc(
        process_env, "user", "add", "ERIN", "--password-stdin", stdin=f"{PASSWORD}\n"
    )

    assert again.returncode == 1
    assert_one_clear_line(again.stderr, "error:", "'erin'", "taken")


def test_unknown_user_fails_with_one_clear_line(process_env):
    """`user disable` of a name that does not exist exits 1 with one error line."""
    result = run_authsvc(process_env, "user", "disable", "ghost")
    assert result.returncode == 1
    assert_one_clear_line(result.stderr, "error:", "ghost")


def test_disable_ends_sessions_and_refuses_login(add_user, authsvc, api):
    """`user disable` revokes live tokens at once; login then answers account_disabled."""
    add_user("frank")
    pair = logged_in_pair(api, "frank")

    result = authsvc("user", "disable", "frank")

    assert "disabled frank" in result.output
    assert_session_ended(api, pair)
    assert slug(login(api, "frank", PASSWORD)) == (403, "account_disabled")
    assert listed_users(authsvc)["frank"][1] == "disabled"


def test_enable_allows_login_but_ended_sessions_stay_ended(add_user, authsvc, api):
    """`user enable` lets the account log in again; tokens from before the disable stay dead."""
    add_user("grace")
    before = logged_in_pair(api, "grace")
    authsvc("user", "disable", "grace")

    authsvc("user", "enable", "grace")

    after = logged_in_pair(api, "grace")
    assert api.get(f"{API}/me", headers=bearer(after["access_token"])).status_code == 200
    assert_session_ended(api, before)


def test_set_password_replaces_it_and_ends_sessions(add_user, authsvc, api):
    """`user set-password --password-stdin`: old password refused, new accepted, sessions end."""
    add_user("heidi")
    before = logged_in_pair(api, "heidi")

    authsvc("user", "set-password", "heidi", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")

    assert slug(login(api, "heidi", PASSWORD)) == (401, "invalid_credentials")
    logged_in_pair(api, "heidi", NEW_PASSWORD)
    assert_session_ended(api, before)


def test_delete_removes_the_account_and_its_sessions(add_user, authsvc, api):
    """`user delete`: gone from the list, cannot log in, its tokens are refused."""
    add_user("ivan")
    add_user("judy")
    pair = logged_in_pair(api, "ivan")

    authsvc("user", "delete", "ivan")

    assert list(listed_users(authsvc)) == ["judy"]
    assert slug(login(api, "ivan", PASSWORD)) == (401, "invalid_credentials")
    response = api.get(f"{API}/me", headers=bearer(pair["access_token"]))
    assert slug(response)[0] == 401
    # The name is free again.
    add_user("ivan")


def test_check_config_accepts_a_good_environment_and_warns_on_typos(authsvc, monkeypatch):
    """check-config prints OK for valid settings and warns about unknown AUTHSVC_* names."""
    monkeypatch.setenv("AUTHSVC_JWT_LEEWAYY", "10")

    result = authsvc("check-config")

    assert "configuration OK" in result.stdout
    assert "AUTHSVC_JWT_LEEWAYY is not an authsvc setting" in result.stderr


def test_check_config_lists_every_problem_and_exits_2():
    """A short secret and a too-large leeway are both reported, exit 2, no traceback."""
    env = serve_env(JWT_SECRET=SHORT_SECRET, JWT_LEEWAY=999, DPOP_PROOF_WINDOW=0)

    result = run_authsvc(env, "check-config")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid authsvc configuration" in result.stderr
    assert f"AUTHSVC_JWT_SECRET is {len(SHORT_SECRET)} bytes" in result.stderr
    assert "AUTHSVC_JWT_LEEWAY must be between 0 and 60" in result.stderr
    assert "AUTHSVC_DPOP_PROOF_WINDOW must be between 1 and 300" in result.stderr
    assert "configuration OK" not in result.stdout


@pytest.mark.parametrize("mode", ["redis-url", "embedded"])
def test_serve_refuses_a_short_secret_before_starting_gunicorn(mode, request, tmp_path):
    """serve with a too-short secret exits 2 with a clear message; no gunicorn, no Redis left."""
    settings = {"JWT_SECRET": SHORT_SECRET, "BIND": f"127.0.0.1:{free_port()}"}
    if mode == "redis-url":
        settings["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        settings["INSTANCE_PATH"] = tmp_path / "instance"

    result = run_authsvc(serve_env(**settings), "serve")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"AUTHSVC_JWT_SECRET is {len(SHORT_SECRET)} bytes" in result.stderr
    assert "Starting gunicorn" not in result.stderr
    assert "Booting worker" not in result.stderr
    if mode == "embedded":
        # The embedded redis-server it started for the instance was stopped again.
        with (
            pytest.raises(redis.ConnectionError),
            redis.Redis(unix_socket_path=str(tmp_path / "instance" / "redis.sock")) as gone,
        ):
            gone.ping()


def client_rows(authsvc) -> dict[str, list[str]]:
    """`client list` parsed: id -> [name, scopes, transports, access ttl, refresh ttl]."""
    rows = (line.split("\t") for line in authsvc("client", "list").output.splitlines())
    return {client_id: rest for client_id, *rest in rows}


def test_client_add_list_show_update_delete(authsvc, add_user, api):
    """The `client` group manages registered clients; logins see each change."""
    created = authsvc(
        "client", "add", "fw", "--name", "Device firmware", "--scope", "profile",
        "--scope", "telemetry", "--transport", "body", "--access-ttl", "60",
    )  # fmt: skip
    assert created.output == "created client fw\n"
    assert client_rows(authsvc) == {
        "default": ["Default (logins without client_id)", "profile", "body,cookie", "-", "-"],
        "fw": ["Device firmware", "profile telemetry", "body", "60", "-"],
    }
    shown = authsvc("client", "show", "fw").output
    assert "scopes: profile telemetry\n" in shown
    assert "access_ttl: 60\n" in shown
    assert "refresh_ttl: 2592000 (service)\n" in shown

    add_user("gina", PASSWORD, "telemetry")
    login_data = api.post(
        f"{API}/login",
        json={"username": "gina", "password": PASSWORD, "client_id": "fw"},
    ).get_json()["data"]
    assert (login_data["scope"], login_data["expires_in"]) == ("profile telemetry", 60)

    assert "dpop: optional\n" in shown
    authsvc("client", "update", "fw", "--dpop", "required")
    assert "dpop: required\n" in authsvc("client", "show", "fw").output
    refused_without_proof = api.post(
        f"{API}/login", json={"username": "gina", "password": PASSWORD, "client_id": "fw"}
    )
    assert slug(refused_without_proof) == (400, "dpop_required")
    authsvc("client", "update", "fw", "--dpop", "optional")
    authsvc("client", "update", "fw", "--name", "Firmware 2", "--access-ttl", "0")
    assert client_rows(authsvc)["fw"] == ["Firmware 2", "profile telemetry", "body", "-", "-"]

    assert authsvc("client", "delete", "fw").output == "deleted client fw\n"
    assert list(client_rows(authsvc)) == ["default"]
    refused = api.post(
        f"{API}/login", json={"username": "gina", "password": PASSWORD, "client_id": "fw"}
    )
    assert slug(refused) == (400, "unknown_client")


def test_client_mistakes_fail_with_one_clear_line(process_env):
    """A lifetime above the service's, a taken id, an unknown client: exit 1, one line."""
    too_long = run_authsvc(
        process_env, "client", "add", "fw", "--name", "Firmware", "--access-ttl", "901"
    )
    assert too_long.returncode == 1
    assert_one_clear_line(too_long.stderr, "error:", "1 to 900")
    missing = run_authsvc(process_env, "client", "show", "ghost")
    assert missing.returncode == 1
    assert_one_clear_line(missing.stderr, "error:", "ghost")


def test_client_secret_rotate_and_make_public(authsvc, api):
    """`client secret` prints a secret once (it works at /oauth/token); a rotation with
    --overlap 0 ends the old one; `client make-public` ends them all."""
    authsvc("client", "add", "job", "--name", "Nightly job", "--scope", "reports:read")

    def token(secret: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": "job", "client_secret": secret}
        return api.post("/oauth/token", data=form).status_code

    first = authsvc("client", "secret", "job").output.strip()
    assert token(first) == 200
    rotated = authsvc("client", "secret", "job", "--overlap", "0")
    second = rotated.stdout.strip()
    assert second != first
    assert (token(first), token(second)) == (401, 200)
    assert authsvc("client", "make-public", "job").output == "client job is public\n"
    assert token(second) == 401
    refused = authsvc("client", "secret", "default", expect_ok=False)
    assert refused.exit_code != 0
