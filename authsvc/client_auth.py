"""Plug an :class:`~authsvc.client.AuthClient` into ``requests`` for any API.

``session.auth = client.requests_auth()`` attaches the client's access token to every
request of the session (``Authorization: Bearer``, or ``DPoP`` plus a fresh proof with
``ath`` once the session is bound), renews it before it expires, and retries a request
once after a refusal that a new access token may cure. The API need not be authsvc:
besides authsvc's envelope (``data.error``), the RFC 6750 / RFC 9449 challenge
(``WWW-Authenticate: Bearer error="invalid_token"``) is understood.

What a refusal leads to (at most one of each per request):

- ``use_dpop_nonce`` with a new ``DPoP-Nonce``: sent again with a proof carrying it;
- ``token_expired``, ``invalid_token`` or a session-over slug (``token_revoked`` may be
  the revocation of this access token alone, RFC 7009): one refresh through the client
  (single flight, shared with every other user of the client), then sent again. Only
  the refresh's own answer can end the session (:class:`~authsvc.client.SessionRevoked`);
  what a resource says never clears the tokens.

Anything else (a 403 ``insufficient_scope``, a 401 without an error code) is returned
as is: the caller's response, the caller's decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

from authsvc.client_errors import RETRY_AFTER_REFRESH, USE_DPOP_NONCE

if TYPE_CHECKING:
    from authsvc.client import AuthClient
    from authsvc.client_tokens import TokenSet

__all__ = ["REFUSED", "RequestsAuth", "Retry", "allowed", "next_step", "refusal"]

# error="..." in a WWW-Authenticate challenge (RFC 6750 section 3, RFC 9449 section 7.1).
_CHALLENGE_ERROR = re.compile(r'(?:^|[\s,])error\s*=\s*"?([A-Za-z0-9_.-]+)"?', re.ASCII)
REFUSED = (400, 401, 403)


def refusal(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a resource refused the credentials: an error slug, or None for anything else.

    authsvc's envelope (``{code, msg, data: {error}}``) first, else the ``error`` of the
    ``WWW-Authenticate`` challenge of any API (``invalid_token``, ``use_dpop_nonce``).
    """
    if status not in REFUSED:
        return None
    slug = _envelope_slug(body)
    if slug is not None:
        return slug
    match = _CHALLENGE_ERROR.search(headers.get("WWW-Authenticate", ""))
    return match.group(1) if match else None


def _envelope_slug(body: bytes) -> str | None:
    if not body.startswith(b"{"):
        return None
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        return None
    data = envelope.get("data")
    slug = data.get("error") if isinstance(data, dict) else None
    return slug if isinstance(slug, str) and envelope["code"] >= 400 else None


@dataclass
class Retry:
    """What one request has used up: its tokens, its nonce retry, its refresh."""

    tokens: TokenSet
    nonce_retried: bool = False
    refreshed: bool = False


def next_step(
    client: AuthClient, retry: Retry, url: str, status: int, headers: Mapping[str, str], body: bytes
) -> str | None:
    """What to do after an answer: ``"nonce"``, ``"refresh"`` or None.

    ``"nonce"``: send again with the nonce just received; ``"refresh"``: refresh once,
    then send again; None: hand the answer back. ``retry`` records the step taken, so
    each happens at most once per request.
    """
    fresh_nonce = client.remember_nonce(url, headers)
    slug = refusal(status, headers, body)
    if slug is None:
        return None
    if slug == USE_DPOP_NONCE:
        if retry.nonce_retried or not fresh_nonce or not retry.tokens.bound:
            return None
        retry.nonce_retried = True
        return "nonce"
    if slug not in RETRY_AFTER_REFRESH or retry.refreshed:
        return None
    retry.refreshed = True
    return "refresh"


def allowed(origins: tuple[str, ...] | None, url: str) -> bool:
    """True when credentials may go to ``url`` (``origins`` None: anywhere)."""
    if origins is None:
        return True
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}" in origins


class RequestsAuth(AuthBase):
    """``requests`` auth over an AuthClient's session (thread-safe, one per client is enough).

    Built by :meth:`AuthClient.requests_auth`. A request whose body cannot be sent twice
    (a generator) is never retried.
    """

    def __init__(self, client: AuthClient, *, origins: tuple[str, ...] | None = None) -> None:
        self.client = client
        self.origins = tuple(o.rstrip("/").lower() for o in origins) if origins else None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Attach the credentials (renewed first when due) and the retry hook."""
        url = request.url or ""
        if not allowed(self.origins, url):
            return request
        retry = Retry(self.client.fresh_tokens())
        self._attach(request, retry)
        # State travels on the request, not on self: one auth serves many threads.
        request._authsvc_retry = retry  # type: ignore[attr-defined]
        request._authsvc_body_at = _body_position(request)  # type: ignore[attr-defined]
        request.register_hook("response", self._on_response)
        return request

    def _attach(self, request: requests.PreparedRequest, retry: Retry) -> None:
        method, url = request.method or "GET", request.url or ""
        request.headers.update(self.client.authorization_headers(retry.tokens, method, url))

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        retry: Retry | None = getattr(request, "_authsvc_retry", None)
        if retry is None or not response.status_code:
            return response
        body = response.content if response.status_code in REFUSED else b""
        url = request.url or ""
        step = next_step(self.client, retry, url, response.status_code, response.headers, body)
        position = getattr(request, "_authsvc_body_at", None)
        if step is None or position is _UNREPEATABLE:
            return response
        if step == "refresh":
            # Raises SessionRevoked only when the refresh itself says the session is over.
            retry.tokens = self.client.recover(retry.tokens)
        if position is not None:
            request.body.seek(position)  # type: ignore[union-attr]
        response.close()
        again = request.copy()
        if again._cookies is not None:  # type: ignore[attr-defined]
            extract_cookies_to_jar(again._cookies, request, response.raw)  # type: ignore[attr-defined]
            again.prepare_cookies(again._cookies)  # type: ignore[attr-defined]
        self._attach(again, retry)
        again._authsvc_retry = retry  # type: ignore[attr-defined]
        again._authsvc_body_at = position  # type: ignore[attr-defined]
        # The hook runs only for the first send: the retry's answer goes through it here.
        answer = response.connection.send(again, **kwargs)
        answer.history.append(response)
        answer.request = again
        return self._on_response(answer, **kwargs)


_UNREPEATABLE = object()


def _body_position(request: requests.PreparedRequest) -> object:
    """Where a file body starts (to rewind it), None for bytes, or _UNREPEATABLE."""
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return None
    tell = getattr(body, "tell", None)
    if tell is None or not hasattr(body, "seek"):
        return _UNREPEATABLE
    try:
        return tell()
    except OSError:
        return _UNREPEATABLE
