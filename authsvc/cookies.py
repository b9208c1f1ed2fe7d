"""Cookie transport for browsers: the refresh token lives only in an HttpOnly cookie.

The refresh cookie is HttpOnly, Secure, SameSite=Strict and scoped to the two paths
that take it (refresh, logout). Every cookie-authenticated call must echo the
readable CSRF cookie in the ``X-CSRF-Token`` header (double submit, checked by
flask-jwt-extended against the token's ``csrf`` claim), GET refresh included.
"""

from __future__ import annotations

from flask import Response, request

from authsvc.errors import AuthError
from authsvc.tokens import TokenPair

REFRESH_COOKIE = "authsvc_refresh"
CSRF_COOKIE = "authsvc_csrf"
CSRF_HEADER = "X-CSRF-Token"
REFRESH_COOKIE_PATHS = ("/api/v1/user/refresh", "/api/v1/user/logout")


def set_refresh_cookies(response: Response, pair: TokenPair) -> None:
    """Put the refresh token (HttpOnly) and its CSRF value (readable) into cookies."""
    for path in REFRESH_COOKIE_PATHS:
        response.set_cookie(
            REFRESH_COOKIE,
            pair.refresh_token,
            max_age=pair.refresh_expires_in,
            path=path,
            secure=True,
            httponly=True,
            samesite="Strict",
        )
    response.set_cookie(
        CSRF_COOKIE,
        pair.csrf_token,
        max_age=pair.refresh_expires_in,
        path="/",
        secure=True,
        httponly=False,  # the page's script must read it to send X-CSRF-Token
        samesite="Strict",
    )


def clear_refresh_cookies(response: Response) -> None:
    """Expire the refresh and CSRF cookies (logout)."""
    for path in REFRESH_COOKIE_PATHS:
        response.delete_cookie(
            REFRESH_COOKIE, path=path, secure=True, httponly=True, samesite="Strict"
        )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite="Strict")


def cookie_refresh_credentials() -> tuple[str, str] | None:
    """``(refresh token, CSRF header)`` when this request refreshes by cookie, else None.

    A request with an Authorization header is never a cookie request. A cookie
    without the CSRF header is refused here: flask-jwt-extended skips the check for
    an empty value.
    """
    token = request.cookies.get(REFRESH_COOKIE)
    if token is None or "Authorization" in request.headers:
        return None
    csrf = request.headers.get(CSRF_HEADER, "")
    if not csrf:
        raise AuthError("csrf_failed")
    return token, csrf
