"""The client SDK's errors and how it reads an answer: re-exported by :mod:`authsvc.client`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

__all__ = [
    "REFRESH_OVER_ERRORS",
    "RETRY_AFTER_REFRESH",
    "SESSION_OVER_ERRORS",
    "USE_DPOP_NONCE",
    "AuthClientError",
    "InvalidCredentials",
    "LoginRequired",
    "RateLimited",
    "RefreshRefused",
    "ServiceUnavailable",
    "SessionRevoked",
    "TemporaryError",
]

# Envelope slugs that say a session is over. Answered to a *resource call* they prove
# only that this access token is dead: token_revoked may be the revocation of the access
# token alone (RFC 7009), and a resource server that is not authsvc may say anything.
# So a call that gets one refreshes once; the refresh's own answer decides.
SESSION_OVER_ERRORS = frozenset(
    {"session_revoked", "token_revoked", "refresh_reused", "session_expired"}
)
# Envelope slugs from the refresh endpoint that prove the refresh token can never work
# again: the session was ended (revoked, reused, idle), its absolute lifetime is over
# (token_expired: a refresh token expires with its session) or the account is disabled.
# Only these clear the token store. Every other refusal, above all a 401/403 that is
# not an authsvc envelope (a proxy's or WAF's error page) and token_invalid (a worker
# that has not yet seen a rotated signing key), keeps the tokens and raises
# RefreshRefused: throwing a device's only refresh token away on a stranger's word
# would need someone to provision it again by hand.
REFRESH_OVER_ERRORS = SESSION_OVER_ERRORS | {"token_expired", "account_disabled"}
# Answered to a resource call, each of these is worth one refresh and one retry.
RETRY_AFTER_REFRESH = SESSION_OVER_ERRORS | {"token_expired", "invalid_token"}
# RFC 9449 section 8: the server wants a proof carrying the nonce it just sent.
USE_DPOP_NONCE = "use_dpop_nonce"


# -- exceptions -------------------------------------------------------------------
class AuthClientError(Exception):
    """A call failed.

    ``code`` is the envelope's status (``None`` when no answer arrived), ``error`` the
    server's ``data.error`` slug (or ``connection_failed`` / ``invalid_response``),
    ``data`` the envelope's ``data`` and ``retry_after`` the ``Retry-After`` seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        error: str = "unknown",
        data: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.data = data
        self.retry_after = retry_after


class LoginRequired(AuthClientError):
    """There is no session to use: call :meth:`AuthClient.login`."""


class SessionRevoked(LoginRequired):
    """The session ended (revoked, logged out elsewhere, reused, expired); tokens are cleared."""


class InvalidCredentials(AuthClientError):
    """Wrong username or password."""


class RateLimited(AuthClientError):
    """Too many failed attempts; try again after ``retry_after`` seconds."""


class TemporaryError(AuthClientError):
    """A failure that may pass: the tokens are kept, try again later."""


class ServiceUnavailable(TemporaryError):
    """The service could not be reached or answered 5xx; nothing was changed, try again."""


class RefreshRefused(TemporaryError):
    """A refresh was refused without proof that the session is over; the tokens are kept.

    A 401 or 403 that is not an authsvc envelope (a proxy's, WAF's or captive portal's
    page) or an envelope slug outside :data:`REFRESH_OVER_ERRORS`, such as
    ``token_invalid`` while a rotated signing key reaches every worker.
    """


_ERROR_CLASSES: dict[str, type[AuthClientError]] = {
    "invalid_credentials": InvalidCredentials,
    "too_many_attempts": RateLimited,
    "service_unavailable": ServiceUnavailable,
}


# -- answers ------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """One parsed answer; ``code`` is the envelope's (HTTP 200 in always200 mode lies)."""

    code: int
    msg: str
    data: Any
    envelope: dict[str, Any] | None
    retry_after: int | None

    @classmethod
    def parse(cls, response: requests.Response) -> Reply:
        try:
            body = response.json()
        except ValueError:
            body = None
        retry_after = _seconds(response.headers.get("Retry-After"))
        if isinstance(body, dict) and isinstance(body.get("code"), int):
            return cls(body["code"], str(body.get("msg", "")), body.get("data"), body, retry_after)
        # Not an authsvc envelope (a proxy's error page, a captive portal).
        return cls(response.status_code, response.reason or "", None, None, retry_after)

    @property
    def error(self) -> str | None:
        """The error slug, or None for a success."""
        if self.envelope is None:
            return "invalid_response"
        if self.code < 400:
            return None
        slug = self.data.get("error") if isinstance(self.data, dict) else None
        return slug if isinstance(slug, str) else f"http_{self.code}"

    def checked(self) -> dict[str, Any]:
        """The envelope of a success; otherwise the matching :class:`AuthClientError`."""
        error = self.error
        if error is None and self.envelope is not None:
            return self.envelope
        error = error or "invalid_response"
        cls = _ERROR_CLASSES.get(error)
        if cls is None:
            cls = ServiceUnavailable if self.code >= 500 else AuthClientError
        raise cls(
            self.msg or error,
            code=self.code,
            error=error,
            data=self.data,
            retry_after=self.retry_after,
        )


def refresh_checked(reply: Reply) -> dict[str, Any]:
    """:meth:`Reply.checked` for a refresh: a 401/403 without proof is RefreshRefused."""
    try:
        return reply.checked()
    except AuthClientError as error:
        if error.code not in (401, 403) or error.error in REFRESH_OVER_ERRORS:
            raise
        raise RefreshRefused(
            str(error),
            code=error.code,
            error=error.error,
            data=error.data,
            retry_after=error.retry_after,
        ) from error


def _seconds(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to treat as "unknown"
