"""Typed settings parsed once from ``AUTHSVC_*`` values, every problem reported at startup.

The mapping handed to :func:`load_settings` holds the names *without* the prefix
(``JWT_SECRET`` for ``AUTHSVC_JWT_SECRET``), which is what Flask's
``Config.from_prefixed_env("AUTHSVC", loads=str)`` produces. Values are strings from
the environment, or Python values from ``create_app(overrides)``; each field's parser
accepts both.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote

from authsvc import redis_tls
from authsvc.messages import SUPPORTED_LANGUAGES

ENV_PREFIX = "AUTHSVC_"
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
MIN_SECRET_BYTES_BY_ALGORITHM = {"HS256": 32, "HS384": 48, "HS512": 64}
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
SUPPORTED_ALGORITHMS = (*MIN_SECRET_BYTES_BY_ALGORITHM, *ASYMMETRIC_ALGORITHMS)
MIN_SECRET_BYTES = MIN_SECRET_BYTES_BY_ALGORITHM["HS256"]
MAX_LEEWAY_SECONDS = 60
# A DPoP proof is a one-shot signature made just before its request: minutes are plenty.
MAX_DPOP_PROOF_WINDOW = 300
MIN_CLIENT_SECRET_LENGTH = 24
# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
MIN_ARGON2_MEMORY_KIB = 19 * 1024
MIN_ARGON2_TIME_COST = 2
# Hashes at once per worker; each holds argon2_memory_kib (19 MiB at the minimum).
MAX_HASH_CONCURRENCY = 256
# Shorter IPv6 prefixes would lump whole providers (a /32 is an ISP's allocation) into one
# login throttle.
MIN_IPV6_PREFIX = 32
# A rotated-in key signs only after every verifier can know it: the JWKS max-age
# (300 s, api/wellknown.py) plus one reload interval (1 s), plus margin for clocks
# that differ by up to the leeway (30 s).
DEFAULT_KEY_PROPAGATION_DELAY = 330
MAX_KEY_PROPAGATION_DELAY = 24 * 3600
KEY_STORES = ("", "redis")


_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"
# scheme -> (kind, TLS)
_TOPOLOGY_SCHEMES = {
    CLUSTER_SCHEME: ("cluster", False),
    "rediss+cluster://": ("cluster", True),
    SENTINEL_SCHEME: ("sentinel", False),
    "rediss+sentinel://": ("sentinel", True),
}
_REDIS_URL_FORMATS = (
    "AUTHSVC_REDIS_URL must be redis://, rediss:// or unix:// (one server), "
    "redis+cluster://[[user]:password@]host:port[,host:port...] (Redis Cluster seed nodes) "
    "or redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/<db>]"
    "[?sentinel_password=...] (Redis Sentinel); rediss+cluster:// and rediss+sentinel:// "
    "for TLS"
)


@dataclass(frozen=True)
class RedisTopology:
    """A ``redis+cluster://`` or ``redis+sentinel://`` URL, taken apart.

    ``nodes`` are the cluster's seed nodes or the sentinels; ``password`` (and
    ``username``) authenticate to the data nodes, ``sentinel_password`` to the sentinels.
    ``tls``: every connection (sentinels and data nodes) speaks TLS.
    """

    kind: str  # "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    master_name: str = ""
    db: int = 0
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:7000
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{item.strip()!r} is not host:port")
    return host, int(port)


def _query_params(query: str) -> dict[str, str]:
    """``name=value&...`` percent-decoded like the userinfo: ``+`` stays ``+``.

    ``parse_qs`` would read ``+`` as a space (form encoding), so ``sentinel_password=a+b``
    would differ from the same password written before the ``@``. The last of repeated
    names wins; an item without ``=`` is a name with an empty value.
    """
    params = {}
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            params[unquote(name)] = unquote(value)
    return params


def parse_redis_topology(url: str) -> RedisTopology | None:
    """The Cluster or Sentinel topology named by ``url``; None for a one-server URL.

    Raises ValueError, with the reason, for a malformed cluster or sentinel URL.
    """
    scheme = next((s for s in _TOPOLOGY_SCHEMES if url.startswith(s)), None)
    if scheme is None:
        return None
    (kind, tls), rest = _TOPOLOGY_SCHEMES[scheme], url.removeprefix(scheme)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_host_port(item) for item in hosts.split(",") if item.strip())
    if not nodes:
        raise ValueError("no host:port given")
    params = _query_params(query)
    # The TLS parameters (authsvc/redis_tls.py) on a rediss+ URL only.
    tls_params = set(redis_tls.URL_PARAMETERS) if tls else set()
    parts = [unquote(p) for p in path.split("/") if p]
    if kind == "cluster":
        # Redis Cluster has one database; a query would be silently ignored.
        if parts not in ([], ["0"]) or set(params) - tls_params:
            raise ValueError(
                "a cluster URL takes no database (other than /0) and no query "
                "(but the TLS parameters of rediss+cluster://)"
            )
        master_name, db = "", 0
    else:
        if not 1 <= len(parts) <= 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError("the path must be /<master-name> or /<master-name>/<db>")
        if set(params) - {"sentinel_password"} - tls_params:
            raise ValueError(
                "the only query parameter is sentinel_password "
                "(and the TLS parameters of rediss+sentinel://)"
            )
        master_name, db = parts[0], int(parts[1]) if len(parts) == 2 else 0
    return RedisTopology(
        kind=kind,
        nodes=nodes,
        tls=tls,
        master_name=master_name,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=params.get("sentinel_password") or None,
    )


class ConfigError(ValueError):
    """Raised with every invalid or missing setting listed, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:  # one clear line
            super().__init__(f"invalid authsvc configuration: {problems[0]}")
        else:
            super().__init__(
                "invalid authsvc configuration:\n" + "\n".join(f"  - {p}" for p in problems)
            )


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; field names map to ``AUTHSVC_<NAME>`` env vars."""

    jwt_secret: str = ""
    jwt_algorithm: str = "HS256"
    jwt_key_dir: str = ""
    jwt_private_key_file: str = ""
    jwt_key_store: str = ""
    key_encryption_key: str = ""
    key_propagation_delay: int = DEFAULT_KEY_PROPAGATION_DELAY
    jwt_issuer: str = "authsvc"
    jwt_audience: str = "authsvc"
    jwt_leeway: int = 30
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 3600
    session_idle_timeout: int = 7 * 24 * 3600
    refresh_grace_seconds: int = 20
    device_code_ttl: int = 600
    device_poll_interval: int = 5
    dpop_proof_window: int = 60
    dpop_nonce_secret: str = ""
    dpop_nonce_lifetime: int = 60
    redis_url: str = ""
    redis_socket_timeout: float = 1.0
    redis_key_prefix: str = "authsvc"
    redis_tls_ca_file: str = ""
    redis_tls_cert_file: str = ""
    redis_tls_key_file: str = ""
    redis_tls_check_hostname: str = "true"
    max_body_bytes: int = 16 * 1024
    envelope_http_status: str = "mirror"
    default_language: str = "en"
    login_max_failures_per_account: int = 5
    login_max_failures_per_ip: int = 50
    login_failure_window: int = 15 * 60
    login_ipv6_prefix: int = 64
    argon2_time_cost: int = 2
    argon2_memory_kib: int = MIN_ARGON2_MEMORY_KIB
    argon2_parallelism: int = 1
    trusted_proxies: int = 0
    cors_origins: str = ""
    token_clients: str = ""
    instance_path: str = ""
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 4
    hash_concurrency: int = 0  # 0: the CPU cores divided by the workers, rounded up

    @property
    def asymmetric(self) -> bool:
        """Whether tokens are signed with a private key (and published in the JWKS)."""
        return self.jwt_algorithm in ASYMMETRIC_ALGORITHMS

    @property
    def key_retention_seconds(self) -> int:
        """How long a retired key keeps verifying: until its last token has expired."""
        return self.refresh_token_ttl + self.jwt_leeway

    @property
    def redis_tls_options(self) -> redis_tls.RedisTLS | None:
        """TLS options for Redis (settings, then URL parameters); None without TLS."""
        return redis_tls.resolve(
            self.redis_url,
            self.redis_tls_ca_file,
            self.redis_tls_cert_file,
            self.redis_tls_key_file,
            self.redis_tls_check_hostname,
        )

    @property
    def cors_origin_list(self) -> list[str]:
        """The browser origins allowed to call the API with credentials."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def token_client_secrets(self) -> dict[str, str]:
        """Resource-server credentials for introspection/revocation: ``{client_id: secret}``."""
        pairs = (item.partition(":") for item in self.token_clients.split(",") if item.strip())
        return {client.strip(): secret.strip() for client, _, secret in pairs}

    @property
    def always_200(self) -> bool:
        """Whether legacy firmware mode (HTTP 200 for every envelope) is on."""
        return self.envelope_http_status == "always200"


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return float(str(value).strip()) if not isinstance(value, int | float) else float(value)


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_PARSERS: dict[type | str, Callable[[Any], Any]] = {
    "int": _as_int,
    "float": _as_float,
    "str": _as_str,
}


def _validate(s: Settings, *, require_redis: bool) -> list[str]:
    problems: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    if s.asymmetric:
        need(
            bool(s.jwt_key_dir or s.jwt_private_key_file or s.jwt_key_store),
            f"{s.jwt_algorithm} needs AUTHSVC_JWT_KEY_STORE=redis, AUTHSVC_JWT_KEY_DIR "
            "(see `authsvc keys generate`) or AUTHSVC_JWT_PRIVATE_KEY_FILE (a PEM file)",
        )
    elif not s.jwt_secret:
        problems.append(
            "AUTHSVC_JWT_SECRET is not set: give it at least 32 random bytes, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    else:
        secret_len = len(s.jwt_secret.encode())
        minimum = MIN_SECRET_BYTES_BY_ALGORITHM.get(s.jwt_algorithm, MIN_SECRET_BYTES)
        need(
            secret_len >= minimum,
            f"AUTHSVC_JWT_SECRET is {secret_len} bytes; {s.jwt_algorithm} needs at least {minimum}",
        )
    need(
        s.jwt_algorithm in SUPPORTED_ALGORITHMS,
        f"AUTHSVC_JWT_ALGORITHM must be one of {', '.join(SUPPORTED_ALGORITHMS)}",
    )
    problems.extend(_key_store_problems(s))
    need(bool(s.jwt_issuer), "AUTHSVC_JWT_ISSUER must not be empty")
    need(bool(s.jwt_audience), "AUTHSVC_JWT_AUDIENCE must not be empty")
    need(
        0 <= s.jwt_leeway <= MAX_LEEWAY_SECONDS,
        f"AUTHSVC_JWT_LEEWAY must be between 0 and {MAX_LEEWAY_SECONDS} seconds",
    )
    need(s.access_token_ttl >= 1, "AUTHSVC_ACCESS_TOKEN_TTL must be at least 1 second")
    need(
        s.refresh_token_ttl > s.access_token_ttl,
        "AUTHSVC_REFRESH_TOKEN_TTL must be longer than AUTHSVC_ACCESS_TOKEN_TTL",
    )
    need(
        s.session_idle_timeout >= s.access_token_ttl,
        "AUTHSVC_SESSION_IDLE_TIMEOUT must be at least AUTHSVC_ACCESS_TOKEN_TTL",
    )
    need(
        0 <= s.refresh_grace_seconds <= 300,
        "AUTHSVC_REFRESH_GRACE_SECONDS must be between 0 (off) and 300",
    )
    need(
        60 <= s.device_code_ttl <= 3600,
        "AUTHSVC_DEVICE_CODE_TTL must be between 60 and 3600 seconds (RFC 8628 expires_in)",
    )
    need(
        1 <= s.device_poll_interval <= 60,
        "AUTHSVC_DEVICE_POLL_INTERVAL must be between 1 and 60 seconds",
    )
    problems.extend(_dpop_problems(s))
    if require_redis:
        need(
            s.redis_url.startswith(("redis://", "rediss://", "unix://", *_TOPOLOGY_SCHEMES)),
            f"{_REDIS_URL_FORMATS} (`authsvc serve` starts an embedded Redis when it is unset)",
        )
    try:
        parse_redis_topology(s.redis_url)
    except ValueError as error:
        problems.append(f"AUTHSVC_REDIS_URL: {error}; {_REDIS_URL_FORMATS}")
    problems.extend(redis_tls.settings_problems(s))
    need(s.redis_socket_timeout > 0, "AUTHSVC_REDIS_SOCKET_TIMEOUT must be positive")
    need(bool(s.redis_key_prefix), "AUTHSVC_REDIS_KEY_PREFIX must not be empty")
    need(s.max_body_bytes >= 256, "AUTHSVC_MAX_BODY_BYTES must be at least 256")
    need(
        s.envelope_http_status in ("mirror", "always200"),
        "AUTHSVC_ENVELOPE_HTTP_STATUS must be 'mirror' or 'always200'",
    )
    need(
        s.default_language in SUPPORTED_LANGUAGES,
        f"AUTHSVC_DEFAULT_LANGUAGE must be one of {', '.join(SUPPORTED_LANGUAGES)}",
    )
    need(s.login_max_failures_per_account >= 1, "AUTHSVC_LOGIN_MAX_FAILURES_PER_ACCOUNT >= 1")
    need(s.login_max_failures_per_ip >= 1, "AUTHSVC_LOGIN_MAX_FAILURES_PER_IP must be >= 1")
    need(s.login_failure_window >= 1, "AUTHSVC_LOGIN_FAILURE_WINDOW must be >= 1 second")
    need(
        MIN_IPV6_PREFIX <= s.login_ipv6_prefix <= 128,
        f"AUTHSVC_LOGIN_IPV6_PREFIX must be between {MIN_IPV6_PREFIX} and 128 "
        "(64: one throttle per IPv6 subnet, the usual end-site assignment)",
    )
    need(
        s.argon2_time_cost >= MIN_ARGON2_TIME_COST,
        f"AUTHSVC_ARGON2_TIME_COST must be at least {MIN_ARGON2_TIME_COST} (OWASP)",
    )
    need(
        s.argon2_memory_kib >= MIN_ARGON2_MEMORY_KIB,
        f"AUTHSVC_ARGON2_MEMORY_KIB must be at least {MIN_ARGON2_MEMORY_KIB} (OWASP)",
    )
    need(s.argon2_parallelism >= 1, "AUTHSVC_ARGON2_PARALLELISM must be at least 1")
    need(0 <= s.trusted_proxies <= 5, "AUTHSVC_TRUSTED_PROXIES must be between 0 and 5")
    need(s.workers >= 1, "AUTHSVC_WORKERS must be at least 1")
    need(1 <= s.threads <= 64, "AUTHSVC_THREADS must be between 1 and 64")
    need(
        0 <= s.hash_concurrency <= MAX_HASH_CONCURRENCY,
        f"AUTHSVC_HASH_CONCURRENCY must be 0 (each worker's share of the CPU cores) "
        f"or a number of argon2 hashes per worker from 1 to {MAX_HASH_CONCURRENCY}",
    )
    for client, secret in s.token_client_secrets.items():
        need(
            bool(client) and len(secret) >= MIN_CLIENT_SECRET_LENGTH,
            f"AUTHSVC_TOKEN_CLIENTS: each entry is client_id:secret with a secret of at least "
            f"{MIN_CLIENT_SECRET_LENGTH} characters ({client or '<empty id>'!r} is not)",
        )
    for origin in s.cors_origin_list:
        # Credentialed CORS cannot use "*" (Fetch standard); each origin is explicit.
        need(
            bool(_ORIGIN_RE.match(origin)),
            f"AUTHSVC_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com",
        )
    return problems


def _dpop_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    if not 1 <= s.dpop_proof_window <= MAX_DPOP_PROOF_WINDOW:
        problems.append(
            f"AUTHSVC_DPOP_PROOF_WINDOW must be between 1 and {MAX_DPOP_PROOF_WINDOW} seconds "
            "(how far a DPoP proof's iat may be from now)"
        )
    if s.dpop_nonce_secret and len(s.dpop_nonce_secret.encode()) < MIN_SECRET_BYTES:
        problems.append(
            f"AUTHSVC_DPOP_NONCE_SECRET must be at least {MIN_SECRET_BYTES} bytes "
            "(unset: no server nonces)"
        )
    if not 10 <= s.dpop_nonce_lifetime <= 3600:
        problems.append("AUTHSVC_DPOP_NONCE_LIFETIME must be between 10 and 3600 seconds")
    return problems


def _key_store_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    if s.jwt_key_store not in KEY_STORES:
        problems.append("AUTHSVC_JWT_KEY_STORE must be 'redis' or unset (a key directory or file)")
    if s.jwt_key_store == "redis":
        if not s.asymmetric:
            problems.append("AUTHSVC_JWT_KEY_STORE=redis needs RS256, ES256 or EdDSA")
        if s.jwt_key_dir or s.jwt_private_key_file:
            problems.append(
                "AUTHSVC_JWT_KEY_STORE=redis excludes AUTHSVC_JWT_KEY_DIR and "
                "AUTHSVC_JWT_PRIVATE_KEY_FILE (import a directory with `authsvc keys import`)"
            )
        if not s.key_encryption_key:
            problems.append(
                "AUTHSVC_KEY_ENCRYPTION_KEY is not set: the key ring in Redis is encrypted "
                "with it; make one with `authsvc keys new-kek`"
            )
        elif not _is_kek(s.key_encryption_key):
            problems.append(
                "AUTHSVC_KEY_ENCRYPTION_KEY must be 32 random bytes in URL-safe base64 "
                "(`authsvc keys new-kek` prints one)"
            )
    if not 0 <= s.key_propagation_delay <= MAX_KEY_PROPAGATION_DELAY:
        problems.append(
            f"AUTHSVC_KEY_PROPAGATION_DELAY must be between 0 and {MAX_KEY_PROPAGATION_DELAY} "
            f"seconds (default {DEFAULT_KEY_PROPAGATION_DELAY}: JWKS max-age + reload + margin)"
        )
    return problems


def _is_kek(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))) == 32
    except (ValueError, binascii.Error):
        return False


def load_settings(values: Mapping[str, Any], *, require_redis: bool = True) -> Settings:
    """Build validated :class:`Settings` from prefix-less names; raise :class:`ConfigError`.

    ``require_redis=False`` is for the CLI paths that start an embedded Redis first.
    """
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for field in fields(Settings):
        name = field.name.upper()
        if name not in values or values[name] is None:
            continue
        parser = _PARSERS[str(field.type)]
        try:
            parsed[field.name] = parser(values[name])
        except (TypeError, ValueError):
            problems.append(f"{ENV_PREFIX}{name} must be of type {field.type}")
    settings = Settings(**parsed)
    problems.extend(_validate(settings, require_redis=require_redis))
    if problems:
        raise ConfigError(problems)
    return settings


def unknown_env_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """``AUTHSVC_*`` names that are not settings: almost always typos worth reporting."""
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name not in known
        and not name.startswith(ENV_PREFIX + "TEST_")
    )
