"""How :class:`~authsvc.client.AuthClient` talks to authsvc: one signed HTTP call.

Each call carries the session's credentials (``Bearer``, or ``DPoP`` with a fresh proof by
the session's key, RFC 9449) and remembers the ``DPoP-Nonce`` each server hands out, per
origin; a ``use_dpop_nonce`` refusal that brings a new nonce is sent again once with it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from authsvc.client_dpop import (
    DPOP_HEADER,
    DPOP_NONCE_HEADER,
    DpopKey,
    EcDpopKey,
    make_proof,
)
from authsvc.client_errors import (
    USE_DPOP_NONCE,
    LoginRequired,
    Reply,
    ServiceUnavailable,
)
from authsvc.client_tokens import TokenSet

_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class SignedTransport:
    """The transport half of :class:`~authsvc.client.AuthClient` (a mixin over its state)."""

    base_url: str
    timeout: float
    _session: requests.Session
    _nonces: dict[str, str]
    _own_key: DpopKey | None
    _stored_key: tuple[str, EcDpopKey] | None

    def authorization_headers(self, tokens: TokenSet, method: str, url: str) -> dict[str, str]:
        """``Authorization`` (and ``DPoP``) headers that present ``tokens`` to ``url``."""
        if not tokens.bound:
            return {"Authorization": f"Bearer {tokens.access_token}"}
        key = self._key_for(tokens)
        if key is None:
            raise LoginRequired("the session's DPoP key is lost", error="login_required")
        proof = make_proof(
            key, method, url, access_token=tokens.access_token, nonce=self.nonce_for(url)
        )
        return {"Authorization": f"DPoP {tokens.access_token}", DPOP_HEADER: proof}

    def nonce_for(self, url: str) -> str | None:
        """The last ``DPoP-Nonce`` the server of ``url`` sent, if any."""
        return self._nonces.get(_origin(url))

    def remember_nonce(self, url: str, headers: Any) -> bool:
        """Keep a ``DPoP-Nonce`` from a response of ``url``; True when it is a new one."""
        nonce = headers.get(DPOP_NONCE_HEADER)
        if not nonce:
            return False
        origin = _origin(url)
        new = self._nonces.get(origin) != nonce
        self._nonces[origin] = nonce
        return new

    def _key_for(self, tokens: TokenSet | None) -> DpopKey | None:
        """The key that signs for ``tokens``: the one stored with them, else the caller's."""
        if tokens is None or tokens.dpop_jwk is None:
            return self._own_key
        jwk = tokens.dpop_jwk
        cached = self._stored_key
        if cached is None or cached[0] != jwk["x"]:
            cached = (jwk["x"], EcDpopKey.from_private_jwk(jwk))
            self._stored_key = cached
        return cached[1]

    def _send(
        self,
        method: str,
        path: str,
        *,
        tokens: TokenSet | None = None,
        key: DpopKey | None = None,
        **kwargs: Any,
    ) -> Reply:
        """One call to authsvc: with ``tokens`` as credentials, or a proof by ``key``.

        A ``use_dpop_nonce`` refusal that brings a new nonce is sent again once with it.
        """
        url = self.base_url + path
        kwargs.setdefault("timeout", self.timeout)
        extra = kwargs.pop("headers", None) or {}
        for _ in range(2):
            headers = dict(extra)
            if tokens is not None:
                headers.update(self.authorization_headers(tokens, method, url))
            elif key is not None:
                headers[DPOP_HEADER] = make_proof(key, method, url, nonce=self.nonce_for(url))
            try:
                response = self._session.request(method, url, headers=headers, **kwargs)
            except _TRANSPORT_ERRORS as error:
                raise ServiceUnavailable(
                    f"no answer from {self.base_url}: {type(error).__name__}",
                    error="connection_failed",
                ) from error
            fresh_nonce = self.remember_nonce(url, response.headers)
            reply = Reply.parse(response)
            signing = key is not None or (tokens is not None and tokens.bound)
            if not (signing and fresh_nonce and reply.error == USE_DPOP_NONCE):
                break
        return reply


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"
