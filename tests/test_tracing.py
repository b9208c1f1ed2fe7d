"""OpenTelemetry tracing: spans per request and Redis command, ids in the logs, no secret.

In-process over fakeredis and a real Redis with the SDK's in-memory exporter; then the
real `authsvc serve` configured by nothing but the standard OTEL_* variables, exporting
OTLP/HTTP to a small collector in the test.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, Tracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from authsvc import create_app, logs, tracing
from authsvc.logs import JsonFormatter
from tests.cluster import wait_until
from tests.conftest import BASE_SETTINGS, PASSWORD, USERNAME, bearer, login_pair
from tests.test_cli import run_authsvc
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, add_user_with_cli, serve_env

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
)
COOKIE_VALUE = "cookie-secret-value-0123456789"
QUERY_SECRET = "query-secret-value-0123456789"
SERVER = 2  # SPAN_KIND_SERVER in the OTLP protobuf


@pytest.fixture(autouse=True)
def _tracing_env_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with tracing off and leaves the log hook as it found it."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(logs, "trace_context", None)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """The SDK's in-memory exporter."""
    return InMemorySpanExporter()


@pytest.fixture
def traced_app(redis_client: Any, exporter: InMemorySpanExporter) -> Any:
    """An app tracing into ``exporter`` (spans exported as each ends), alice registered."""
    app = create_app(
        BASE_SETTINGS,
        redis_client=redis_client,
        tracer_provider=tracing.make_provider(exporter, batch=False),
    )
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    return app


def _server_span(spans: tuple[ReadableSpan, ...], route: str) -> ReadableSpan:
    matching = [
        s for s in spans if s.kind == SpanKind.SERVER and s.attributes.get("http.route") == route
    ]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


def _everything_exported(spans: tuple[ReadableSpan, ...]) -> str:
    """Every name, attribute and event of ``spans`` as one text, to search for secrets."""
    return json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [[e.name, dict(e.attributes or {})] for e in s.events],
                "status": s.status.description,
                "resource": dict(s.resource.attributes),
            }
            for s in spans
        ],
        default=str,
    )


def test_a_request_span_with_its_redis_calls_as_children(traced_app, exporter):
    """GET /me: one server span named by its route; the Redis script call is its child."""
    client = traced_app.test_client()
    pair = login_pair(client)
    exporter.clear()
    assert client.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code == 200
    spans = exporter.get_finished_spans()
    server = _server_span(spans, f"{API}/me")
    assert server.name == f"GET {API}/me"
    assert server.attributes["http.status_code"] == 200
    assert server.resource.attributes["service.name"] == "authsvc"
    redis_spans = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert redis_spans, [s.name for s in spans]
    assert "EVALSHA" in {s.name for s in redis_spans}
    for span in redis_spans:
        assert span.context.trace_id == server.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert span.attributes["db.system"] == "redis"


def test_on_a_redis_cluster_scripts_and_pipelines_are_spans(cluster_redis, exporter):
    """On a real Cluster: login's cross-slot pipelines and /me's script, each a child span.

    The instrumentation's own per-client pipeline wrapper fails on a ClusterPipeline;
    authsvc traces those pipelines itself.
    """
    app = create_app(
        BASE_SETTINGS,
        redis_client=cluster_redis,
        tracer_provider=tracing.make_provider(exporter, batch=False),
    )
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    exporter.clear()
    pair = login_pair(client)
    assert client.get(f"{API}/me", headers=bearer(pair["access_token"])).status_code == 200
    spans = exporter.get_finished_spans()
    login, me = _server_span(spans, f"{API}/login"), _server_span(spans, f"{API}/me")

    def children(parent: ReadableSpan) -> set[str]:
        return {s.name for s in spans if s.parent and s.parent.span_id == parent.context.span_id}

    assert "PIPELINE" in children(login)
    assert "EVALSHA" in children(me)


def test_an_incoming_traceparent_continues_the_callers_trace(traced_app, exporter):
    """A W3C traceparent header makes the request span a child of the caller's span."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    client = traced_app.test_client()
    client.get("/healthz", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert f"{span.context.trace_id:032x}" == trace_id
    assert f"{span.parent.span_id:016x}" == parent_id


def test_no_token_password_cookie_or_query_in_any_span(traced_app, exporter, monkeypatch):
    """The attacker reads the traces: no password, token, jti, cookie or query string.

    Even with the header capture switched on for every header (an operator's
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=.*), which would otherwise
    record Authorization and Cookie verbatim.
    """
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", ".*")
    client = traced_app.test_client()
    client.set_cookie("__Host-authsvc_refresh", COOKIE_VALUE)
    pair = login_pair(client)
    access, refresh = pair["access_token"], pair["refresh_token"]
    client.get(f"{API}/me?access_token={QUERY_SECRET}", headers=bearer(access))
    rotated = client.get(f"{API}/refresh", headers=bearer(refresh)).get_json()["data"]
    client.post(f"{API}/logout", headers=bearer(rotated["access_token"]))
    client.get(f"{API}/no-such-thing?token={QUERY_SECRET}", headers=bearer(access))
    spans = exporter.get_finished_spans()
    exported = _everything_exported(spans)
    secrets = [PASSWORD, COOKIE_VALUE, QUERY_SECRET]
    for token in (access, refresh, rotated["access_token"], rotated["refresh_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        secrets += [token, token.split(".")[2], claims["jti"]]
    for secret in secrets:
        assert secret not in exported
    # What is left is still useful: routes, statuses, and Redis command names.
    me = _server_span(spans, f"{API}/me")
    assert me.attributes["http.target"] == f"{API}/me"
    # The unmatched path (which the caller chose) does not name its span.
    assert [
        s.name for s in spans if s.kind == SpanKind.SERVER and "http.route" not in s.attributes
    ] == ["GET"]
    assert any(s.attributes.get("db.statement") == "EVALSHA" for s in spans)


def test_scrubbing_keeps_command_names_and_paths_only():
    """Redis arguments (an older instrumentation records them) and query strings go."""
    scrubbed = tracing.scrub_attributes(
        {
            "db.statement": "EVALSHA 1f2e 2 authsvc:{u1}:session jti-secret",
            "db.query.text": "SET k v\nEXPIRE k 10",
            "http.target": "/api/v1/user/me?access_token=secret",
            "http.url": "http://user:pw@host/api/v1/user/me?access_token=secret",
            "http.request.header.authorization": ("Bearer secret",),
            "http.route": "/api/v1/user/me",
        }
    )
    assert scrubbed == {
        "db.statement": "EVALSHA",
        "db.query.text": "SET\nEXPIRE",
        "http.target": "/api/v1/user/me",
        "http.url": "http://host/api/v1/user/me",
        "http.route": "/api/v1/user/me",
    }


def test_log_lines_carry_the_current_trace_and_span_ids(traced_app, exporter):
    """The request's JSON log line names the request span's trace_id and span_id."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("authsvc.request")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        traced_app.test_client().get("/healthz")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    line = json.loads(stream.getvalue().splitlines()[-1])
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert line["span_id"] == f"{span.context.span_id:016x}"


def test_off_means_no_hook_no_wrapper_no_tracer_call(redis_client, monkeypatch, exporter):
    """Tracing off: not one tracer call per request, no hook installed, nothing wrapped.

    Counted, not timed: the same requests with tracing on make tracer calls, so the
    counter would see them.
    """
    calls: list[str] = []
    for method in ("start_span", "start_as_current_span"):
        original = getattr(Tracer, method)

        def counting(self: Tracer, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(args[0] if args else kwargs.get("name", ""))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Tracer, method, counting)

    def exercise(app: Any) -> None:
        client = app.test_client()
        pair = login_pair(client)
        client.get(f"{API}/me", headers=bearer(pair["access_token"]))

    off = create_app(BASE_SETTINGS, redis_client=redis_client)
    off.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    exercise(off)
    assert calls == []
    assert not hasattr(off, "_original_wsgi_app")
    assert not hasattr(redis_client.execute_command, "__wrapped__")
    assert all("opentelemetry" not in f.__module__ for f in off.before_request_funcs[None])
    assert off.teardown_request_funcs.get(None, []) == []
    assert logs.trace_context is None

    on = create_app(
        BASE_SETTINGS,
        redis_client=redis_client,
        tracer_provider=tracing.make_provider(exporter, batch=False),
    )
    exercise(on)
    assert calls  # the counter does see a traced request


def test_off_does_not_even_import_opentelemetry():
    """With no OTEL_* variable no instrumentation, tracer SDK or exporter is even imported.

    (redis-py 8 imports the OpenTelemetry API and metrics SDK by itself when they are
    installed, for its own opt-in metrics; the tracing modules are authsvc's.)
    """
    program = (
        "import sys, fakeredis\n"
        "from authsvc import create_app\n"
        "from tests.conftest import BASE_SETTINGS\n"
        "r = fakeredis.FakeRedis(decode_responses=True)\n"
        "app = create_app(BASE_SETTINGS, redis_client=r)\n"
        "app.test_client().get('/healthz'); app.test_client().get('/api/v1/user/me')\n"
        "prefixes = ('opentelemetry.instrumentation', 'opentelemetry.sdk.trace',"
        " 'opentelemetry.exporter')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
    )
    env = {k: v for k, v in serve_env().items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_the_standard_variables_turn_tracing_on_and_off(variables, expected):
    """On with an OTLP endpoint or an exporter; off when unset, `none` or SDK disabled."""
    assert tracing.enabled(variables) is expected


def test_check_config_rejects_an_exporter_or_protocol_it_cannot_honour():
    """check-config lists an unknown exporter and OTLP over gRPC, and exits 2."""
    env = serve_env(JWT_SECRET=BASE_SETTINGS["JWT_SECRET"])
    env.update(OTEL_TRACES_EXPORTER="zipkin")
    result = run_authsvc(env, "check-config")
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER must be one of otlp, console, none" in result.stderr
    env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    result = run_authsvc(env, "check-config")
    assert result.returncode == 2
    assert "authsvc exports traces as http/protobuf" in result.stderr
    del env["OTEL_EXPORTER_OTLP_PROTOCOL"]
    assert run_authsvc(env, "check-config").returncode == 0


def test_variables_set_without_the_extra_installed_is_a_config_error(monkeypatch):
    """Asking for traces without `authsvc[tracing]` installed names the extra to install."""
    monkeypatch.setattr(tracing, "_missing", lambda module: module.startswith("opentelemetry"))
    problems = tracing.tracing_problems({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert problems == [
        "OTEL_* tracing variables are set but the tracing extra is not installed: "
        "pip install 'authsvc[tracing]'"
    ]


class _Collector:
    """An OTLP/HTTP trace receiver on a free loopback port: keeps each raw request body."""

    def __init__(self) -> None:
        bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[Any]:
        """Every span received so far (protobuf messages)."""
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    found.extend(scope_spans.spans)
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def collector() -> Iterator[_Collector]:
    """A running OTLP/HTTP collector, stopped after the test."""
    running = _Collector()
    yield running
    running.stop()


@pytest.mark.e2e
def test_serve_exports_otlp_by_the_standard_variables(
    collector, real_redis, real_redis_url, tmp_path
):
    """`authsvc serve` with OTEL_EXPORTER_OTLP_ENDPOINT: spans reach the collector over
    OTLP/HTTP from every worker, the log line names the span, and no secret is sent."""
    env = serve_env(REDIS_URL=real_redis_url, JWT_SECRET=BASE_SETTINGS["JWT_SECRET"])
    add_user_with_cli(env, USERNAME, PASSWORD)
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_SERVICE_NAME="authsvc-e2e",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
    )
    serve = ServeProcess(env, tmp_path)
    try:
        serve.wait_ready()
        body = {"username": USERNAME, "password": PASSWORD}
        pair = requests.post(f"{serve.url}{API}/login", json=body, timeout=HTTP_TIMEOUT).json()
        access = pair["data"]["access_token"]
        me = requests.get(
            f"{serve.url}{API}/me?access_token={QUERY_SECRET}",
            headers={**bearer(access), "Cookie": f"__Host-authsvc_refresh={COOKIE_VALUE}"},
            timeout=HTTP_TIMEOUT,
        )
        assert me.status_code == 200
        request_id = me.headers["X-Request-ID"]

        def me_span() -> Any:
            return next(
                (s for s in collector.spans() if s.name == f"GET {API}/me" and s.kind == SERVER),
                None,
            )

        wait_until(lambda: me_span() is not None, "the /me span at the collector", 20)
        span = me_span()
        children = [s for s in collector.spans() if s.parent_span_id == span.span_id]
        assert any(s.name == "EVALSHA" for s in children), [s.name for s in collector.spans()]
        line = next(
            json.loads(text)
            for text in serve.stderr().splitlines()
            if request_id in text and text.startswith("{")
        )
        assert line["trace_id"] == span.trace_id.hex()
        assert line["span_id"] == span.span_id.hex()
        received = b"".join(collector.bodies)
        assert b"authsvc-e2e" in received
        claims = jwt.decode(access, options={"verify_signature": False})
        for secret in (PASSWORD, access, claims["jti"], COOKIE_VALUE, QUERY_SECRET):
            assert secret.encode() not in received
    finally:
        survivors = serve.stop()
    assert not survivors
