"""Plug an :class:`~authsvc.client.AuthClient` into ``httpx`` (sync and async).

``httpx.Client(auth=client.httpx_auth())`` or ``httpx.AsyncClient(auth=...)``: the same
rules as the ``requests`` adapter (:mod:`authsvc.client_auth`). httpx is an optional
extra (``pip install 'authsvc[httpx]'``), imported only when this module is.

In an ``AsyncClient`` a renewal runs the client's blocking refresh in a worker thread
(anyio, which httpx brings), so the event loop never waits on it; the refresh stays one
at a time across threads and tasks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import anyio.to_thread
import httpx

from authsvc.client_auth import REFUSED, Retry, allowed, next_step

if TYPE_CHECKING:
    from authsvc.client import AuthClient

__all__ = ["HttpxAuth"]


class HttpxAuth(httpx.Auth):
    """``httpx.Auth`` over an AuthClient's session; built by :meth:`AuthClient.httpx_auth`."""

    # The request body is kept so that the request can be sent again. The body of a
    # refusal is read here (its slug is in it); any other answer streams as usual.
    requires_request_body = True

    def __init__(self, client: AuthClient, *, origins: tuple[str, ...] | None = None) -> None:
        self.client = client
        self.origins = tuple(o.rstrip("/").lower() for o in origins) if origins else None

    def _attach(self, request: httpx.Request, retry: Retry) -> None:
        headers = self.client.authorization_headers(retry.tokens, request.method, str(request.url))
        request.headers.update(headers)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """The flow of ``httpx.Client``."""
        if not allowed(self.origins, str(request.url)):
            yield request
            return
        retry = Retry(self.client.fresh_tokens())
        while True:
            self._attach(request, retry)
            response = yield request
            body = response.read() if response.status_code in REFUSED else b""
            url, status, headers = str(request.url), response.status_code, response.headers
            step = next_step(self.client, retry, url, status, headers, body)
            if step is None:
                return
            if step == "refresh":
                retry.tokens = self.client.recover(retry.tokens)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow of ``httpx.AsyncClient``: renewals run in a worker thread."""
        if not allowed(self.origins, str(request.url)):
            yield request
            return
        tokens = self.client.tokens
        if tokens is None or time.time() >= tokens.refresh_at(self.client.refresh_margin):
            # Due (or absent: LoginRequired): the blocking renewal goes to a thread.
            tokens = await anyio.to_thread.run_sync(self.client.fresh_tokens)
        retry = Retry(tokens)
        while True:
            self._attach(request, retry)
            response = yield request
            body = await response.aread() if response.status_code in REFUSED else b""
            url, status, headers = str(request.url), response.status_code, response.headers
            step = next_step(self.client, retry, url, status, headers, body)
            if step is None:
                return
            if step == "refresh":
                retry.tokens = await anyio.to_thread.run_sync(self.client.recover, retry.tokens)
