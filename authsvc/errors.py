"""Domain errors and the one path that turns any error into the ``{code, msg, data}`` envelope."""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis.exceptions
from flask import Flask, Response, current_app, g, jsonify, request
from marshmallow import ValidationError
from redis.exceptions import RedisClusterException
from werkzeug.datastructures import LanguageAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

from authsvc.events import emit
from authsvc.messages import SUPPORTED_LANGUAGES, message
from authsvc.oauth_errors import (
    OAuthError,
    is_oauth_path,
    oauth_error_for_slug,
    oauth_error_response,
)

log = logging.getLogger("authsvc.errors")

STATUS_BY_SLUG: dict[str, int] = {
    "invalid_request": 400,
    "validation_failed": 422,
    "unsupported_media_type": 415,
    "payload_too_large": 413,
    "method_not_allowed": 405,
    "not_found": 404,
    "invalid_credentials": 401,
    "invalid_client": 401,
    "unknown_client": 400,
    "invalid_scope": 400,
    "transport_not_allowed": 400,
    "insufficient_scope": 403,
    "forbidden": 403,
    "account_disabled": 403,
    "username_taken": 409,
    "too_many_rows": 413,
    "too_many_attempts": 429,
    "token_missing": 401,
    "token_invalid": 401,
    "token_expired": 401,
    "token_revoked": 401,
    "wrong_token_type": 401,
    "csrf_failed": 403,
    # DPoP (RFC 9449): 401 at a resource, 400 at login and refresh (the token endpoint).
    "invalid_dpop_proof": 401,
    "use_dpop_nonce": 401,
    "dpop_required": 400,
    "refresh_reused": 401,
    "session_revoked": 401,
    "session_expired": 401,
    "device_code_unknown": 400,
    "device_code_used": 409,
    # RFC 8628 section 3.5: the device flow's answers on the token endpoint.
    "unauthorized_client": 400,
    "authorization_pending": 400,
    "slow_down": 400,
    "access_denied": 400,
    "expired_token": 400,
    "invalid_grant": 400,
    "service_unavailable": 503,
    "internal_error": 500,
}

_SLUG_BY_HTTP_STATUS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# RFC 6750 section 3.1: a request with no credentials gets a bare challenge; a bad
# token gets error="invalid_token". Login failures are not about a bearer token.
_BARE_CHALLENGE_SLUGS = {"token_missing", "invalid_credentials"}
_DPOP_SLUGS = {"invalid_dpop_proof", "use_dpop_nonce"}
DPOP_ALGS = "ES256 EdDSA RS256"  # authsvc.dpop.ALGORITHMS, spelled for the challenge

# Redis being unreachable, timing out, loading, or failing over to a read-only replica
# is an outage (503), not a bug; anything else Redis says is a bug in our scripts (500).
# On a Cluster: a slot without a master (CLUSTERDOWN, MASTERDOWN), a slot being moved
# (TRYAGAIN) or not covered yet are outages too.
REDIS_OUTAGE_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)


class AuthError(Exception):
    """A failure with a stable machine-readable slug; its HTTP status comes from the slug."""

    def __init__(
        self,
        slug: str,
        *,
        retry_after: int | None = None,
        fields: dict[str, Any] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if slug not in STATUS_BY_SLUG:
            raise ValueError(f"unknown error slug {slug!r}")
        super().__init__(slug)
        self.slug = slug
        # ``status`` overrides the slug's only where an RFC says so (DPoP at the token
        # endpoint: 400 instead of 401).
        self.status = status or STATUS_BY_SLUG[slug]
        self.retry_after = retry_after
        self.fields = fields
        self.headers = headers


@functools.lru_cache(maxsize=256)
def language_for(accept_language: str | None, default: str) -> str:
    """The answer's language: Accept-Language's best supported match, else ``default``.

    Firmware that sends none gets the configured default (zh reproduces the seed API's
    "请求成功"). Cached: a fleet sends a handful of distinct header values.
    """
    accepted = parse_accept_header(accept_language, LanguageAccept)
    return accepted.best_match(SUPPORTED_LANGUAGES, default=default) or default


def _language() -> str:
    default = current_app.extensions["authsvc"].settings.default_language
    return language_for(request.headers.get("Accept-Language"), default)


def ok_envelope(data: Any, language: str) -> dict[str, Any]:
    """The success envelope's content: code 200, msg "ok" in ``language``."""
    return {"code": 200, "msg": message("ok", language), "data": data}


def ok(data: Any) -> Response:
    """The success envelope: code 200, msg "ok" in the caller's language."""
    return jsonify(ok_envelope(data, _language()))


def error_response(
    slug: str,
    *,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    status: int | None = None,
) -> Response:
    """Build the error envelope for ``slug``; the only place an error body is made.

    On the plain OAuth paths (``/oauth/...``) the answer is RFC 6749 JSON instead.
    """
    if is_oauth_path(request.path):
        return oauth_error_for_slug(slug, fields=fields, headers=headers)
    status = status or STATUS_BY_SLUG[slug]
    data: dict[str, Any] = {"error": slug}
    if fields:
        data["fields"] = fields
    response = jsonify({"code": status, "msg": message(slug, _language()), "data": data})
    settings = current_app.extensions["authsvc"].settings
    response.status_code = 200 if settings.always_200 else status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if slug == "invalid_client":
        # Resource servers authenticate with HTTP Basic (RFC 7662 section 2.1).
        response.headers["WWW-Authenticate"] = 'Basic realm="authsvc"'
    elif slug == "insufficient_scope":
        # RFC 6750 section 3.1: a valid token without the scope the resource needs.
        response.headers["WWW-Authenticate"] = 'Bearer realm="authsvc", error="insufficient_scope"'
    elif status == 401 and (slug in _DPOP_SLUGS or g.get("dpop_scheme")):
        # RFC 9449 section 7.1: the DPoP challenge names the accepted algorithms.
        error = slug if slug in _DPOP_SLUGS else "invalid_token"
        response.headers["WWW-Authenticate"] = (
            f'DPoP algs="{DPOP_ALGS}", error="{error}", error_description="{slug}"'
        )
    elif status == 401:
        realm = 'Bearer realm="authsvc"'
        response.headers["WWW-Authenticate"] = (
            realm
            if slug in _BARE_CHALLENGE_SLUGS
            else f'{realm}, error="invalid_token", error_description="{slug}"'
        )
    return response


def _handle_auth_error(error: AuthError) -> Response:
    headers = dict(error.headers or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return error_response(error.slug, fields=error.fields, headers=headers, status=error.status)


def _handle_oauth_error(error: OAuthError) -> Response:
    return oauth_error_response(error.error, error.description, error.status)


def _encodable(messages: Any) -> Any:
    r"""``messages`` with every key made UTF-8 encodable.

    An unknown field is reported under its own name, which comes from the client and
    may hold a lone surrogate; written as is, it would make the answer unencodable
    (a 500). It is shown escaped instead (``\ud800``).
    """
    if not isinstance(messages, dict):
        return messages
    return {
        str(key).encode("utf-8", "backslashreplace").decode("utf-8"): _encodable(value)
        for key, value in messages.items()
    }


def validation_messages(error: ValidationError) -> dict[str, Any]:
    """The messages of ``error`` per field (``_schema`` for the whole), safe to encode."""
    messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    return _encodable(messages)


def _handle_validation_error(error: ValidationError) -> Response:
    return error_response("validation_failed", fields=validation_messages(error))


def _handle_http_exception(error: HTTPException) -> Response:
    slug = _SLUG_BY_HTTP_STATUS.get(error.code or 500)
    if slug is None:
        slug = "internal_error" if (error.code or 500) >= 500 else "invalid_request"
    headers = {}
    if error.code == 405:
        # Keep Werkzeug's Allow header (RFC 9110 requires it on 405).
        allow = error.get_response().headers.get("Allow")
        if allow:
            headers["Allow"] = allow
    return error_response(slug, headers=headers)


def _handle_redis_outage(error: Exception) -> Response:
    emit("redis_error", kind=type(error).__name__)
    log.warning(
        "redis unavailable (%s) request_id=%s", type(error).__name__, g.get("request_id", "-")
    )
    return error_response("service_unavailable", headers={"Retry-After": "1"})


def _handle_cluster_client_error(error: RedisClusterException) -> Response:
    # redis-py raises its bare cluster exception both for misuse (a bug: 500) and, when
    # no node answers while it reloads the slot map, with the connection error as cause.
    if isinstance(error.__cause__, REDIS_OUTAGE_ERRORS):
        return _handle_redis_outage(error)
    return _handle_unexpected(error)


def _handle_unexpected(error: Exception) -> Response:
    # The traceback goes to the log with the request id; the client sees only the envelope.
    log.exception("unhandled error request_id=%s", g.get("request_id", "-"))
    return error_response("internal_error")


def register_error_handlers(app: Flask) -> None:
    """Route every error, ours, marshmallow's, Werkzeug's, Redis's or a bug, to the envelope."""
    app.register_error_handler(AuthError, _handle_auth_error)
    app.register_error_handler(OAuthError, _handle_oauth_error)
    app.register_error_handler(ValidationError, _handle_validation_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    for outage in REDIS_OUTAGE_ERRORS:
        app.register_error_handler(outage, _handle_redis_outage)
    app.register_error_handler(RedisClusterException, _handle_cluster_client_error)
    app.register_error_handler(Exception, _handle_unexpected)
