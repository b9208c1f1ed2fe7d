"""RFC 6749 section 5.2 error answers, for the plain OAuth paths (``/oauth/...``).

OAuth libraries read ``{"error": ..., "error_description": ...}`` with the RFC's
statuses, not the ``{code, msg, data}`` envelope. :func:`authsvc.errors.error_response`
(the one error path) hands every error on an OAuth path to :func:`oauth_error_response`,
so a Werkzeug 405, a Redis outage or a bug there answers in the RFC's shape too. The
envelope's slugs are mapped to the RFC's codes; ``error_description`` carries the slug.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

OAUTH_PATH_PREFIX = "/oauth/"

# slug -> (RFC error code, HTTP status). A token error on the token endpoint is a bad
# grant (RFC 6749 section 5.2: "invalid, expired, revoked ... refresh token").
_GRANT_ERRORS = (
    "token_missing",
    "token_invalid",
    "token_expired",
    "token_revoked",
    "wrong_token_type",
    "csrf_failed",
    "refresh_reused",
    "session_revoked",
    "session_expired",
    "account_disabled",
)
_DEVICE_POLL_ERRORS = (
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
    "invalid_grant",
    "unauthorized_client",
)
OAUTH_ERRORS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(_GRANT_ERRORS, ("invalid_grant", 400)),
    "invalid_request": ("invalid_request", 400),
    "validation_failed": ("invalid_request", 400),
    "unsupported_media_type": ("invalid_request", 415),
    "payload_too_large": ("invalid_request", 413),
    "method_not_allowed": ("invalid_request", 405),
    "not_found": ("invalid_request", 404),
    "invalid_client": ("invalid_client", 401),
    "unknown_client": ("invalid_client", 401),
    "invalid_scope": ("invalid_scope", 400),
    # RFC 9449 sections 5 and 8: the token endpoint's own DPoP error codes.
    "invalid_dpop_proof": ("invalid_dpop_proof", 400),
    "use_dpop_nonce": ("use_dpop_nonce", 400),
    "dpop_required": ("invalid_dpop_proof", 400),
    "transport_not_allowed": ("unauthorized_client", 400),
    "forbidden": ("unauthorized_client", 400),
    "insufficient_scope": ("invalid_scope", 400),
    # No RFC 6749 code says "slow down" on the token endpoint: an extension code
    # (RFC 6749 section 8.5) with the status and Retry-After every HTTP client knows.
    "too_many_attempts": ("too_many_attempts", 429),
    # RFC 8628 section 3.5 (the device flow's polls).
    **{code: (code, 400) for code in _DEVICE_POLL_ERRORS},
    "device_code_unknown": ("invalid_grant", 400),
    "service_unavailable": ("temporarily_unavailable", 503),
    "internal_error": ("server_error", 500),
}


class OAuthError(Exception):
    """A refusal with an RFC 6749 (or 7009) error code of its own: no envelope slug.

    ``invalid_grant``, ``unsupported_grant_type``, ``unauthorized_client`` and
    ``unsupported_token_type`` exist only on the OAuth paths.
    """

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status


def is_oauth_path(path: str) -> bool:
    """Whether ``path`` answers in RFC 6749 JSON rather than in the envelope."""
    return path.startswith(OAUTH_PATH_PREFIX)


def oauth_error_response(
    error: str,
    description: str,
    status: int,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """``{"error", "error_description"}`` with ``status``; never cached (RFC 6749 5.1)."""
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if error == "invalid_client":
        # RFC 6749 section 5.2: 401 with the scheme the client may authenticate with.
        response.headers["WWW-Authenticate"] = 'Basic realm="authsvc"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def oauth_error_for_slug(
    slug: str, *, fields: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The RFC 6749 answer for an envelope slug raised on an OAuth path.

    The description is the slug, with the names of the invalid fields if any.
    """
    error, status = OAUTH_ERRORS.get(slug, ("invalid_request", 400))
    description = f"{slug}: {', '.join(sorted(fields))}" if fields else slug
    return oauth_error_response(error, description, status, headers=headers)
