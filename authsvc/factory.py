"""The app factory: config -> store -> keys -> tokens -> error handlers -> blueprints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import redis
from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from flask_cors import CORS
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import SSLConnection
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection
from redis.utils import SENTINEL
from werkzeug.middleware.proxy_fix import ProxyFix

from authsvc import observability, tracing
from authsvc.admin import AdminService
from authsvc.api import oauth_device, register_blueprints
from authsvc.api.fastpath import install_fast_path
from authsvc.client_credentials import ClientCredentials
from authsvc.config import ConfigError, Settings, load_settings, parse_redis_topology
from authsvc.cookies import CSRF_HEADER
from authsvc.device_flow import DeviceFlow
from authsvc.errors import register_error_handlers
from authsvc.http import (
    NO_STORE_HEADERS,
    REQUEST_ID_ENVIRON,
    REQUEST_ID_HEADER,
    request_id_for,
)
from authsvc.introspection import TokenInspector
from authsvc.keys import build_keyring
from authsvc.passwords import Passwords
from authsvc.service import AuthService
from authsvc.store import RedisClient, Store
from authsvc.store.devices import DeviceCodes
from authsvc.tokens import configure_jwt

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace import TracerProvider

_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    # Dates and dataclasses keep Flask's own encoding (its `default`), as before.
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with two changes.

    Absurdly nested input is a 400, not a RecursionError (500); and compact output
    (every response outside debug mode) is encoded by orjson, several times faster
    than the standard library for the envelope.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise like Flask (UTF-8 text, key order kept, Flask's ``default``)."""
        standard = self.sort_keys or self.ensure_ascii
        if standard or kwargs.keys() - {"separators"}:
            # Pretty-printing (debug), sorting, ASCII escaping: the standard library.
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, default=self.default, option=_ORJSON_OPTIONS).decode()
        except (orjson.JSONEncodeError, TypeError):
            return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; Werkzeug turns the ValueError into 400 invalid_request."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError as error:
            raise ValueError("JSON nested too deeply") from error


# One immediate retry replaces a pooled connection that died with a Redis restart (or,
# on a Cluster, follows the refreshed slot map to a promoted replica); more would hold
# requests past the timeout during a real outage. It resends a command whose connection
# dropped after Redis ran it, so every script is safe to run twice (a rotation finds its
# own child, a login attempt and a DPoP proof their own attempt ids). Not after a
# timeout: the request would outlive it.
_RETRIES_AFTER_CONNECTION_ERROR = 1


class _FailFastCluster(RedisCluster):
    """RedisCluster retrying like our single-server client: not after a timeout.

    redis-py's cluster client retries a command on a timeout too; it reads this
    class attribute (``type(error) in self.__class__.ERRORS_ALLOW_RETRY``). Its
    pipelines still re-send, once, a command that failed with a connection error or
    a timeout: every pipelined script is idempotent (see docs/operations/redis.md).
    """

    # redis-py types the base's exact tuple; ours leaves TimeoutError out on purpose.
    ERRORS_ALLOW_RETRY = (  # type: ignore[assignment]
        redis.exceptions.ConnectionError,
        ClusterDownError,
        SlotNotCoveredError,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Its pipelines (which share this parser) ask a server for an EVAL's keys with
        # COMMAND GETKEYS, one more round trip per script, though the keys are right
        # there in the command; its single commands already read them locally.
        parser = self.commands_parser
        ask_server = parser.get_keys

        def script_keys(connection: Any, *args: Any) -> Any:
            if len(args) > 2 and str(args[0]).upper() in ("EVAL", "EVALSHA"):
                return list(args[3 : 3 + int(args[2])])
            return ask_server(connection, *args)

        parser.get_keys = script_keys  # type: ignore[method-assign]


class _SentinelConnection(SentinelManagedConnection):
    """A connection to the master a sentinel names that is closed when a read fails.

    redis-py's Sentinel connection keeps its socket after a read error, a timeout
    included (its ``disconnect_on_error`` defaults to False, unlike every other
    connection's; redis/redis-py#4292): the late reply then answers the next command
    sent on it, so a session check could read another request's ``ok``. Closed, the next
    command gets a fresh connection (tests/test_redis_ha.py).
    """

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: float | object = SENTINEL,
        disconnect_on_error: bool | None = True,
        push_request: bool | None = False,
    ) -> Any:
        """Read one reply; on any error the connection is closed (callers may say not to)."""
        return super().read_response(
            disable_decoding=disable_decoding,
            timeout=timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send one command; a closed connection first asks the sentinels for the master.

        redis-py reconnects a closed connection here to the address it had, which after a
        failover is the dead master's: a connection the pool lends is connected (to the
        master the sentinels name) before it is lent, but a thread's own connection
        (``authsvc.store.base.ThreadClients``) is never lent again, so it would try the
        dead master until the process ended.
        """
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class _SentinelSSLConnection(_SentinelConnection, SSLConnection):
    """The same over TLS (``rediss+sentinel://``)."""


def make_redis(settings: Settings) -> RedisClient:
    """A Redis client that fails fast (socket timeout) and reconnects by itself.

    One server (``redis://``, ``rediss://``, ``unix://``), a Redis Cluster
    (``redis+cluster://``) or the master a Redis Sentinel names (``redis+sentinel://``),
    all with the same timeouts and retry policy; ``rediss`` variants speak TLS with the
    ``AUTHSVC_REDIS_TLS_*`` options (authsvc/redis_tls.py).
    """
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
    }
    common: dict[str, Any] = {**timeouts, "decode_responses": True, "health_check_interval": 30}
    retry = Retry(
        NoBackoff(),
        _RETRIES_AFTER_CONNECTION_ERROR,
        supported_errors=(redis.exceptions.ConnectionError,),
    )
    tls_options = settings.redis_tls_options
    tls: dict[str, Any] = tls_options.redis_kwargs() if tls_options else {}
    topology = parse_redis_topology(settings.redis_url)
    if topology is None:
        # On a rediss:// URL redis-py reads the same ssl_* query parameters, which win.
        return redis.Redis.from_url(settings.redis_url, retry=retry, **tls, **common)
    tls = {"ssl": True, **tls} if topology.tls else {}
    if topology.kind == "cluster":
        return _FailFastCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
            retry=retry,
            username=topology.username,
            password=topology.password,
            **tls,
            **common,
        )
    sentinel = Sentinel(
        list(topology.nodes),
        # rediss+sentinel: the sentinels speak TLS too, with the same CA and certificate.
        sentinel_kwargs={**timeouts, "password": topology.sentinel_password, **tls},
    )
    # Each new connection asks the sentinels for the current master, so after a
    # failover the pool's next connection goes to the promoted replica.
    return sentinel.master_for(
        topology.master_name,
        connection_class=_SentinelSSLConnection if topology.tls else _SentinelConnection,
        db=topology.db,
        retry=retry,
        username=topology.username,
        password=topology.password,
        **tls,
        **common,
    )


def create_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    redis_client: RedisClient | None = None,
    remember_keys: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> Flask:
    """Build the app: config -> store -> tokens -> error handlers -> blueprints.

    ``overrides`` takes setting names without the ``AUTHSVC_`` prefix and wins over the
    environment; ``redis_client`` injects a client (fakeredis in unit tests);
    ``remember_keys`` False (admin commands) keeps no snapshot of the Redis key ring;
    ``tracer_provider`` turns tracing on with that provider (tests: an in-memory
    exporter), else the ``OTEL_*`` variables decide (authsvc/tracing.py).
    """
    app = Flask(__name__)
    app.json = _JSONProvider(app)
    # Values stay strings; config.load_settings parses and validates each one.
    app.config.from_prefixed_env("AUTHSVC", loads=str)
    values: dict[str, Any] = dict(app.config)
    values.update(overrides or {})
    settings = load_settings(values, require_redis=redis_client is None)
    if tracer_provider is None:
        problems = tracing.tracing_problems(os.environ)
        if problems:
            raise ConfigError(problems)
        tracer_provider = tracing.provider_from_env(os.environ)

    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    store = Store(redis_client or make_redis(settings), prefix=settings.redis_key_prefix)
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        concurrency=settings.hash_concurrency,
    )
    service = AuthService(settings, store, passwords)
    app.extensions["authsvc"] = service
    credentials = ClientCredentials(settings, store, service.clients, service.attempts)
    app.extensions["authsvc_admin"] = AdminService(service, credentials)
    app.extensions["authsvc_client_credentials"] = credentials
    app.extensions["authsvc_introspection"] = TokenInspector(settings, store, credentials)
    devices = DeviceCodes(store.redis, prefix=settings.redis_key_prefix)
    app.extensions["authsvc_device"] = DeviceFlow(service, devices)
    keyring = build_keyring(settings, store.redis, remember=remember_keys)
    app.extensions["authsvc_keys"] = keyring
    app.before_request(keyring.refresh)
    configure_jwt(app, settings, keyring)
    register_error_handlers(app)
    _register_request_hooks(app)
    register_blueprints(app)
    oauth_device.advertise(app)
    if settings.cors_origin_list:
        CORS(
            app,
            origins=settings.cors_origin_list,
            supports_credentials=True,
            allow_headers=["Authorization", "Content-Type", CSRF_HEADER, "X-Request-ID", "DPoP"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate", "DPoP-Nonce"],
            max_age=600,
        )
    observability.init_app(app)
    tracing.init_app(app, store.redis, tracer_provider)
    if tracer_provider is None:
        # With tracing on, every request goes through the instrumented Flask path.
        install_fast_path(app)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        # Host too: a DPoP proof's htu names the URL as the client saw it (RFC 9449).
        # Outermost, so the fast path and Flask both see the client's address and URL.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n
        )
    return app


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request.environ.get(REQUEST_ID_ENVIRON) or request_id_for(
            request.headers.get(REQUEST_ID_HEADER)
        )

    @app.after_request
    def add_common_headers(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        if "Cache-Control" not in response.headers:
            for name, value in NO_STORE_HEADERS:
                response.headers[name] = value
        if g.get("dpop_request") and "DPoP-Nonce" not in response.headers:
            # RFC 9449 section 8.2: a fresh nonce with every answer to a DPoP request.
            nonce = app.extensions["authsvc"].proofs.nonce()
            if nonce:
                response.headers["DPoP-Nonce"] = nonce
        return response
