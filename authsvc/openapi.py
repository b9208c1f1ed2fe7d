"""The OpenAPI 3.1 document, generated from the marshmallow schemas that validate requests.

Nothing here is hand-written YAML that could drift from the code:

* request bodies are the very schemas the views load (:mod:`authsvc.schemas`), answers
  are the strict response schemas next to them, wrapped in the ``{code, msg, data}``
  envelope;
* :data:`DOCS` says, per Flask endpoint, which schemas, which credentials and which
  error slugs apply; :func:`build_spec` walks ``app.url_map`` and raises
  :class:`UndocumentedRouteError` for a route without an entry, so a new endpoint
  cannot go undocumented;
* summaries and descriptions are the views' docstrings, turned into CommonMark
  (:func:`markdown`); error descriptions and examples come from the message catalogue;
* every JSON answer and request body has an example (:data:`DATA_EXAMPLES`,
  :data:`REQUEST_EXAMPLES`), the login one being the quick start's demo account, so
  "Try it out" on ``/docs`` works as it stands.

Statuses are documented as served by default (``AUTHSVC_ENVELOPE_HTTP_STATUS=mirror``).
"""

from __future__ import annotations

import inspect
import mimetypes
import re
from collections import defaultdict
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema
from werkzeug.routing import Rule

from authsvc import docs_ui
from authsvc.api import sdk
from authsvc.api.account import WEB_ROOT
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.embedded import DEMO_PASSWORD, DEMO_USERNAME
from authsvc.messages import message
from authsvc.oauth_schemas import (
    AuthorizationServerMetadataSchema,
    ClientSecretRequestSchema,
    ClientSecretSchema,
)
from authsvc.openapi_device import DEVICE_DATA_EXAMPLES, DEVICE_REQUEST_EXAMPLES, device_docs
from authsvc.openapi_dpop import (
    RESOURCE,
    TOKEN,
    add_dpop_components,
    dpop_errors,
    nonce_header,
    status_of,
)
from authsvc.openapi_model import FORM, JSON, Credentials, Doc
from authsvc.openapi_oauth import (
    OAUTH_DATA_EXAMPLES,
    OAUTH_DOCS,
    OAUTH_REQUEST_EXAMPLES,
    oauth_error_responses,
)
from authsvc.schemas import (
    BulkCreateResultSchema,
    BulkCreateSchema,
    ClientListSchema,
    ClientSchema,
    ClientUpdateSchema,
    ErrorEnvelopeSchema,
    IntrospectionSchema,
    JwkSetSchema,
    LoginSchema,
    NewClientSchema,
    PasswordChangeSchema,
    PasswordResetSchema,
    PrincipalSchema,
    ProbeSchema,
    RefreshSchema,
    SessionListSchema,
    TokenOperationSchema,
    TokenPairSchema,
    UserDetailSchema,
    UserPageSchema,
    UserQuerySchema,
    envelope,
)

OPENAPI_VERSION = "3.1.0"
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
    "transport_not_allowed",  # the session's client does not allow this transport
    OUTAGE,
)


# How a browser calls the cookie-transport operations (the account page does this).
_COOKIE_HOW = (
    "**Cookie transport** (browser front-ends): after a login with "
    f'`"transport": "cookie"` the browser holds the HttpOnly `{REFRESH_COOKIE}` cookie '
    "and sends it by itself. Send no `Authorization` header, and copy the value of the "
    f"readable `{CSRF_COOKIE}` cookie into the `{CSRF_HEADER}` header. On the `/docs` page "
    "that header is added for you when the Authorize dialog holds no Bearer token (log "
    "out there first)."
)

ACCESS_TOKEN = Credentials(
    ({"bearerAuth": []},),
    _ACCESS_ERRORS,
    how=(
        "Send the access token of a login as `Authorization: Bearer <access_token>` "
        "(a DPoP-bound one as `Authorization: DPoP <access_token>` with a `DPoP` proof)."
    ),
    dpop=RESOURCE,
)
# The IoT shape (Bearer refresh token) or the browser's HttpOnly cookie + CSRF header.
REFRESH_TOKEN = Credentials(
    ({"bearerAuth": []}, {"refreshCookie": []}),
    ("token_missing", *_ROTATION_ERRORS),
    ("Csrf",),
    how=(
        "**Device transport**: send the refresh token (not the access token) as "
        "`Authorization: Bearer <refresh_token>`.\n\n" + _COOKIE_HOW
    ),
    dpop=TOKEN,
)
# POST /refresh: the token is in the JSON body (no scheme), or in the cookie.
REFRESH_BODY_OR_COOKIE = Credentials(
    ({}, {"refreshCookie": []}),
    _ROTATION_ERRORS,
    ("Csrf",),
    how=(
        '**Device transport**: send `{"refresh_token": ...}` as the body (with the '
        "cookie transport, send no body).\n\n" + _COOKIE_HOW
    ),
    dpop=TOKEN,
)
# POST /logout: the access token, or the refresh cookie + CSRF header.
ACCESS_TOKEN_OR_COOKIE = Credentials(
    ({"bearerAuth": []}, {"refreshCookie": []}),
    (*_ACCESS_ERRORS, "csrf_failed"),
    ("Csrf",),
    how=(
        "**Device transport**: send the access token as "
        "`Authorization: Bearer <access_token>`.\n\n" + _COOKIE_HOW
    ),
    dpop=RESOURCE,
)
# /api/v1/admin: an access token with the admin role and scope (auth.authorize_admin).
ADMIN_TOKEN = Credentials(
    ({"bearerAuth": []},),
    (*_ACCESS_ERRORS, "forbidden", "insufficient_scope"),
    how=(
        "Send the access token of a user with the `admin` role, logged in through a "
        "registered client allowing the `admin` scope and asking for it (`client_id`, "
        '`"scope": "admin"`), as `Authorization: Bearer <access_token>` '
        "(`authsvc user add NAME --role admin`, `authsvc client add admin-console "
        "--name Admin --scope admin --scope profile`). A token without the `admin` "
        "scope (e.g. from the built-in `default` client) is 403 `insufficient_scope`; a "
        "token of a user without the role is 403 `forbidden`. Every action is audited "
        "with the acting admin's user id (`admin_user_id`)."
    ),
    dpop=RESOURCE,
)
# Resource servers (introspection, revocation): configured client id and secret.
CLIENT = Credentials(({"basicAuth": []},), ("invalid_client",))


# -- Examples (shown by /docs; tests check each against its schema) ---------------------
# Tokens as the service issues them (signed with a throwaway test secret; expired).
_ACCESS_JWT_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTIzYjM2MzRlMjc1MSIsInR5cCI6ImF0K2p3dCJ9."
    "eyJzdWIiOiI2YjBkNTM1NDQ2YWQ0NWU0ODYyNmZlMDUzN2U5ZDRhZCIsInR5cGUiOiJhY2Nlc3MifQ."
    "AvdJtfA_89ZBOePSs_Uw2BzflT5KHxCbIEy3AduMUME"
)
_REFRESH_JWT_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTIzYjM2MzRlMjc1MSIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiI2YjBkNTM1NDQ2YWQ0NWU0ODYyNmZlMDUzN2U5ZDRhZCIsInR5cGUiOiJyZWZyZXNoIn0."
    "OuC-hdIubuuFmJ_wSIq-I4odoSUNHwWuhqZ0wIdmDcA"
)
_EXAMPLE_USER_ID = "6b0d535446ad45e48626fe0537e9d4ad"
_EXAMPLE_SESSION_ID = "un4p_Sr14Ovzcb3TfkaMRw"
_EXAMPLE_TIME = 1767225600  # Unix seconds
# One session as listed (GET /sessions, the admin user detail).
_EXAMPLE_SESSION: dict[str, Any] = {
    "session_id": _EXAMPLE_SESSION_ID,
    "device_id": "thermostat-42",
    "user_agent": "thermostat-fw/2.1",
    "ip": "192.0.2.10",
    "created": _EXAMPLE_TIME,
    "last_refresh": _EXAMPLE_TIME + 3600,
    "expires": _EXAMPLE_TIME + 2592000,
    "client_id": "default",
    "bound": False,
}

REQUEST_EXAMPLES: dict[type[Schema], dict[str, Any]] = {
    LoginSchema: {
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
        "device_id": "thermostat-42",
    },
    RefreshSchema: {"refresh_token": _REFRESH_JWT_EXAMPLE},
    PasswordChangeSchema: {
        "old_password": DEMO_PASSWORD,
        "new_password": "a longer passphrase 2026",
    },
    TokenOperationSchema: {"token": _ACCESS_JWT_EXAMPLE, "token_type_hint": "access_token"},
    BulkCreateSchema: {
        "users": [
            {"username": "thermostat-0001", "password": "9f2c4e7a-initial"},
            {"username": "thermostat-0002", "password": "1b8d0c3f-initial", "roles": ["device"]},
            {"username": "Thermostat-0001", "password": "5e6a7b8c-initial"},
            {"username": "thermostat 0003", "password": "3c4d5e6f-initial"},
        ]
    },
    PasswordResetSchema: {"password": "a new passphrase 2026"},
    NewClientSchema: {
        "client_id": "admin-console",
        "name": "Admin console",
        "scopes": ["admin", "profile"],
        "transports": ["body"],
        "access_ttl": 300,
    },
    ClientUpdateSchema: {"scopes": ["profile"], "access_ttl": None},
}

_ADMIN_CONSOLE_EXAMPLE = {
    "client_id": "admin-console",
    "name": "Admin console",
    "scopes": ["admin", "profile"],
    "transports": ["body"],
    "grants": [],
    "access_ttl": 300,
    "refresh_ttl": None,
    "builtin": False,
    "dpop": "optional",
}

DATA_EXAMPLES: dict[type[Schema], Any] = {
    ProbeSchema: {"status": "up"},
    TokenPairSchema: {
        "access_token": _ACCESS_JWT_EXAMPLE,
        "refresh_token": _REFRESH_JWT_EXAMPLE,
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_expires_in": 2592000,
        "session_id": _EXAMPLE_SESSION_ID,
        "scope": "profile",
    },
    PrincipalSchema: {
        "user_id": _EXAMPLE_USER_ID,
        "username": DEMO_USERNAME,
        "roles": [],
        "session_id": _EXAMPLE_SESSION_ID,
        "client_id": "default",
        "scope": "profile",
        "bound": False,
        "cnf": None,
    },
    SessionListSchema: {"sessions": [{**_EXAMPLE_SESSION, "current": True}]},
    BulkCreateResultSchema: {
        "created": 2,
        "failed": 2,
        "results": [
            {
                "index": 0,
                "status": "created",
                "username": "thermostat-0001",
                "user_id": "0c5e3f1a9b7d4e2f8a6c1d3b5e7f9a0b",
            },
            {
                "index": 1,
                "status": "created",
                "username": "thermostat-0002",
                "user_id": "7d1b3e5f0a2c4e6a8b0d2f4a6c8e0b1d",
            },
            {
                "index": 2,
                "status": "error",
                "username": "thermostat-0001",
                "error": "username_taken",
            },
            {
                "index": 3,
                "status": "error",
                "username": None,
                "error": "validation_failed",
                "fields": {
                    "username": [
                        "username must be 1-64 characters of a-z 0-9 . _ @ + - "
                        "(after NFKC normalisation and case folding)"
                    ]
                },
            },
        ],
    },
    UserPageSchema: {
        "users": [
            {
                "user_id": _EXAMPLE_USER_ID,
                "username": "thermostat-0001",
                "roles": ["device"],
                "disabled": False,
            }
        ],
        "next_cursor": "dGhlcm1vc3RhdC0wMDAxIDZiMGQ1MzU0NDZhZDQ1ZTQ4NjI2ZmUwNTM3ZTlkNGFk",
    },
    UserDetailSchema: {
        "user_id": _EXAMPLE_USER_ID,
        "username": "thermostat-0001",
        "roles": ["device"],
        "disabled": False,
        "sessions": [{**_EXAMPLE_SESSION, "device_id": "thermostat-0001", "current": False}],
    },
    ClientSchema: _ADMIN_CONSOLE_EXAMPLE,
    ClientListSchema: {
        "clients": [
            {
                "client_id": "default",
                "name": "Default (logins without client_id)",
                "scopes": ["profile"],
                "transports": ["body", "cookie"],
                "grants": [],
                "access_ttl": None,
                "refresh_ttl": None,
                "builtin": True,
                "dpop": "optional",
            },
            _ADMIN_CONSOLE_EXAMPLE,
        ]
    },
    IntrospectionSchema: {
        "active": True,
        "token_type": "access_token",
        "sub": _EXAMPLE_USER_ID,
        "username": DEMO_USERNAME,
        "sid": _EXAMPLE_SESSION_ID,
        "jti": "l9tp6z0jf-MQTjg4zVzQxw",
        "roles": [],
        "client_id": "default",
        "azp": "default",
        "scope": "profile",
        "iat": _EXAMPLE_TIME,
        "nbf": _EXAMPLE_TIME,
        "exp": _EXAMPLE_TIME + 900,
        "iss": "authsvc",
        "aud": "authsvc",
    },
    JwkSetSchema: {
        "keys": [
            {
                "kty": "OKP",
                "kid": "20260101000000-1a2b3c4d",
                "alg": "EdDSA",
                "use": "sig",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }
        ]
    },
}


def _web_media_types() -> tuple[str, ...]:
    """What the account page's assets are served as (derived from the files)."""
    types = {mimetypes.guess_type(path.name)[0] for path in WEB_ROOT.iterdir()}
    return tuple(sorted(t or "application/octet-stream" for t in types))


DOCS: dict[str, Doc] = {
    "health.healthz": Doc(ProbeSchema),
    "health.readyz": Doc(ProbeSchema, errors=(OUTAGE,), example={"status": "ready"}),
    "user.login": Doc(
        TokenPairSchema,
        LoginSchema,
        errors=(
            "invalid_credentials",
            "account_disabled",
            "too_many_attempts",
            "unknown_client",
            "invalid_scope",
            "transport_not_allowed",
            "dpop_required",
            OUTAGE,
        ),
        sets_cookies=True,
        dpop=TOKEN,
    ),
    "user.refresh_from_header": Doc(TokenPairSchema, credentials=REFRESH_TOKEN, sets_cookies=True),
    "user.refresh_from_body": Doc(
        TokenPairSchema,
        RefreshSchema,
        credentials=REFRESH_BODY_OR_COOKIE,
        errors=("invalid_scope",),
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
    "admin.create_users": Doc(
        BulkCreateResultSchema,
        BulkCreateSchema,
        credentials=ADMIN_TOKEN,
        errors=("too_many_rows", OUTAGE),
    ),
    "admin.list_users": Doc(
        UserPageSchema,
        query=UserQuerySchema,
        credentials=ADMIN_TOKEN,
        errors=("validation_failed", OUTAGE),
    ),
    "admin.show_user": Doc(UserDetailSchema, credentials=ADMIN_TOKEN),
    "admin.delete_user": Doc(credentials=ADMIN_TOKEN),
    "admin.disable_user": Doc(credentials=ADMIN_TOKEN),
    "admin.enable_user": Doc(credentials=ADMIN_TOKEN),
    "admin.reset_password": Doc(request=PasswordResetSchema, credentials=ADMIN_TOKEN),
    "admin.end_sessions": Doc(credentials=ADMIN_TOKEN),
    "admin.list_clients": Doc(ClientListSchema, credentials=ADMIN_TOKEN),
    "admin.create_client": Doc(ClientSchema, NewClientSchema, credentials=ADMIN_TOKEN),
    "admin.show_client": Doc(ClientSchema, credentials=ADMIN_TOKEN),
    "admin.update_client": Doc(ClientSchema, ClientUpdateSchema, credentials=ADMIN_TOKEN),
    # The built-in client cannot be deleted: validation_failed on client_id.
    "admin.delete_client": Doc(credentials=ADMIN_TOKEN, errors=("validation_failed",)),
    "account.page": Doc(media_types=(HTML,), enveloped=False),
    "account.asset": Doc(media_types=_web_media_types(), enveloped=False),
    "sdk.module": Doc(media_types=(sdk.JAVASCRIPT,), enveloped=False),
    "sdk.build_file": Doc(media_types=(sdk.JAVASCRIPT, sdk.TYPESCRIPT), enveloped=False),
    "sdk.types": Doc(media_types=(sdk.TYPESCRIPT,), enveloped=False),
    "docs.openapi": Doc(enveloped=False),
    "docs.page": Doc(media_types=(HTML,), enveloped=False),
    "docs.asset": Doc(media_types=docs_ui.asset_media_types(), enveloped=False),
    "wellknown.jwks": Doc(JwkSetSchema, enveloped=False),
    "wellknown.oauth_metadata": Doc(
        AuthorizationServerMetadataSchema, enveloped=False, errors=(OUTAGE,)
    ),
    "admin.issue_client_secret": Doc(
        ClientSecretSchema,
        ClientSecretRequestSchema,
        credentials=ADMIN_TOKEN,
        body_required=False,
    ),
    "admin.remove_client_secret": Doc(credentials=ADMIN_TOKEN, errors=("validation_failed",)),
    "metrics": Doc(
        media_types=("text/plain",),
        enveloped=False,
        summary="Prometheus metrics of every worker (text exposition format).",
    ),
}


REQUEST_EXAMPLES.update(OAUTH_REQUEST_EXAMPLES)
REQUEST_EXAMPLES.update(DEVICE_REQUEST_EXAMPLES)
DATA_EXAMPLES.update(OAUTH_DATA_EXAMPLES)
DATA_EXAMPLES.update(DEVICE_DATA_EXAMPLES)
DOCS.update(OAUTH_DOCS)
DOCS.update(device_docs(ACCESS_TOKEN, ADMIN_TOKEN, OUTAGE))


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
                "envelope comes with HTTP 200 and only `code` tells the status.\n\n"
                "**Trying it out on `/docs`**: run `POST /api/v1/user/login` (its example is "
                "the quick start's demo account). A successful login authorizes the page "
                "with its `access_token`, so the protected operations (lock icon) work next; "
                "the **Authorize** button takes any other Bearer token, e.g. a "
                "`refresh_token` for `GET /api/v1/user/refresh`. Tokens stay in the page's "
                "memory only."
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
            "description": (
                "An access token (`data.access_token` of a login); the refresh "
                "operations take a refresh token (`data.refresh_token`)."
            ),
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
            "description": (
                "Cookie transport: the HttpOnly refresh cookie, set by a login with "
                '`"transport": "cookie"` and sent by the browser itself (nothing to enter '
                f"here), with the `{CSRF_HEADER}` header."
            ),
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
            "description": (
                f"Cookie transport: the value of the readable `{CSRF_COOKIE}` cookie "
                "(required with the cookie, ignored otherwise)."
            ),
            "schema": {"type": "string"},
        },
    )
    add_dpop_components(spec)
    spec.components.header(
        "X-Request-ID",
        {"description": "The request id.", "required": True, "schema": {"type": "string"}},
    )
    spec.components.header(
        "WWW-Authenticate",
        {
            "description": "RFC 6750 (Bearer) or RFC 9449 (DPoP) challenge.",
            "required": True,
            "schema": {"type": "string"},
        },
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


_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def markdown(text: str) -> str:
    """Docstring markup as CommonMark: reST ``literal`` and :role:`target` become `code`."""
    return _RST_ROLE.sub(r"`\1`", _RST_LITERAL.sub(r"`\1`", text))


def plain(text: str) -> str:
    """Markdown as plain text (an operation's summary is not rendered): no code marks."""
    return _CODE_SPAN.sub(r"\1", markdown(text))


def _operation(app: Flask, rule: Rule, doc: Doc, method: str, shared: bool) -> dict[str, Any]:
    docstring = inspect.getdoc(app.view_functions[rule.endpoint]) or doc.summary
    path_parameters = [
        {
            "name": match["name"],
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if match["converter"] == "int" else {"type": "string"},
        }
        for match in _PATH_ARGUMENT.finditer(rule.rule)
    ]
    dpop = doc.dpop or doc.credentials.dpop
    errors = {*ALWAYS_ERRORS, *doc.errors, *doc.credentials.errors, *dpop_errors(dpop)}
    if doc.request is not None:
        errors.update(JSON_BODY_ERRORS)
    if path_parameters:
        errors.add("not_found")
    operation: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}" if shared else rule.endpoint,
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": plain(docstring.partition("\n")[0]),
        # The whole docstring (the summary renders code as code here), then how to call.
        "description": "\n\n".join(filter(None, (markdown(docstring), doc.credentials.how))),
        "parameters": [
            *path_parameters,
            *([{"in": "query", "schema": doc.query}] if doc.query else []),
            "RequestId",
            *doc.credentials.parameters,
            *(["DPoP"] if dpop else []),
        ],
        "responses": {
            "200": _success_response(doc),
            **(
                oauth_error_responses(errors, doc.oauth_errors)
                if doc.oauth
                else _error_responses(errors, doc.request, dpop)
            ),
        },
    }
    if doc.credentials.security:
        operation["security"] = list(doc.credentials.security)
    if doc.request is not None:
        operation["requestBody"] = {
            "required": doc.body_required,
            "content": {
                media_type: {"schema": doc.request, "example": REQUEST_EXAMPLES[doc.request]}
                for media_type in doc.request_media_types
            },
        }
    return operation


def _success_response(doc: Doc) -> dict[str, Any]:
    schema: Any
    example: Any = doc.example
    if example is None and doc.response is not None:
        example = DATA_EXAMPLES[doc.response]
    if doc.enveloped:
        schema = envelope(doc.response)
        example = {"code": 200, "msg": message("ok"), "data": example}
    elif doc.response is not None:
        schema = doc.response
    else:
        schema = {"type": "object"} if doc.media_types == (JSON,) else {"type": "string"}
    headers = {"X-Request-ID": "X-Request-ID"}
    if doc.sets_cookies:
        headers["Set-Cookie"] = "Set-Cookie"
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {
        "description": "Success." if doc.enveloped else "Success (not in the envelope).",
        "headers": headers,
        "content": dict.fromkeys(doc.media_types, media),
    }


def _error_example(slug: str, request: type[Schema] | None, status: int) -> dict[str, Any]:
    data: dict[str, Any] = {"error": slug}
    if slug == "validation_failed" and request is not None:
        name, field = next(iter(request().fields.items()))
        data["fields"] = {field.data_key or name: ["Missing data for required field."]}
    return {
        "summary": slug,
        "value": {"code": status, "msg": message(slug), "data": data},
    }


def _error_responses(
    slugs: set[str], request: type[Schema] | None, dpop: str = ""
) -> dict[str, Any]:
    """One response per status, its ``data.error`` narrowed to the slugs documented.

    Each slug has an example answer; with ``validation_failed`` it names a field of
    ``request`` (the operation's body schema).
    """
    by_status: dict[int, list[str]] = defaultdict(list)
    for slug in sorted(slugs):
        by_status[status_of(slug, dpop)].append(slug)
    responses = {}
    for status, status_slugs in sorted(by_status.items()):
        headers = {"X-Request-ID": "X-Request-ID"}
        if status == 401:
            headers["WWW-Authenticate"] = "WWW-Authenticate"
        if status in (429, 503):
            headers["Retry-After"] = "Retry-After"
        headers.update(nonce_header(status_slugs))
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
            "content": {
                JSON: {
                    "schema": {"allOf": [ErrorEnvelopeSchema, narrowed]},
                    "examples": {
                        slug: _error_example(slug, request, status) for slug in status_slugs
                    },
                }
            },
        }
    return responses
