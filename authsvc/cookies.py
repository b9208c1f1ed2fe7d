"""Cookie transport for browsers: the refresh token lives only in an HttpOnly cookie.

Both cookies carry the ``__Host-`` prefix, so the browser accepts them only when set
by this very host with Secure, ``Path=/`` and no Domain: a sibling subdomain (or a
plain-HTTP response) cannot plant a cookie under these names to make a victim's page
resume the attacker's session (cookie tossing), and cookies under other names, such
as the unprefixed ones a sibling can set on the parent domain, are never read. The
price of ``Path=/`` is that the refresh cookie is sent with every request to this
host, not only to refresh and logout; the server reads it only there, it is HttpOnly
and SameSite=Strict, and authsvc is meant to have its host name to itself
(docs/browser-sdk.md).
Every cookie-authenticated call must echo the readable CSRF cookie in the
``X-CSRF-Token`` header (double submit, checked by flask-jwt-extended against the
token's ``csrf`` claim), GET refresh included.
"""

from __future__ import annotations

from flask import Response, request

from authsvc.errors import AuthError
from authsvc.tokens import TokenPair

REFRESH_COOKIE = "__Host-authsvc_refresh"
CSRF_COOKIE = "__Host-authsvc_csrf"
CSRF_HEADER = "X-CSRF-Token"
# __Host- cookies must have Path=/ (RFC 6265bis section 4.1.3.2).
COOKIE_PATH = "/"


def set_refresh_cookies(response: Response, pair: TokenPair) -> None:
    """Put the refresh token (HttpOnly) and its CSRF value (readable) into cookies."""
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=pair.refresh_expires_in,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        pair.csrf_token,
        max_age=pair.refresh_expires_in,
        path=COOKIE_PATH,
        secure=True,
        httponly=False,  # the page's script must read it to send X-CSRF-Token
        samesite="Strict",
    )


def clear_refresh_cookies(response: Response) -> None:
    """Expire the refresh and CSRF cookies (logout)."""
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="Strict"
    )
    response.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH, secure=True, samesite="Strict")


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
