"""The OpenAPI 3.1 document, generated from the marshmallow schemas that validate requests.

Nothing here is hand-written YAML that could drift from the code:

* request bodies are the very schemas the views load (:mod:`authsvc.schemas`), answers
  are the strict response schemas next to them, wrapped in the ``{code, msg, data}``
  envelope;
* :data:`DOCS` says, per Flask endpoint, which schemas, which credentials and which
  error slugs apply; :func:`build_spec` walks ``app.url_map`` and raises
  :class:`UndocumentedRouteError` for a route without an entry, so a new endpoint
  cannot go undocumented;
* summaries are the views' docstrings, error descriptions the message catalogue.

Statuses are documented as served by default (``AUTHSVC_ENVELOPE_HTTP_STATUS=mirror``).
"""

from __future__ import annotations

import inspect
import mimetypes
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema
from werkzeug.routing import Rule

from authsvc.api import sdk
from authsvc.api.account import WEB_ROOT
from authsvc.cookies import CSRF_HEADER, REFRESH_COOKIE
from authsvc.errors import STATUS_BY_SLUG
from authsvc.messages import message
from authsvc.schemas import (
    ErrorEnvelopeSchema,
    IntrospectionSchema,
    JwkSetSchema,
    LoginSchema,
    PasswordChangeSchema,
    PrincipalSchema,
    ProbeSchema,
    RefreshSchema,
    SessionListSchema,
    TokenOperationSchema,
    TokenPairSchema,
    envelope,
)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"
# Werkzeug adds these to every rule; they are not operations of the API.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
UNDOCUMENTED_ENDPOINTS = frozenset({"static"})

# Errors any view that loads a JSON body can answer (Flask, marshmallow, MAX_CONTENT_LENGTH).
JSON_BODY_ERRORS = (
    "invalid_request",
    "unsupported_media_type",
    "payload_too_large",
    "validation_failed",
)
# A bug answers 500 in the envelope, on every route.
ALWAYS_ERRORS = ("internal_error",)
# Redis unreachable or too slow: 503 with Retry-After, nothing changed.
OUTAGE = "service_unavailable"

_ACCESS_ERRORS = (
    "token_missing",
    "token_invalid",
    "token_expired",
    "token_revoked",
    "wrong_token_type",
    "session_revoked",
    OUTAGE,
)
_ROTATION_ERRORS = (
    "token_invalid",
    "token_expired",
    "wrong_token_type",
    "refresh_reused",
    "session_expired",
    "session_revoked",
    "csrf_failed",
    OUTAGE,
)


@dataclass(frozen=True)
class Credentials:
    """What a caller presents: the security requirement, the errors it brings, extra headers."""

    security: tuple[dict[str, list[str]], ...] = ()
    errors: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()


PUBLIC = Credentials()
ACCESS_TOKEN = Credentials(({"bearerAuth": []},), _ACCESS_ERRORS)
# The IoT shape (Bearer refresh token) or the browser's HttpOnly cookie + CSRF header.
REFRESH_TOKEN = Credentials(
    ({"bearerAuth": []}, {"refreshCookie": []}), ("token_missing", *_ROTATION_ERRORS), ("Csrf",)
)
# POST /refresh: the token is in the JSON body (no scheme), or in the cookie.
REFRESH_BODY_OR_COOKIE = Credentials(({}, {"refreshCookie": []}), _ROTATION_ERRORS, ("Csrf",))
# POST /logout: the access token, or the refresh cookie + CSRF header.
ACCESS_TOKEN_OR_COOKIE = Credentials(
    ({"bearerAuth": []}, {"refreshCookie": []}), (*_ACCESS_ERRORS, "csrf_failed"), ("Csrf",)
)
# Resource servers (introspection, revocation): configured client id and secret.
CLIENT = Credentials(({"basicAuth": []},), ("invalid_client",))


@dataclass(frozen=True)
class Doc:
    """How one Flask endpoint is documented.

    ``response`` is the schema of ``data`` in the envelope (None: ``data`` is null), or
    of the whole body when ``enveloped`` is False. ``errors`` lists the slugs this
    endpoint answers besides those implied by its credentials, its JSON body and its
    path parameters.
    """

    response: type[Schema] | None = None
    request: type[Schema] | None = None
    request_media_types: tuple[str, ...] = (JSON,)
    credentials: Credentials = PUBLIC
    errors: tuple[str, ...] = ()
    media_types: tuple[str, ...] = (JSON,)
    enveloped: bool = True
    body_required: bool = True
    sets_cookies: bool = False
    summary: str = ""  # when the view has no docstring


def _web_media_types() -> tuple[str, ...]:
    """What the account page's assets are served as (derived from the files)."""
    types = {mimetypes.guess_type(path.name)[0] for path in WEB_ROOT.iterdir()}
    return tuple(sorted(t or "application/octet-stream" for t in types))


DOCS: dict[str, Doc] = {
    "health.healthz": Doc(ProbeSchema),
    "health.readyz": Doc(ProbeSchema, errors=(OUTAGE,)),
    "user.login": Doc(
        TokenPairSchema,
        LoginSchema,
        errors=("invalid_credentials", "account_disabled", "too_many_attempts", OUTAGE),
        sets_cookies=True,
    ),
    "user.refresh_from_header": Doc(TokenPairSchema, credentials=REFRESH_TOKEN, sets_cookies=True),
    "user.refresh_from_body": Doc(
        TokenPairSchema,
        RefreshSchema,
        credentials=REFRESH_BODY_OR_COOKIE,
        body_required=False,  # omitted when refreshing by cookie
        sets_cookies=True,
    ),
    "user.logout": Doc(credentials=ACCESS_TOKEN_OR_COOKIE, sets_cookies=True),
    "user.logout_all": Doc(credentials=ACCESS_TOKEN, sets_cookies=True),
    "user.me": Doc(PrincipalSchema, credentials=ACCESS_TOKEN),
    "user.sessions": Doc(SessionListSchema, credentials=ACCESS_TOKEN),
    "user.end_session": Doc(credentials=ACCESS_TOKEN),
    # A wrong old password is validation_failed and counts against the login throttle.
    "user.change_password": Doc(
        request=PasswordChangeSchema, credentials=ACCESS_TOKEN, errors=("too_many_attempts",)
    ),
    # RFC 7662 / RFC 7009 clients send a form; JSON works too.
    "token.introspect": Doc(
        IntrospectionSchema,
        TokenOperationSchema,
        request_media_types=(FORM, JSON),
        credentials=CLIENT,
        errors=(OUTAGE,),
    ),
    "token.revoke": Doc(
        request=TokenOperationSchema,
        request_media_types=(FORM, JSON),
        credentials=CLIENT,
        errors=(OUTAGE,),
    ),
    "account.page": Doc(media_types=(HTML,), enveloped=False),
    "account.asset": Doc(media_types=_web_media_types(), enveloped=False),
    "sdk.module": Doc(media_types=(sdk.JAVASCRIPT,), enveloped=False),
    "sdk.types": Doc(media_types=(sdk.TYPESCRIPT,), enveloped=False),
    "docs.openapi": Doc(enveloped=False),
    "docs.page": Doc(media_types=(HTML,), enveloped=False),
    "wellknown.jwks": Doc(JwkSetSchema, enveloped=False),
    "metrics": Doc(
        media_types=("text/plain",),
        enveloped=False,
        summary="Prometheus metrics of every worker (text exposition format).",
    ),
}


class UndocumentedRouteError(LookupError):
    """A route of the app has no entry in :data:`DOCS`."""


_PATH_ARGUMENT = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``; raises for a route not in DOCS."""
    spec = APISpec(
        title="authsvc",
        version=version("authsvc"),
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "JWT access tokens and rotating refresh tokens over a Redis revocation "
                "store. Every JSON answer is the `{code, msg, data}` envelope; errors carry "
                "`data.error`, a stable slug to branch on. HTTP statuses are documented "
                "as served by default: with `AUTHSVC_ENVELOPE_HTTP_STATUS=always200` every "
                "envelope comes with HTTP 200 and only `code` tells the status."
            )
        },
    )
    _add_components(spec)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        doc = DOCS.get(rule.endpoint)
        if doc is None:
            raise UndocumentedRouteError(
                f"route {rule.rule} (endpoint {rule.endpoint!r}) has no entry in "
                "authsvc.openapi.DOCS: document it there"
            )
        methods = sorted((rule.methods or set()) - IMPLICIT_METHODS)
        spec.path(
            path=_PATH_ARGUMENT.sub(r"{\g<name>}", rule.rule),
            operations={
                method.lower(): _operation(app, rule, doc, method, len(methods) > 1)
                for method in methods
            },
        )
    return spec.to_dict()


def _add_components(spec: APISpec) -> None:
    spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token; the refresh endpoints take a refresh token.",
        },
    )
    spec.components.security_scheme(
        "basicAuth",
        {
            "type": "http",
            "scheme": "basic",
            "description": "Client credentials of a resource server (introspection, revocation).",
        },
    )
    spec.components.security_scheme(
        "refreshCookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": REFRESH_COOKIE,
            "description": f"Cookie transport: the HttpOnly refresh cookie, with {CSRF_HEADER}.",
        },
    )
    spec.components.parameter(
        "RequestId",
        "header",
        {
            "name": "X-Request-ID",
            "description": "Echoed back and logged; when absent or malformed, one is generated.",
            "schema": {"type": "string"},
        },
    )
    spec.components.parameter(
        "Csrf",
        "header",
        {
            "name": CSRF_HEADER,
            "description": "Cookie transport: the value of the readable CSRF cookie (required).",
            "schema": {"type": "string"},
        },
    )
    spec.components.header(
        "X-Request-ID",
        {"description": "The request id.", "required": True, "schema": {"type": "string"}},
    )
    spec.components.header(
        "WWW-Authenticate",
        {"description": "RFC 6750 challenge.", "required": True, "schema": {"type": "string"}},
    )
    spec.components.header(
        "Retry-After",
        {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
    )
    spec.components.header(
        "Set-Cookie",
        {
            "description": "Cookie transport: sets (login, refresh) or clears (logout) cookies.",
            "schema": {"type": "string"},
        },
    )


def _operation(app: Flask, rule: Rule, doc: Doc, method: str, shared: bool) -> dict[str, Any]:
    docstring = inspect.getdoc(app.view_functions[rule.endpoint]) or doc.summary
    summary, _, description = docstring.partition("\n")
    path_parameters = [
        {
            "name": match["name"],
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if match["converter"] == "int" else {"type": "string"},
        }
        for match in _PATH_ARGUMENT.finditer(rule.rule)
    ]
    errors = {*ALWAYS_ERRORS, *doc.errors, *doc.credentials.errors}
    if doc.request is not None:
        errors.update(JSON_BODY_ERRORS)
    if path_parameters:
        errors.add("not_found")
    operation: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}" if shared else rule.endpoint,
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": summary,
        "parameters": [*path_parameters, "RequestId", *doc.credentials.parameters],
        "responses": {"200": _success_response(doc), **_error_responses(errors)},
    }
    if description.strip():
        operation["description"] = description.strip()
    if doc.credentials.security:
        operation["security"] = list(doc.credentials.security)
    if doc.request is not None:
        operation["requestBody"] = {
            "required": doc.body_required,
            "content": {
                media_type: {"schema": doc.request} for media_type in doc.request_media_types
            },
        }
    return operation


def _success_response(doc: Doc) -> dict[str, Any]:
    schema: Any
    if doc.enveloped:
        schema = envelope(doc.response)
    elif doc.response is not None:
        schema = doc.response
    else:
        schema = {"type": "object"} if doc.media_types == (JSON,) else {"type": "string"}
    headers = {"X-Request-ID": "X-Request-ID"}
    if doc.sets_cookies:
        headers["Set-Cookie"] = "Set-Cookie"
    return {
        "description": "Success." if doc.enveloped else "Success (not in the envelope).",
        "headers": headers,
        "content": {media_type: {"schema": schema} for media_type in doc.media_types},
    }


def _error_responses(slugs: set[str]) -> dict[str, Any]:
    """One response per status, its ``data.error`` narrowed to the slugs documented."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for slug in sorted(slugs):
        by_status[STATUS_BY_SLUG[slug]].append(slug)
    responses = {}
    for status, status_slugs in sorted(by_status.items()):
        headers = {"X-Request-ID": "X-Request-ID"}
        if status == 401:
            headers["WWW-Authenticate"] = "WWW-Authenticate"
        if status in (429, 503):
            headers["Retry-After"] = "Retry-After"
        narrowed = {
            "type": "object",
            "properties": {
                "code": {"const": status},
                "data": {"type": "object", "properties": {"error": {"enum": status_slugs}}},
            },
        }
        responses[str(status)] = {
            "description": " ".join(f"`{slug}`: {message(slug)}" for slug in status_slugs),
            "headers": headers,
            "content": {JSON: {"schema": {"allOf": [ErrorEnvelopeSchema, narrowed]}}},
        }
    return responses
