"""What the OpenAPI document says per endpoint: the :data:`DOCS` table and its credentials.

Each Flask endpoint has one :class:`~authsvc.openapi_model.Doc` here: its request and answer
schemas, the credentials it takes (:data:`ACCESS_TOKEN`, :data:`REFRESH_TOKEN`, ...) and the
error slugs it can answer. The builder (:mod:`authsvc.openapi`) raises for a route with no
entry, so a new endpoint cannot go undocumented.
"""

from __future__ import annotations

import mimetypes

from authsvc import docs_ui
from authsvc.api import sdk
from authsvc.api.account import WEB_ROOT
from authsvc.cookies import CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from authsvc.oauth_schemas import (
    AuthorizationServerMetadataSchema,
    ClientSecretRequestSchema,
    ClientSecretSchema,
)
from authsvc.openapi_device import device_docs
from authsvc.openapi_dpop import RESOURCE, TOKEN
from authsvc.openapi_model import FORM, JSON, Credentials, Doc
from authsvc.openapi_oauth import OAUTH_DOCS
from authsvc.response_schemas import (
    BulkCreateResultSchema,
    ClientListSchema,
    ClientSchema,
    IntrospectionSchema,
    JwkSetSchema,
    PrincipalSchema,
    ProbeSchema,
    SessionListSchema,
    TokenPairSchema,
    UserDetailSchema,
    UserPageSchema,
)
from authsvc.schemas import (
    BulkCreateSchema,
    ClientUpdateSchema,
    LoginSchema,
    NewClientSchema,
    PasswordChangeSchema,
    PasswordResetSchema,
    RefreshSchema,
    TokenOperationSchema,
    UserQuerySchema,
)

HTML = "text/html"

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


DOCS.update(OAUTH_DOCS)
DOCS.update(device_docs(ACCESS_TOKEN, ADMIN_TOKEN, OUTAGE))
