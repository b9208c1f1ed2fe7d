"""OpenTelemetry tracing: off unless the standard ``OTEL_*`` variables ask for it.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` is set, off when ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. When on, the maintained Flask and Redis instrumentations
make a span per request and per Redis command, and every JSON log line written while a
span is current carries its ``trace_id`` and ``span_id``.

When off nothing of OpenTelemetry is imported and nothing is installed: no request
hook, no wrapped Redis client, no tracer call per request.

What a span may carry is fixed here, by an allowlist applied before any exporter sees
the span (:class:`ScrubbingSpanProcessor`): method, route, path (never the query
string), status, peer addresses, user agent, and for Redis the command *name* only
(``EVALSHA``, never its keys or arguments, where tokens' ``jti`` and hashes live).
Request headers (``Authorization``, ``Cookie``) never reach an exporter, even when
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` asks for them; exception
events keep their type, not their message.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from authsvc import logs

if TYPE_CHECKING:  # pragma: no cover - types only; never imported when tracing is off
    from flask import Flask
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

EXPORTERS = ("otlp", "console", "none")
# The OTLP exporter installed by the `tracing` extra speaks OTLP over HTTP.
OTLP_PROTOCOL = "http/protobuf"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_REQUIRED_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation.flask",
    "opentelemetry.instrumentation.redis",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)

# Attributes a span may keep, as the instrumentations name them (old and new semantic
# conventions). Anything else (a captured header, a future attribute) is dropped.
_KEPT_ATTRIBUTES = frozenset(
    {
        # HTTP server spans
        "http.method", "http.request.method", "http.request.method_original",
        "http.scheme", "url.scheme", "http.server_name", "http.host",
        "server.address", "server.port", "net.host.name", "net.host.port",
        "net.peer.ip", "net.peer.port", "net.peer.name", "client.address", "client.port",
        "network.peer.address", "network.peer.port",
        "http.user_agent", "user_agent.original", "http.flavor", "network.protocol.version",
        "http.route", "http.status_code", "http.response.status_code", "error.type",
        "url.path",
        # Redis client spans
        "db.system", "db.system.name", "db.redis.database_index", "db.namespace",
        "db.redis.args_length", "db.redis.pipeline_length", "db.operation.name",
        "net.transport", "network.transport",
    }
)  # fmt: skip
# Kept, but cut down: the path without its query, the command without its arguments.
_URL_ATTRIBUTES = frozenset({"http.url", "url.full"})
_TARGET_ATTRIBUTES = frozenset({"http.target"})
_STATEMENT_ATTRIBUTES = frozenset({"db.statement", "db.query.text"})
_KEPT_EVENT_ATTRIBUTES = frozenset({"exception.type", "exception.escaped"})


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables turn tracing on."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def _exporter_name(environ: Mapping[str, str]) -> str:
    # Only the first of a comma-separated list is used (one pipeline is enough here).
    return environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"


def tracing_problems(environ: Mapping[str, str]) -> list[str]:
    """Why the ``OTEL_*`` variables cannot be honoured (empty when off or fine)."""
    if not enabled(environ):
        return []
    problems: list[str] = []
    exporter = _exporter_name(environ)
    if exporter not in EXPORTERS:
        problems.append(
            f"OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)}, not {exporter!r}"
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if exporter == "otlp" and protocol not in ("", OTLP_PROTOCOL):
        problems.append(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: authsvc exports traces as {OTLP_PROTOCOL}, "
            f"not {protocol!r} (collectors accept it on port 4318)"
        )
    if any(_missing(name) for name in _REQUIRED_MODULES):
        problems.append(
            "OTEL_* tracing variables are set but the tracing extra is not installed: "
            "pip install 'authsvc[tracing]'"
        )
    return problems


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def provider_from_env(environ: Mapping[str, str]) -> TracerProvider | None:
    """The tracer provider the ``OTEL_*`` variables describe; None when tracing is off.

    Call :func:`tracing_problems` first: this assumes the variables are valid.
    """
    if not enabled(environ):
        return None
    exporter: SpanExporter
    if _exporter_name(environ) == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _CERTIFICATE, _TIMEOUT itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    return make_provider(exporter, environ=environ)


def make_provider(
    exporter: SpanExporter, *, batch: bool = True, environ: Mapping[str, str] | None = None
) -> TracerProvider:
    """A provider exporting scrubbed spans to ``exporter`` (batched, or one by one in tests).

    The sampler comes from ``OTEL_TRACES_SAMPLER``, the resource from ``OTEL_SERVICE_NAME``
    and ``OTEL_RESOURCE_ATTRIBUTES``; the service name defaults to ``authsvc``.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    environ = environ or {}
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: "authsvc"}))
    inner = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(_scrubbing_processor(inner))
    return provider


def init_app(app: Flask, redis_client: Any, provider: TracerProvider | None) -> None:
    """Trace ``app``'s requests and ``redis_client``'s commands (nothing without a provider)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from redis.cluster import RedisCluster

    FlaskInstrumentor.instrument_app(app, tracer_provider=provider, enable_commenter=False)
    # The server span opens first, so the key ring's reload (an earlier before_request
    # hook, which may read Redis) is a child of the request, not a root span of its own.
    hooks = app.before_request_funcs.setdefault(None, [])
    start_span = app._before_request  # type: ignore[attr-defined]  # set by instrument_app
    hooks.remove(start_span)
    hooks.insert(0, start_span)
    pipeline = redis_client.pipeline
    RedisInstrumentor.instrument_client(redis_client, tracer_provider=provider)
    if isinstance(redis_client, RedisCluster):
        # The instrumentation's per-client pipeline wrapper assumes a single-server
        # pipeline and raises on a ClusterPipeline (no immediate_execute_command); its
        # commands do not pass through execute_command either. One span of ours instead.
        redis_client.pipeline = _traced_cluster_pipeline(pipeline, provider)  # type: ignore[method-assign]
    logs.trace_context = _current_ids


def _traced_cluster_pipeline(pipeline: Any, provider: TracerProvider) -> Any:
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer(__name__)

    def traced_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def traced_execute(*execute_args: Any, **execute_kwargs: Any) -> Any:
            with tracer.start_as_current_span("PIPELINE", kind=SpanKind.CLIENT) as span:
                span.set_attribute("db.system", "redis")
                return execute(*execute_args, **execute_kwargs)

        pipe.execute = traced_execute
        return pipe

    return traced_pipeline


def _current_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def scrub_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a span may export: the allowlist, URLs without query, commands bare."""
    kept: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in _KEPT_ATTRIBUTES:
            kept[name] = value
        elif name in _URL_ATTRIBUTES and isinstance(value, str):
            scheme, netloc, path, _, _ = urlsplit(value)
            # netloc without user:password@
            kept[name] = urlunsplit((scheme, netloc.rpartition("@")[2], path, "", ""))
        elif name in _TARGET_ATTRIBUTES and isinstance(value, str):
            kept[name] = value.partition("?")[0]
        elif name in _STATEMENT_ATTRIBUTES and isinstance(value, str):
            # "EVALSHA ? ? ?" (or a pipeline, one command a line): the command names only.
            kept[name] = "\n".join(line.split(" ", 1)[0] for line in value.splitlines())
    return kept


def _scrubbing_processor(inner: SpanProcessor) -> SpanProcessor:
    from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
    from opentelemetry.trace import SpanKind, Status

    class ScrubbingSpanProcessor(SpanProcessor):
        """Hands ``inner`` a copy of each ended span that holds only allowed attributes."""

        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            inner.on_start(span, parent_context=parent_context)

        def on_end(self, span: ReadableSpan) -> None:
            events = [
                Event(
                    event.name,
                    {
                        k: v
                        for k, v in (event.attributes or {}).items()
                        if k in _KEPT_EVENT_ATTRIBUTES
                    },
                    event.timestamp,
                )
                for event in span.events
            ]
            attributes = scrub_attributes(span.attributes or {})
            name = span.name
            if span.kind == SpanKind.SERVER and "http.route" not in attributes:
                # No route matched: the path is whatever the caller sent (semantic
                # conventions name such a span by its method alone).
                name = str(attributes.get("http.method") or attributes.get("http.request.method"))
            inner.on_end(
                ReadableSpan(
                    name=name,
                    context=span.context,
                    parent=span.parent,
                    resource=span.resource,
                    attributes=attributes,
                    events=events,
                    links=span.links,
                    kind=span.kind,
                    # The status code alone: a description may quote an exception message.
                    status=Status(span.status.status_code),
                    start_time=span.start_time,
                    end_time=span.end_time,
                    instrumentation_scope=span.instrumentation_scope,
                )
            )

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return ScrubbingSpanProcessor()
