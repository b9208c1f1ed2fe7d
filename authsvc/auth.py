"""Access-token parsing (RFC 6750 Bearer, RFC 9449 DPoP) and the decorator that protects views."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import current_app, g, request

from authsvc.clients import ADMIN_SCOPE
from authsvc.dpop import Proof
from authsvc.errors import AuthError
from authsvc.service import AuthService, Client, Principal

P = ParamSpec("P")
R = TypeVar("R")

# credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]   (RFC 9110 section 11.4)
_CREDENTIALS = re.compile(r"^(?P<scheme>[!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: +(?P<rest>.*))?$")
_OWS = " \t"
_TOKEN68 = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    The scheme is case-insensitive and may be followed by one or more spaces. No
    header, another scheme or a bare ``Bearer`` is ``token_missing``; anything that
    is not exactly one token68 after the scheme is ``token_invalid``.
    """
    return access_credentials(authorization, schemes=("bearer",))[1]


def access_credentials(
    authorization: str | None, *, schemes: tuple[str, ...] = ("bearer", "dpop")
) -> tuple[str, str]:
    """``(scheme, token)`` of an ``Authorization`` header; the scheme lower-cased.

    ``DPoP`` (RFC 9449 section 7.1) is accepted beside ``Bearer`` where ``schemes`` says.
    """
    # Only HTTP's optional whitespace (SP, HTAB) is trimmed; str.strip() would also
    # eat Unicode spaces such as NBSP, which are not part of the header grammar.
    value = (authorization or "").strip(_OWS)
    if not value:
        raise AuthError("token_missing")
    match = _CREDENTIALS.match(value)
    if match is None:
        raise AuthError("token_invalid")
    scheme = match["scheme"].lower()
    if scheme not in schemes:
        raise AuthError("token_missing")
    if scheme == "dpop":
        g.dpop_scheme = True  # errors answer with the DPoP challenge
    token = (match["rest"] or "").strip(_OWS)
    if not token:
        raise AuthError("token_missing")
    if not _TOKEN68.match(token):
        raise AuthError("token_invalid")
    return scheme, token


def request_proof(*, access_token: str | None = None, token_endpoint: bool = False) -> Proof | None:
    """The verified ``DPoP`` proof of this request (None without one); else AuthError.

    ``htu`` is checked against the URL as the client saw it: scheme and host after
    ProxyFix (``AUTHSVC_TRUSTED_PROXIES``). With ``access_token`` its ``ath`` is checked.
    """
    headers = request.headers.getlist("DPoP")
    if not headers:
        return None
    g.dpop_request = True  # the answer carries a fresh DPoP-Nonce when nonces are on
    return auth_service().proofs.check(
        headers,
        method=request.method,
        url=request.base_url,
        access_token=access_token,
        token_endpoint=token_endpoint,
    )


def auth_service() -> AuthService:
    """The app's :class:`AuthService`."""
    return current_app.extensions["authsvc"]


def header_text(value: str) -> str:
    """A header value as printable text, safe to store and to show.

    WSGI hands headers over as latin-1 decoded bytes, so a UTF-8 User-Agent arrives as
    mojibake: it is decoded again as UTF-8 when it is UTF-8. Then every character
    that is not printable goes: control characters (NUL included) and anything a
    test harness or a WSGI server might pass that UTF-8 cannot encode (a lone
    surrogate), which would make the Redis client fail on the write.
    """
    with contextlib.suppress(UnicodeError):  # not UTF-8 bytes: keep the latin-1 reading
        value = value.encode("latin-1").decode("utf-8")
    return "".join(char for char in value if char.isprintable())


def request_client(device_id: str | None = None) -> Client:
    """What this request says about the caller (IP after ProxyFix, user agent)."""
    return client_of(request.remote_addr, request.headers.get("User-Agent"), device_id)


def client_of(
    remote_addr: str | None, user_agent: str | None, device_id: str | None = None
) -> Client:
    """The caller as a request's address (after ProxyFix) and User-Agent header show it."""
    return Client(
        ip=header_text(remote_addr or "") or "unknown",
        user_agent=header_text(user_agent or "") or None,
        device_id=device_id,
    )


def require_access(view: Callable[P, R]) -> Callable[P, R]:
    """Admit only requests with a valid, unrevoked access token; sets the principal."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.principal = authenticate_request()
        return view(*args, **kwargs)

    return wrapper


# Where the fast path (authsvc/api/fastpath.py) leaves the error that ended its work on
# this request, for Flask's error handlers to answer: a token is not checked (or a
# refresh token spent) twice. WSGI environ keys from HTTP headers all start with HTTP_,
# so no client can set it.
FAST_PATH_FAILURE = "authsvc.fast_path_failure"


@dataclass(frozen=True)
class FastPathFailure:
    """The error the fast path met, and what it had set on ``g`` by then."""

    error: Exception
    flags: dict[str, Any]


def raise_fast_path_failure() -> None:
    """Raise the error the fast path met on this request, if it met one.

    Its ``g`` flags come back first (``dpop_scheme``: the error's DPoP challenge;
    ``dpop_request``: a fresh nonce), as if this request had set them itself.
    """
    failure: FastPathFailure | None = request.environ.pop(FAST_PATH_FAILURE, None)
    if failure is not None:
        for name, value in failure.flags.items():
            g.setdefault(name, value)
        raise failure.error


def authenticate_request() -> Principal:
    """The principal of this request's access token (``Bearer``, or ``DPoP`` with a proof)."""
    raise_fast_path_failure()
    scheme, token = access_credentials(request.headers.get("Authorization"))
    # A proof is looked at only with the DPoP scheme: a Bearer request ignores the header.
    proof = request_proof(access_token=token) if scheme == "dpop" else None
    return auth_service().authenticate(token, scheme=scheme, proof=proof)


def require_scope(
    scope: str, *, role: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Like :func:`require_access`, and :func:`authorize` must accept the principal."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            authorize(current_principal(), scope, role=role)
            return view(*args, **kwargs)

        return require_access(wrapper)

    return decorator


def authorize(principal: Principal, scope: str, *, role: str | None = None) -> None:
    """The token must hold ``scope`` and its user ``role`` (when given).

    A user without the role is 403 ``forbidden``; a token without the scope is 403
    ``insufficient_scope`` with the RFC 6750 section 3.1 challenge. The role says the
    account has the rights, the scope that the client and the login asked for them.
    """
    # The role first: without it, no login could get the scope (a role grants its scope).
    if role is not None and role not in principal.roles:
        raise AuthError("forbidden")
    if scope not in principal.scopes:
        raise AuthError("insufficient_scope")


ADMIN_ROLE = "admin"


def authorize_admin(principal: Principal) -> None:
    """The one admin policy: the ``admin`` role and the ``admin`` scope.

    A token of an admin logged in without the ``admin`` scope (through the built-in
    ``default`` client, or a registered client asked for less) is 403
    ``insufficient_scope``; a token of any other user is 403 ``forbidden``.
    """
    authorize(principal, ADMIN_SCOPE, role=ADMIN_ROLE)


def require_admin(view: Callable[P, R]) -> Callable[P, R]:
    """Admit only valid, unrevoked access tokens that :func:`authorize_admin` accepts."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        authorize_admin(current_principal())
        return view(*args, **kwargs)

    return require_access(wrapper)


def current_principal() -> Principal:
    """The principal set by :func:`require_access` for this request."""
    return g.principal
