"""TLS to Redis: the CA, client certificate and server-name check, validated at startup.

One server (``rediss://``), a Redis Cluster (``rediss+cluster://``) or a Sentinel group
(``rediss+sentinel://``, TLS to the sentinels and to the data nodes) take the same four
options, as ``AUTHSVC_REDIS_TLS_*`` settings or as the URL query parameters redis-py
itself reads on a ``rediss://`` URL (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_check_hostname``); a URL parameter wins over the setting.

Files are checked when the settings load (they exist, parse as PEM, the key matches the
certificate); a CA that did not sign the servers' certificates can only show in a
handshake, which :func:`check_handshake` makes before ``authsvc serve`` forks its
workers and in ``check-config``, refusing with one line.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from cryptography import x509

# redis-py and cryptography are imported where they are used: authsvc.config imports
# this module, and gunicorn's master loads the config (about 30 MiB for nothing there).

TLS_SCHEMES = ("rediss://", "rediss+cluster://", "rediss+sentinel://")
# URL query parameter -> the setting it overrides (redis-py's names for rediss:// URLs).
URL_PARAMETERS = {
    "ssl_ca_certs": "AUTHSVC_REDIS_TLS_CA_FILE",
    "ssl_certfile": "AUTHSVC_REDIS_TLS_CERT_FILE",
    "ssl_keyfile": "AUTHSVC_REDIS_TLS_KEY_FILE",
    "ssl_check_hostname": "AUTHSVC_REDIS_TLS_CHECK_HOSTNAME",
}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


_VERIFY_FAILED = re.compile(r"certificate verify failed: (.+?) \(_ssl")
# What an SSL error's text says when redis-py kept only the text (a cluster client).
_SSL_MARKERS = ("[SSL", "CERTIFICATE_VERIFY_FAILED", "EOF occurred in violation of protocol")
_SSL_CODE = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


class RedisTLSError(RuntimeError):
    """The TLS handshake with Redis failed: a wrong CA, certificate or server name."""


@dataclass(frozen=True)
class RedisTLS:
    """The TLS options of a ``rediss`` URL: the settings with the URL's parameters applied."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    check_hostname: bool = True

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis-py's SSL connections (``ssl=True`` not included)."""
        kwargs: dict[str, Any] = {
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": self.check_hostname,
        }
        if self.ca_file:
            kwargs["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            kwargs["ssl_certfile"] = self.cert_file
            kwargs["ssl_keyfile"] = self.key_file
        return kwargs


def parse_bool(value: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0, on/off); ValueError otherwise."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


def is_tls_url(url: str) -> bool:
    """Whether ``url`` asks for TLS (``rediss``, ``rediss+cluster``, ``rediss+sentinel``)."""
    return url.startswith(TLS_SCHEMES)


def url_parameters(url: str) -> dict[str, str]:
    """The TLS query parameters of ``url`` (the last value of each)."""
    # Percent-decoded with "+" kept (a path may hold one), as the sentinel_password.
    params = {}
    for item in url.partition("?")[2].split("&"):
        name, _, value = item.partition("=")
        if unquote(name) in URL_PARAMETERS:
            params[unquote(name)] = unquote(value)
    return params


def resolve(
    url: str, ca_file: str, cert_file: str, key_file: str, check_hostname: str
) -> RedisTLS | None:
    """The TLS options for ``url`` from the settings and its parameters; None without TLS.

    Raises ValueError for an unparsable ``ssl_check_hostname``.
    """
    if not is_tls_url(url):
        return None
    params = url_parameters(url)
    return RedisTLS(
        ca_file=params.get("ssl_ca_certs", ca_file),
        cert_file=params.get("ssl_certfile", cert_file),
        key_file=params.get("ssl_keyfile", key_file),
        check_hostname=parse_bool(params.get("ssl_check_hostname", check_hostname or "true")),
    )


def file_problems(tls: RedisTLS) -> list[str]:
    """What is wrong with the files ``tls`` names: missing, not PEM, or a key not matching."""
    problems: list[str] = []
    if tls.ca_file:
        certificates, problem = _read(tls.ca_file, "AUTHSVC_REDIS_TLS_CA_FILE")
        if problem:
            problems.append(problem)
        elif not _pem_certificates(certificates):
            problems.append(f"AUTHSVC_REDIS_TLS_CA_FILE: {tls.ca_file} holds no PEM certificate")
    if bool(tls.cert_file) != bool(tls.key_file):
        problems.append(
            "AUTHSVC_REDIS_TLS_CERT_FILE and AUTHSVC_REDIS_TLS_KEY_FILE go together "
            "(the client certificate and its private key)"
        )
    elif tls.cert_file:
        problems.extend(_client_certificate_problems(tls.cert_file, tls.key_file))
    return problems


def _read(path: str, setting: str) -> tuple[bytes, str]:
    try:
        return Path(path).read_bytes(), ""
    except FileNotFoundError:
        return b"", f"{setting}: {path} does not exist"
    except OSError as error:
        return b"", f"{setting}: cannot read {path} ({error.strerror})"


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def _client_certificate_problems(cert_file: str, key_file: str) -> list[str]:
    cert_data, cert_problem = _read(cert_file, "AUTHSVC_REDIS_TLS_CERT_FILE")
    key_data, key_problem = _read(key_file, "AUTHSVC_REDIS_TLS_KEY_FILE")
    problems = [p for p in (cert_problem, key_problem) if p]
    if problems:
        return problems
    certificates = _pem_certificates(cert_data)
    if not certificates:
        return [f"AUTHSVC_REDIS_TLS_CERT_FILE: {cert_file} holds no PEM certificate"]
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        return [f"AUTHSVC_REDIS_TLS_KEY_FILE: {key_file} is not an unencrypted PEM private key"]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificates[0].public_key().public_bytes(
        encoding, public
    ):
        return [
            f"AUTHSVC_REDIS_TLS_KEY_FILE: {key_file} is not the key of the certificate "
            f"in {cert_file}"
        ]
    return []


def ssl_error_in(error: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError behind ``error`` (redis-py wraps it), or None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        stack.extend([current.__cause__, current.__context__])
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return None


def handshake_failure(error: BaseException, url_hosts: str) -> RedisTLSError | None:
    """``error`` as one clear line when a TLS handshake caused it; None otherwise.

    The SSL error is found in the exception chain, or in the text when redis-py kept
    only that (a Sentinel client reports each sentinel's error as text).
    """
    cause = ssl_error_in(error)
    text = f"{error} {cause or ''}"
    if cause is None and not any(marker in text for marker in _SSL_MARKERS):
        return None
    verify = _VERIFY_FAILED.search(text)
    if isinstance(cause, ssl.SSLCertVerificationError) or verify:
        reason = getattr(cause, "verify_message", None) or (verify and verify.group(1))
        hint = (
            "is AUTHSVC_REDIS_TLS_CA_FILE the CA that signed the servers' certificates, "
            "and do they name the host in the URL (else ssl_check_hostname=false)?"
        )
    elif isinstance(cause, ssl.SSLEOFError) or "EOF occurred" in text:
        reason = "the server closed the connection during the handshake"
        hint = "does it require a client certificate (AUTHSVC_REDIS_TLS_CERT_FILE)?"
    elif "CERTIFICATE_REQUIRED" in text:
        # TLS 1.3 ends the handshake before the server checks: the same refusal arrives
        # as this alert when the client reads it in time, else as the EOF above.
        reason = "the server requires a client certificate (CERTIFICATE_REQUIRED)"
        hint = "set AUTHSVC_REDIS_TLS_CERT_FILE and AUTHSVC_REDIS_TLS_KEY_FILE"
    else:
        code = _SSL_CODE.search(text)
        reason = code.group(1) if code else "handshake failed"
        hint = "check the certificate files and that the port speaks TLS"
    return RedisTLSError(
        f"AUTHSVC_REDIS_URL: TLS with Redis at {url_hosts} failed: "
        f"{str(reason).replace(chr(10), ' ')}; {hint}"
    )


def hosts_of(url: str) -> str:
    """The host:port list of ``url``, without credentials or query (for messages)."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("/", 1)[0]
    return rest.rpartition("@")[2]


def check_handshake(make_client: Any, settings: Any) -> None:
    """PING Redis once when ``settings`` ask for TLS; RedisTLSError if the handshake fails.

    Redis being down is not a refusal: requests fail closed (503) until it is back, as
    without TLS. ``make_client`` is :func:`authsvc.factory.make_redis`. Sentinels are
    asked one by one first: the Sentinel client reports their errors without the cause.
    """
    tls = settings.redis_tls_options
    if tls is None:
        return
    # config imports this module; the URL parser is needed here only.
    import redis

    from authsvc.config import parse_redis_topology

    topology = parse_redis_topology(settings.redis_url)
    probes: list[Any] = []
    if topology is not None and topology.kind == "sentinel":
        for host, port in topology.nodes:
            probes.append(
                lambda host=host, port=port: redis.Redis(
                    host=host,
                    port=port,
                    ssl=True,
                    password=topology.sentinel_password,
                    socket_timeout=settings.redis_socket_timeout,
                    socket_connect_timeout=settings.redis_socket_timeout,
                    **tls.redis_kwargs(),
                )
            )
    probes.append(lambda: make_client(settings))
    for probe in probes:
        try:
            client = probe()
            try:
                client.ping()
            finally:
                client.close()
        except Exception as error:  # every failure, sorted below: only TLS ones refuse
            failure = handshake_failure(error, hosts_of(settings.redis_url))
            if failure is not None:
                raise failure from None


def settings_problems(settings: Any) -> list[str]:
    """Problems with the TLS settings of a :class:`~authsvc.config.Settings`."""
    url = settings.redis_url
    if not is_tls_url(url):
        given = [
            f"AUTHSVC_REDIS_TLS_{name.upper()}"
            for name in ("ca_file", "cert_file", "key_file")
            if getattr(settings, f"redis_tls_{name}")
        ]
        if given and url:
            return [
                f"{', '.join(given)} set, but AUTHSVC_REDIS_URL does not use TLS "
                "(rediss://, rediss+cluster:// or rediss+sentinel://)"
            ]
        return []
    try:
        tls = resolve(
            url,
            settings.redis_tls_ca_file,
            settings.redis_tls_cert_file,
            settings.redis_tls_key_file,
            settings.redis_tls_check_hostname,
        )
    except ValueError as error:
        return [f"AUTHSVC_REDIS_TLS_CHECK_HOSTNAME (or ssl_check_hostname): {error}"]
    return file_problems(tls) if tls is not None else []
