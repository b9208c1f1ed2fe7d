"""The OpenAPI pieces of the plain OAuth endpoints: RFC 6749 errors, examples, credentials.

:mod:`authsvc.openapi` documents ``/oauth/*`` and the RFC 8414 document with
``Doc(..., oauth=True)``: their answers are plain JSON and their errors
``{"error", "error_description"}`` (:mod:`authsvc.oauth_errors`), documented here
per status, one example per RFC error code.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from marshmallow import Schema

from authsvc.oauth_errors import OAUTH_ERRORS
from authsvc.oauth_schemas import (
    AuthorizationServerMetadataSchema,
    ClientSecretRequestSchema,
    ClientSecretSchema,
    OAuthErrorSchema,
    OAuthTokenOperationSchema,
    OAuthTokenRequestSchema,
    OAuthTokenSchema,
)
from authsvc.openapi_device import DEVICE_ERROR_TEXT
from authsvc.openapi_model import FORM, Credentials, Doc
from authsvc.response_schemas import IntrospectionSchema

JSON = "application/json"
OUTAGE = "service_unavailable"
_ORIGIN = "https://auth.example.com"
_MACHINE_JWT_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTIzYjM2MzRlMjc1MSIsInR5cCI6ImF0K2p3dCJ9."
    "eyJzdWIiOiJiaWxsaW5nLWpvYiIsImd0eSI6ImNsaWVudF9jcmVkZW50aWFscyJ9."
    "Vq0x2aBkVJ6oWb9mE1vZ7Yl3rQk5cX8tN4uH2sD0fGw"
)

# What each RFC error code means here (the answer's error_description is the slug).
OAUTH_ERROR_TEXT = {
    "invalid_request": "A parameter is missing, repeated or malformed, or the body is not a form.",
    "invalid_client": "Client authentication failed (unknown client, wrong or no secret).",
    "invalid_grant": "The refresh token is invalid, expired, reused, revoked or another client's.",
    "unauthorized_client": "This client may not do this (e.g. revoke another client's token).",
    "unsupported_grant_type": "grant_type is none of refresh_token, client_credentials, "
    "urn:ietf:params:oauth:grant-type:device_code.",
    "invalid_scope": "The scope is malformed or wider than the client or session allows.",
    "too_many_attempts": "Too many failed client authentications; wait Retry-After seconds.",
    "temporarily_unavailable": "Redis is unreachable; nothing changed, retry after Retry-After.",
    "server_error": "A bug; the request id is in the log.",
    **DEVICE_ERROR_TEXT,
    "invalid_dpop_proof": "The DPoP proof is missing, malformed, replayed or by the wrong key.",
    "use_dpop_nonce": "Sign the proof again with the DPoP-Nonce of this answer.",
}
# RFC codes raised as OAuthError, with their status (not envelope slugs).
OAUTH_ONLY_ERRORS = {
    "invalid_grant": 400,
    "unsupported_grant_type": 400,
    "unauthorized_client": 400,
}

OAUTH_REQUEST_EXAMPLES: dict[type[Schema], dict[str, Any]] = {
    OAuthTokenRequestSchema: {"grant_type": "client_credentials", "scope": "reports:read"},
    OAuthTokenOperationSchema: {"token": _MACHINE_JWT_EXAMPLE, "token_type_hint": "access_token"},
    ClientSecretRequestSchema: {"overlap_seconds": 86400},
}
OAUTH_DATA_EXAMPLES: dict[type[Schema], Any] = {
    OAuthTokenSchema: {
        "access_token": _MACHINE_JWT_EXAMPLE,
        "token_type": "Bearer",
        "expires_in": 900,
        "scope": "reports:read",
    },
    ClientSecretSchema: {
        "client_id": "billing-job",
        "client_secret": "kq3Xb0W9o5rVYc1mZs8tFh2uLp7eJd4aNg6iRy0vTwE",
        "client_secret_expires_at": 0,
        "previous_secret_valid_until": 1767312000,
    },
    AuthorizationServerMetadataSchema: {
        "issuer": _ORIGIN,
        "token_endpoint": f"{_ORIGIN}/oauth/token",
        "jwks_uri": f"{_ORIGIN}/.well-known/jwks.json",
        "introspection_endpoint": f"{_ORIGIN}/oauth/introspect",
        "revocation_endpoint": f"{_ORIGIN}/oauth/revoke",
        "device_authorization_endpoint": f"{_ORIGIN}/oauth/device_authorization",
        "grant_types_supported": [
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "scopes_supported": ["admin", "profile", "reports:read"],
        "service_documentation": f"{_ORIGIN}/docs",
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
    },
}


# /oauth/*: HTTP Basic, or client_id + client_secret in the form (or, for the refresh
# grant, a public client's client_id alone).
OAUTH_CLIENT = Credentials(
    ({"basicAuth": []}, {}),
    ("invalid_client",),
    how=(
        "Client authentication (RFC 6749 section 2.3.1): HTTP Basic with the client id "
        "and secret (`client_secret_basic`), or `client_id` and `client_secret` in the "
        "form (`client_secret_post`), never both. Answers are plain JSON, errors "
        '`{"error", "error_description"}` (RFC 6749 section 5.2), not the envelope.'
    ),
)

OAUTH_DOCS: dict[str, Doc] = {
    "oauth.token": Doc(
        OAuthTokenSchema,
        OAuthTokenRequestSchema,
        request_media_types=(FORM,),
        credentials=OAUTH_CLIENT,
        errors=(
            "invalid_scope",
            "too_many_attempts",
            "token_invalid",
            "authorization_pending",
            "slow_down",
            "access_denied",
            "expired_token",
            OUTAGE,
        ),
        enveloped=False,
        oauth=True,
        oauth_errors=("invalid_grant", "unsupported_grant_type", "unauthorized_client"),
        dpop="token",  # a bound refresh token, or a device code asked for with a proof
    ),
    "oauth.introspect": Doc(
        IntrospectionSchema,
        OAuthTokenOperationSchema,
        request_media_types=(FORM,),
        credentials=OAUTH_CLIENT,
        errors=(OUTAGE,),
        enveloped=False,
        oauth=True,
    ),
    "oauth.revoke": Doc(
        request=OAuthTokenOperationSchema,
        request_media_types=(FORM,),
        credentials=OAUTH_CLIENT,
        errors=(OUTAGE,),
        enveloped=False,
        oauth=True,
        oauth_errors=("unauthorized_client",),
    ),
}


def oauth_error_codes(slugs: set[str], extra: tuple[str, ...] = ()) -> dict[int, list[str]]:
    """RFC error codes by status: the slugs' mapping plus the OAuth-only ``extra`` codes."""
    by_status: dict[int, set[str]] = defaultdict(set)
    for slug in slugs:
        code, status = OAUTH_ERRORS[slug]
        by_status[status].add(code)
    for code in extra:
        by_status[OAUTH_ONLY_ERRORS[code]].add(code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def oauth_error_responses(slugs: set[str], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One response per status, ``error`` narrowed to its codes, one example per code."""
    responses = {}
    for status, codes in oauth_error_codes(slugs, extra).items():
        headers = {"X-Request-ID": "X-Request-ID"}
        if status == 401:
            headers["WWW-Authenticate"] = "WWW-Authenticate"
        if status in (429, 503):
            headers["Retry-After"] = "Retry-After"
        narrowed = {"type": "object", "properties": {"error": {"enum": codes}}}
        responses[str(status)] = {
            "description": " ".join(f"`{code}`: {OAUTH_ERROR_TEXT[code]}" for code in codes),
            "headers": headers,
            "content": {
                JSON: {
                    "schema": {"allOf": [OAuthErrorSchema, narrowed]},
                    "examples": {
                        code: {
                            "summary": code,
                            "value": {"error": code, "error_description": _slug_of(code)},
                        }
                        for code in codes
                    },
                }
            },
        }
    return responses


def _slug_of(code: str) -> str:
    # The description carries the envelope slug the error came from (its own code else).
    return next((slug for slug, (mapped, _) in OAUTH_ERRORS.items() if mapped == code), code)
