"""Metrics at /metrics and structured JSON logs: in-process, then on the real `authsvc serve`.

The in-process tests run over fakeredis and a real Redis. The live tests start
`authsvc serve` with 2 gunicorn workers, read its JSON lines from stderr and scrape
/metrics over new connections, so either worker may answer.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from authsvc import create_app
from authsvc.logs import JsonFormatter
from authsvc.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from authsvc.store import Store
from tests.conftest import BASE_SETTINGS, PASSWORD, TEST_SECRET, USERNAME, bearer, login
from tests.test_e2e import API, DEMO_USER, HTTP_TIMEOUT, ServeProcess, Server, serve_env

WRONG_PASSWORD = "not the right password"
NEW_PASSWORD = "a brand new passphrase 42"
LOGINS = "authsvc_logins_total"
REFRESHES = "authsvc_refreshes_total"
REVOCATIONS = "authsvc_revocations_total"
THROTTLED = "authsvc_throttled_attempts_total"
REDIS_ERRORS = "authsvc_redis_errors_total"
REQUESTS = "authsvc_http_requests_total"
LATENCY_COUNT = "authsvc_http_request_duration_seconds_count"
LATENCY_BUCKET = "authsvc_http_request_duration_seconds_bucket"
REQUEST_LINE_KEYS = {
    "time",
    "level",
    "logger",
    "pid",
    "message",
    "method",
    "path",
    "endpoint",
    "status",
    "duration_ms",
    "request_id",
    "remote_ip",
}
# Rounds of parallel logins until both workers have served some (each round is a few
# argon2 checks; two in flight at once cannot both land on one sync worker).
MAX_LOGIN_ROUNDS = 10
PARALLEL_LOGINS = 4
# Attempts in flight count against the account's limit (so parallel guesses cannot
# exceed it): the parallel logins of one account must fit under it.
LIVE_FAILURES_PER_ACCOUNT = PARALLEL_LOGINS


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in a Prometheus exposition; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def outcomes(text: str, name: str, label: str, values: tuple[str, ...]) -> dict[str, float]:
    """``{value: count}`` of counter ``name`` for each label value."""
    return {value: sample(text, name, **{label: value}) for value in values}


def scrape(client: Any) -> str:
    """GET /metrics through a Flask test client."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def refresh(client: Any, token: str) -> Any:
    """GET /refresh with ``token`` as Bearer."""
    return client.get(f"{API}/refresh", headers=bearer(token))


# -- /metrics in-process ------------------------------------------------------------------


def test_metrics_are_prometheus_text_not_the_envelope(client):
    """GET /metrics is the text exposition format, every outcome series present at 0."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=" in response.headers["Content-Type"]
    text = response.get_data(as_text=True)
    assert not text.lstrip().startswith("{")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "authsvc_logins",
        "authsvc_refreshes",
        "authsvc_revocations",
        "authsvc_throttled_attempts",
        "authsvc_redis_errors",
        "authsvc_http_requests",
        "authsvc_http_request_duration_seconds",
    } <= names
    assert outcomes(text, LOGINS, "outcome", ("succeeded", "failed")) == {
        "succeeded": 0,
        "failed": 0,
    }
    assert f'{REFRESHES}{{outcome="reused"}} 0.0' in text


def test_metrics_skip_a_worker_file_created_but_not_yet_sized(client, tmp_path, monkeypatch):
    """A worker's metric file exists at 0 bytes between its creation and its sizing
    (prometheus-client opens it, then truncates it to its first size; a worker killed
    in between leaves it so): /metrics answers 200 with the other workers' counts,
    not a 500 for the whole scrape (prometheus/client_python issue 1199)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    family = LOGINS.removesuffix("_total")
    key = mmap_key(family, LOGINS, ["outcome"], ["succeeded"], "Login attempts by outcome.")
    written.write_value(key, 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # the other worker, between open and truncate
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert sample(response.get_data(as_text=True), LOGINS, outcome="succeeded") == 3


def test_logins_are_counted_by_outcome(make_app, service, user):
    """A success, a wrong password, a throttled and a disabled login each move their label."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="1").test_client()
    assert login(client).status_code == 200
    assert login(client, username="mallory", password=WRONG_PASSWORD).status_code == 401
    assert login(client, username="mallory", password=WRONG_PASSWORD).status_code == 429
    service.set_disabled(USERNAME, True)
    assert login(client).status_code == 403

    text = scrape(client)
    assert outcomes(text, LOGINS, "outcome", ("succeeded", "failed", "throttled", "disabled")) == {
        "succeeded": 1,
        "failed": 1,
        "throttled": 1,
        "disabled": 1,
    }
    assert sample(text, THROTTLED, flow="login") == 1


def test_throttled_password_change_is_not_counted_as_a_throttled_login(make_app, user):
    """A password change refused by the throttle counts under flow=password_change, not login."""
    client = make_app(LOGIN_MAX_FAILURES_PER_ACCOUNT="1").test_client()
    auth = bearer(login(client).get_json()["data"]["access_token"])
    wrong = {"old_password": WRONG_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post(f"{API}/password", json=wrong, headers=auth).status_code == 422
    assert client.post(f"{API}/password", json=wrong, headers=auth).status_code == 429

    text = scrape(client)
    assert sample(text, THROTTLED, flow="password_change") == 1
    assert sample(text, THROTTLED, flow="login") == 0
    assert sample(text, LOGINS, outcome="throttled") == 0


def test_refreshes_are_counted_rotated_grace_reused_revoked_invalid(client, user):
    """A -> B, A again (grace), B -> C, A again (reuse), C (revoked), junk (invalid)."""
    first = login(client).get_json()["data"]
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    assert refresh(client, first["refresh_token"]).status_code == 200  # grace replay
    third = refresh(client, second["refresh_token"]).get_json()["data"]
    assert refresh(client, first["refresh_token"]).get_json()["data"]["error"] == "refresh_reused"
    assert refresh(client, third["refresh_token"]).get_json()["data"]["error"] == "session_revoked"
    assert refresh(client, "not.a.token").status_code == 401

    text = scrape(client)
    assert outcomes(
        text, REFRESHES, "outcome", ("rotated", "grace", "reused", "revoked", "invalid", "expired")
    ) == {"rotated": 2, "grace": 1, "reused": 1, "revoked": 1, "invalid": 1, "expired": 0}
    assert sample(text, REVOCATIONS, kind="refresh_reuse") == 1


def test_revocations_are_counted_by_kind(client, user):
    """Logout, ending one session, password change and logout-all each count under their kind."""
    doomed, keeper = (login(client).get_json()["data"] for _ in range(2))
    keeper_auth = bearer(keeper["access_token"])
    ended = client.delete(f"{API}/sessions/{doomed['session_id']}", headers=keeper_auth)
    assert ended.status_code == 200
    assert (
        client.post(
            f"{API}/password",
            json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=keeper_auth,
        ).status_code
        == 200
    )
    assert client.post(f"{API}/logout-all", headers=keeper_auth).status_code == 200
    # A login in the very millisecond of a logout-all counts as revoked by design
    # (lib/liveness.lua: a revocation is never missed); seen once in a full run.
    time.sleep(0.005)
    last = login(client, password=NEW_PASSWORD).get_json()["data"]
    assert client.post(f"{API}/logout", headers=bearer(last["access_token"])).status_code == 200

    kinds = ("logout", "session", "password_change", "logout_all", "refresh_reuse")
    assert outcomes(scrape(client), REVOCATIONS, "kind", kinds) == {
        "logout": 1,
        "session": 1,
        "password_change": 1,
        "logout_all": 1,
        "refresh_reuse": 0,
    }


def test_redis_errors_are_counted_by_class(client, service, monkeypatch):
    """A Redis outage answered 503 counts under its error class and as a 503 request."""

    def redis_down() -> None:
        raise redis.exceptions.ConnectionError("Connection refused (simulated)")

    monkeypatch.setattr(service.store, "ping", redis_down)
    assert client.get("/readyz").status_code == 503

    text = scrape(client)
    assert sample(text, REDIS_ERRORS, kind="ConnectionError") == 1
    assert sample(text, REQUESTS, endpoint="health.readyz", status="503") == 1


def test_request_latency_is_a_histogram_per_endpoint_name(client, user):
    """Requests are timed under their Flask endpoint; unrouted paths share one label."""
    stray_path = f"/no/such/{uuid.uuid4().hex}"
    for _ in range(2):
        client.get("/healthz")
    login(client)
    assert client.get(stray_path).status_code == 404

    text = scrape(client)
    assert sample(text, LATENCY_COUNT, endpoint="health.healthz") == 2
    assert sample(text, LATENCY_COUNT, endpoint="user.login") == 1
    assert sample(text, LATENCY_BUCKET, endpoint="user.login", le="+Inf") == 1
    assert sample(text, REQUESTS, endpoint="health.healthz", status="200") == 2
    assert sample(text, REQUESTS, endpoint="unmatched", status="404") == 1
    assert stray_path.rsplit("/", 1)[1] not in text


# -- logs in-process ----------------------------------------------------------------------


def _logging_state() -> list[tuple[int, list[logging.Handler], bool]]:
    loggers = [
        logging.getLogger(name)
        for name in ("", "authsvc", "authsvc.request", "authsvc.audit", "gunicorn.error")
    ]
    return [(log.level, list(log.handlers), log.propagate) for log in loggers]


def test_create_app_leaves_global_logging_alone(redis_client):
    """Building an app and serving a request adds no handler and changes no level."""
    before = _logging_state()
    app = create_app(BASE_SETTINGS, redis_client=redis_client)
    app.test_client().get("/healthz")
    assert _logging_state() == before


def test_request_record_has_the_path_without_query_and_the_request_id(client, caplog):
    """One authsvc.request record per request: path without query string, the sent request id."""
    caplog.set_level(logging.INFO, logger="authsvc.request")
    marker = uuid.uuid4().hex
    client.get(f"/healthz?access_token={marker}", headers={"X-Request-ID": "rid-obs-1"})

    (record,) = [r for r in caplog.records if r.name == "authsvc.request"]
    assert (record.method, record.path, record.endpoint, record.status) == (
        "GET",
        "/healthz",
        "health.healthz",
        200,
    )
    assert record.request_id == "rid-obs-1"
    assert record.duration_ms >= 0
    assert marker not in record.getMessage()


@pytest.fixture
def request_log_records(monkeypatch):
    """Every LogRecord made for authsvc.request, and every one formatted, while a test runs."""
    made: list[logging.LogRecord] = []
    formatted: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.name == "authsvc.request":
            made.append(record)
        return record

    original_format = JsonFormatter.format

    def counting_format(self: JsonFormatter, record: logging.LogRecord) -> str:
        if record.name == "authsvc.request":
            formatted.append(record)
        return original_format(self, record)

    logging.setLogRecordFactory(counting_factory)
    monkeypatch.setattr(JsonFormatter, "format", counting_format)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    request_logger = logging.getLogger("authsvc.request")
    previous = (request_logger.level, request_logger.propagate)
    request_logger.addHandler(handler)
    request_logger.propagate = False
    try:
        yield made, formatted, stream, request_logger
    finally:
        logging.setLogRecordFactory(factory)
        request_logger.removeHandler(handler)
        request_logger.level, request_logger.propagate = previous


@pytest.mark.parametrize("level", [logging.WARNING, logging.ERROR])
def test_no_request_log_record_is_made_or_formatted_above_info(
    client, user, level, request_log_records
):
    """With authsvc.request above INFO, a protected request builds no record and no line."""
    made, formatted, stream, request_logger = request_log_records
    request_logger.setLevel(level)
    access = login(client).get_json()["data"]["access_token"]
    assert client.get(f"{API}/me", headers=bearer(access)).status_code == 200
    assert made == []
    assert formatted == []
    assert stream.getvalue() == ""


def test_one_request_log_line_per_request_at_info(client, user, request_log_records):
    """At INFO a request makes exactly one record, formatted once, with the documented keys."""
    made, formatted, stream, request_logger = request_log_records
    request_logger.setLevel(logging.INFO)
    access = login(client).get_json()["data"]["access_token"]
    made.clear()
    formatted.clear()
    stream.truncate(0)
    stream.seek(0)
    client.get(f"{API}/me", headers={**bearer(access), "X-Request-ID": "rid-line-1"})
    assert len(made) == len(formatted) == 1
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert set(entry) == REQUEST_LINE_KEYS
    assert (entry["endpoint"], entry["status"], entry["request_id"]) == (
        "user.me",
        200,
        "rid-line-1",
    )
    assert entry["time"].endswith("+00:00")
    assert access not in line


def test_json_formatter_writes_the_traceback_of_an_exception():
    """log.exception keeps its traceback, as exc_info, in the one JSON line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("authsvc.test-exception")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("failed %s", "here")
    finally:
        log.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "failed here"
    assert entry["level"] == "ERROR"
    assert "ZeroDivisionError: boom" in entry["exc_info"]


def test_json_formatter_puts_audit_fields_and_request_id_at_top_level(client, user):
    """An audit line is one JSON object with event, its fields and the request id on top."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    audit = logging.getLogger("authsvc.audit")
    audit.addHandler(handler)
    previous_level = audit.level
    audit.setLevel(logging.INFO)
    try:
        client.post(
            f"{API}/login",
            json={"username": USERNAME, "password": WRONG_PASSWORD},
            headers={"X-Request-ID": "rid-audit-1"},
        )
    finally:
        audit.removeHandler(handler)
        audit.setLevel(previous_level)

    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "login_failed"
    assert entry["reason"] == "invalid_credentials"
    assert entry["ip"] == "127.0.0.1"
    assert entry["request_id"] == "rid-audit-1"
    assert (entry["level"], entry["logger"]) == ("INFO", "authsvc.audit")
    assert "fields" not in entry
    assert {"time", "pid", "message"} <= set(entry)


# -- the multiprocess directory -------------------------------------------------------


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env_without_metrics_dir() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != MULTIPROC_ENV}


def test_importing_the_cli_and_gunicorn_config_leaves_prometheus_client_unimported():
    """Importing the CLI or gunicorn config does not import prometheus_client (serve sets it up)."""
    result = _python(
        "import sys, authsvc.cli, authsvc.gunicorn_conf\nprint('prometheus_client' in sys.modules)",
        _env_without_metrics_dir(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_prepare_multiprocess_dir_empties_the_folder_and_workers_write_there(tmp_path):
    """The folder is created, stale .db files go, and counters then land in per-PID files."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")
    (folder / "keep.txt").write_text("not ours")
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from authsvc.metrics import prepare_multiprocess_dir\n"
        f"prepare_multiprocess_dir(Path({str(folder)!r}))\n"
        "from prometheus_client import Counter\n"
        "Counter('probe_total', 'probe').inc(3)\n"
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR'], os.getpid())\n"
    )
    result = _python(code, _env_without_metrics_dir())
    assert result.returncode == 0, result.stderr
    exported, pid = result.stdout.split()
    assert Path(exported) == folder
    assert sorted(p.name for p in folder.iterdir()) == [f"counter_{pid}.db", "keep.txt"]


def test_prepare_multiprocess_dir_refuses_once_prometheus_client_is_imported(tmp_path, monkeypatch):
    """Too late to switch: a RuntimeError, the variable stays unset, nothing is deleted."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    (tmp_path / "counter_1.db").write_bytes(b"old")
    assert "prometheus_client" in sys.modules
    with pytest.raises(RuntimeError, match="imported before"):
        prepare_multiprocess_dir(tmp_path)
    assert MULTIPROC_ENV not in os.environ
    assert (tmp_path / "counter_1.db").exists()


# -- the real `authsvc serve` ------------------------------------------------------------


def json_lines(server: Server, *, strict: bool = True) -> list[dict[str, Any]]:
    """Every stderr line of the server as JSON (strict: a line that is not JSON fails)."""
    entries = []
    for line in server.serve.stderr().splitlines():
        if not line.strip():
            continue
        if not strict and not line.startswith("{"):
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line is not JSON: {line!r}")
    return entries


def live_metrics(server: Server) -> str:
    """GET /metrics on a new connection."""
    response = server.call("GET", "/metrics")
    # The server's log on failure: a 500's traceback is there.
    assert response.status_code == 200, f"{response.status_code}\n{server.serve.stderr()}"
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def traced(server: Server, method: str, path: str, **kwargs: Any) -> tuple[str, Any]:
    """One request with a fresh X-Request-ID; returns the id and the response."""
    request_id = uuid.uuid4().hex
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
    return request_id, server.call(method, path, headers=headers, **kwargs)


def parallel_logins(server: Server, credentials: dict[str, str]) -> list[str]:
    """PARALLEL_LOGINS successful logins sent at once; their request ids."""
    barrier = threading.Barrier(PARALLEL_LOGINS)

    def one_login(_: int) -> str:
        barrier.wait(timeout=HTTP_TIMEOUT)
        request_id, response = traced(server, "POST", f"{API}/login", json=credentials)
        assert response.status_code == 200, response.text
        return request_id

    with ThreadPoolExecutor(PARALLEL_LOGINS) as pool:
        return list(pool.map(one_login, range(PARALLEL_LOGINS)))


def log_in_on_both_workers(server: Server, username: str, password: str) -> int:
    """Log in, in parallel rounds, until both workers have served a login; returns how many."""
    credentials = {"username": username, "password": password}
    request_ids: set[str] = set()
    pids: set[int] = set()
    for _ in range(MAX_LOGIN_ROUNDS):
        request_ids.update(parallel_logins(server, credentials))
        pids = {
            entry["pid"]
            for entry in json_lines(server, strict=False)
            if entry.get("logger") == "authsvc.request" and entry.get("request_id") in request_ids
        }
        if len(pids) >= 2:
            return len(request_ids)
    pytest.fail(f"all {len(request_ids)} logins were served by one worker: {pids}")


def start_server(env: dict[str, str], log_dir: Path, account: tuple[str, str], mode: str) -> Any:
    """`authsvc serve` with 2 workers and no metrics folder given: the defaults decide."""
    env = {name: value for name, value in env.items() if name != MULTIPROC_ENV}
    # mkdtemp() of the default folder lands here, not in the machine's /tmp.
    env["TMPDIR"] = str(log_dir)
    serve = ServeProcess(env, log_dir)
    try:
        serve.wait_ready()
    except BaseException:
        serve.stop()
        raise
    return Server(mode, serve, account)


@pytest.fixture(scope="module")
def live(real_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`authsvc serve` on the test Redis (AUTHSVC_REDIS_URL set), 2 workers, JSON logs."""
    log_dir = tmp_path_factory.mktemp("observability")
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    client.flushdb()
    service = create_app(BASE_SETTINGS, redis_client=client).extensions["authsvc"]
    for name in ("watcher", "auditor"):
        service.add_user(name, PASSWORD)
    env = serve_env(
        REDIS_URL=real_redis_url,
        JWT_SECRET=TEST_SECRET,
        LOGIN_MAX_FAILURES_PER_ACCOUNT=LIVE_FAILURES_PER_ACCOUNT,
    )
    server = start_server(env, log_dir, ("watcher", PASSWORD), "redis-url")
    try:
        yield server
    finally:
        survivors = server.serve.stop()
        client.flushdb()
        client.close()
    assert not survivors, f"processes left after stopping authsvc serve: {survivors}"
    # The temporary metrics folder goes with the server.
    assert not list(log_dir.glob("authsvc-prometheus-*"))


@pytest.mark.e2e
def test_metrics_add_up_logins_served_by_both_workers(live):
    """N logins spread over both workers: /metrics from whichever worker answers shows N."""
    before = live_metrics(live)
    count = log_in_on_both_workers(live, live.username, live.password)

    for _ in range(6):
        after = live_metrics(live)
        moved = sample(after, LOGINS, outcome="succeeded") - sample(
            before, LOGINS, outcome="succeeded"
        )
        assert moved == count
        requests_moved = sample(after, REQUESTS, endpoint="user.login", status="200") - sample(
            before, REQUESTS, endpoint="user.login", status="200"
        )
        assert requests_moved == count
    # The default folder when AUTHSVC_REDIS_URL is set: a private temporary one.
    (folder,) = Path(live.serve.env["TMPDIR"]).glob("authsvc-prometheus-*")
    assert len(list(folder.glob("counter_*.db"))) >= 2


@pytest.mark.e2e
def test_every_log_line_is_json_and_each_request_has_one_line(live):
    """stderr holds only JSON lines; a request gets exactly one line: its id, path, no query."""
    marker = uuid.uuid4().hex
    sent_ids = []
    for path in ("/healthz", "/readyz", "/no/such/path"):
        request_id, response = traced(live, "GET", path, params={"access_token": marker})
        assert response.headers["X-Request-ID"] == request_id
        sent_ids.append((request_id, path, response.status_code))
    generated = live.call("GET", "/healthz").headers["X-Request-ID"]

    entries = json_lines(live)  # strict: every line parses
    assert any(
        e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries
    )
    for request_id, path, status in sent_ids:
        (line,) = [e for e in entries if e.get("request_id") == request_id]
        assert set(line) == REQUEST_LINE_KEYS
        assert (line["logger"], line["method"], line["path"], line["status"]) == (
            "authsvc.request",
            "GET",
            path,
            status,
        )
        assert line["remote_ip"] == "127.0.0.1"
        assert line["duration_ms"] >= 0
    assert [e["endpoint"] for e in entries if e.get("request_id") == sent_ids[2][0]] == [
        "unmatched"
    ]
    assert len([e for e in entries if e.get("request_id") == generated]) == 1
    assert marker not in live.serve.stderr()


@pytest.fixture(scope="module")
def full_flow(live: Server, real_redis_url: str) -> dict[str, Any]:
    """Every audited flow once, on the live server, as user ``auditor``; what it used."""
    name = "auditor"
    ids: dict[str, str] = {}
    store = Store(redis.Redis.from_url(real_redis_url, decode_responses=True), prefix="authsvc")

    def body(response: Any) -> Any:
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def login_as(password: str, key: str | None = None) -> Any:
        request_id, response = traced(
            live, "POST", f"{API}/login", json={"username": name, "password": password}
        )
        if key:
            ids[key] = request_id
        return response

    first = body(login_as(PASSWORD, "login_succeeded"))
    assert login_as(WRONG_PASSWORD, "login_failed").status_code == 401
    for _ in range(LIVE_FAILURES_PER_ACCOUNT):
        live.login_response("ghost", WRONG_PASSWORD)
    ids["login_throttled"], throttled = traced(
        live, "POST", f"{API}/login", json={"username": "ghost", "password": WRONG_PASSWORD}
    )
    assert throttled.status_code == 429

    second = body(live.refresh(first["refresh_token"]))
    body(live.call("POST", f"{API}/refresh", json={"refresh_token": first["refresh_token"]}))
    body(live.refresh(second["refresh_token"]))
    ids["refresh_reused"], reused = traced(
        live, "GET", f"{API}/refresh", headers=bearer(first["refresh_token"])
    )
    assert reused.json()["data"]["error"] == "refresh_reused"

    current = body(login_as(PASSWORD))
    other = body(login_as(PASSWORD))
    me = body(
        live.call(
            "GET",
            f"{API}/me",
            params=_tokens_in_query(current),
            headers=bearer(current["access_token"]),
        )
    )
    body(live.call("GET", f"{API}/sessions", headers=bearer(current["access_token"])))
    ids["session_revoked"], ended = traced(
        live,
        "DELETE",
        f"{API}/sessions/{other['session_id']}",
        headers=bearer(current["access_token"]),
    )
    body(ended)
    old_hash = store.get_user(me["user_id"]).password_hash
    ids["password_changed"], changed = traced(
        live,
        "POST",
        f"{API}/password",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(current["access_token"]),
    )
    body(changed)
    new_hash = store.get_user(me["user_id"]).password_hash
    assert login_as(PASSWORD).status_code == 401
    body(live.call("POST", f"{API}/logout", headers=bearer(current["access_token"])))
    fresh = body(login_as(NEW_PASSWORD))
    ids["logout_all"], everywhere = traced(
        live, "POST", f"{API}/logout-all", headers=bearer(fresh["access_token"])
    )
    body(everywhere)
    store.redis.close()
    return {"ids": ids, "hashes": [old_hash, new_hash], "user_id": me["user_id"]}


def _tokens_in_query(pair: dict[str, Any]) -> dict[str, str]:
    return {name: pair[name] for name in ("access_token", "refresh_token")}


@pytest.mark.e2e
def test_audit_events_are_json_lines_with_their_fields_and_request_id(live, full_flow):
    """Each audited event of the flow is one authsvc.audit line, fields on top, its request's id."""
    entries = json_lines(live)
    expected_fields = {
        "login_succeeded": {"user_id", "session_id", "ip"},
        "login_failed": {"ip", "reason"},
        "login_throttled": {"ip"},
        "refresh_reused": {"user_id", "session_id", "ip"},
        "session_revoked": {"user_id", "session_id", "reason"},
        "password_changed": {"user_id", "ip"},
        "logout_all": {"user_id"},
    }
    for event, request_id in full_flow["ids"].items():
        (line,) = [
            e for e in entries if e.get("event") == event and e.get("request_id") == request_id
        ]
        assert line["logger"] == "authsvc.audit"
        assert expected_fields[event] <= set(line)
        assert "fields" not in line
        if "user_id" in expected_fields[event]:
            assert line["user_id"] == full_flow["user_id"]
    flow_ids = set(full_flow["ids"].values())
    by_event = {e["event"]: e for e in entries if "event" in e and e.get("request_id") in flow_ids}
    assert by_event["login_failed"]["reason"] == "invalid_credentials"
    assert by_event["session_revoked"]["reason"] == "user_request"
    assert by_event["refresh_reused"]["level"] == "WARNING"


@pytest.mark.e2e
def test_no_password_token_or_hash_ever_reaches_the_log(live, full_flow):
    """After the full flow, stderr holds no password, token, token signature or argon2 hash."""
    log = live.serve.stderr()
    assert len(live.tokens) >= 10
    signatures = [token.rsplit(".", 1)[1] for token in live.tokens]
    hash_parts = [part for h in full_flow["hashes"] for part in h.split("$")[-2:]]
    secrets = [
        PASSWORD,
        WRONG_PASSWORD,
        NEW_PASSWORD,
        *live.tokens,
        *signatures,
        *full_flow["hashes"],
        *hash_parts,
    ]
    assert all(len(secret) >= 16 for secret in secrets)
    leaked = [secret for secret in secrets if secret in log]
    assert leaked == []
    # The flow really was logged: the lines above are not empty for another reason.
    assert full_flow["ids"]["password_changed"] in log


@pytest.mark.e2e
def test_quick_start_counts_every_worker_in_the_instance_folder(tmp_path):
    """Quick-start mode (app built in the master first) still sums both workers' logins."""
    instance = tmp_path / "instance"
    server = start_server(serve_env(INSTANCE_PATH=instance), tmp_path, DEMO_USER, "embedded")
    try:
        before = live_metrics(server)
        count = log_in_on_both_workers(server, *DEMO_USER)
        after = live_metrics(server)
        assert (
            sample(after, LOGINS, outcome="succeeded") - sample(before, LOGINS, outcome="succeeded")
            == count
        )
        assert list((instance / "prometheus").glob("counter_*.db"))
    finally:
        survivors = server.serve.stop()
    assert not survivors


def test_gunicorn_builds_no_access_log_line(monkeypatch):
    """The gunicorn config's logger skips gunicorn's access line (the app writes its own)."""
    from gunicorn.config import Config

    from authsvc import gunicorn_conf

    config = Config()
    config.set("logconfig_dict", gunicorn_conf.logconfig_dict)
    assert gunicorn_conf.logger_class is gunicorn_conf.AppLogger
    logger = gunicorn_conf.AppLogger(config)

    def no_atoms(*args, **kwargs):
        raise AssertionError("gunicorn built an access-log line")

    monkeypatch.setattr(logger, "atoms", no_atoms)
    logger.access(None, None, {}, None)
