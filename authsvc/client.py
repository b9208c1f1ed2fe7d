"""Python client SDK for authsvc: log in, call APIs, refresh tokens safely, keep them.

For devices and services; it needs only ``requests`` and ``cryptography`` (no Flask,
no Redis)::

    store = FileTokenStore("/var/lib/thermostat/tokens.json")
    client = AuthClient("https://auth.example.com", token_store=store,
                        client_id="fw", scope="profile telemetry", dpop=True)
    if client.tokens is None:
        client.login("thermostat-42", password, device_id="thermostat-42")
    me = client.get("/api/v1/user/me")["data"]
    # the platform's other APIs, through the usual HTTP clients:
    api = requests.Session()
    api.auth = client.requests_auth()            # or httpx: auth=client.httpx_auth()

What it does for you:

- attaches the access token to every call (``Authorization: Bearer``, or ``DPoP`` with
  a fresh proof when the session is bound to the device's key, RFC 9449) and returns
  the parsed ``{code, msg, data}`` envelope, or raises an :class:`AuthClientError`;
- refreshes the access token shortly before it expires (``refresh_margin``) and, if a
  call still comes back ``401 token_expired``, refreshes and retries that call once;
- treats a resource's ``token_revoked`` (or any other session-over slug) as "this
  access token is dead", not "the session is": an access token alone may have been
  revoked (RFC 7009). It refreshes once; only the refresh's own answer ends the session;
- runs at most one refresh at a time per client, across threads: a thread that waited
  for a refresh in progress uses its result instead of presenting a refresh token that
  has just been rotated (which the server would treat as reuse and end the session);
- retries a refresh whose answer was lost (connection error, timeout, 5xx) with the
  *same* refresh token (and a *new* DPoP proof): the server replays the pair it already
  issued, so the client converges instead of tripping reuse detection;
- forgets the tokens only when authsvc itself, answering a refresh, says the session is
  over (:data:`REFRESH_OVER_ERRORS`); a proxy's 401/403 page or a ``token_invalid`` is
  retried like a lost answer and then raised as :class:`RefreshRefused`, tokens kept;
- keeps the tokens (and a generated DPoP key) in a pluggable :class:`TokenStore`;
  :class:`FileTokenStore` lets a device keep its session across reboots.

One client per token store: two processes refreshing from the same file would present
the same refresh token and one of them would eventually be seen as a replay.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from authsvc.client_dpop import (
    DpopKey,
    EcDpopKey,
    ExternalDpopKey,
)
from authsvc.client_errors import (
    REFRESH_OVER_ERRORS,
    RETRY_AFTER_REFRESH,
    SESSION_OVER_ERRORS,
    AuthClientError,
    InvalidCredentials,
    LoginRequired,
    RateLimited,
    RefreshRefused,
    ServiceUnavailable,
    SessionRevoked,
    TemporaryError,
    refresh_checked,
)
from authsvc.client_tokens import FileTokenStore, MemoryTokenStore, TokenSet, TokenStore
from authsvc.client_transport import SignedTransport

if TYPE_CHECKING:
    from authsvc.client_auth import RequestsAuth
    from authsvc.client_httpx import HttpxAuth

__all__ = [
    "REFRESH_OVER_ERRORS",
    "SESSION_OVER_ERRORS",
    "AuthClient",
    "AuthClientError",
    "DpopKey",
    "EcDpopKey",
    "ExternalDpopKey",
    "FileTokenStore",
    "InvalidCredentials",
    "LoginRequired",
    "MemoryTokenStore",
    "RateLimited",
    "RefreshRefused",
    "ServiceUnavailable",
    "SessionRevoked",
    "TemporaryError",
    "TokenSet",
    "TokenStore",
]

API = "/api/v1/user"
DEFAULT_TIMEOUT = 10.0
DEFAULT_REFRESH_MARGIN = 30.0
# The server replays a lost refresh answer for 20 s after the first rotation
# (AUTHSVC_REFRESH_GRACE_SECONDS). Retries are only sent within this many seconds of
# the first attempt, so none arrives after the window and counts as reuse.
REFRESH_RETRY_WINDOW = 15.0


# -- the client ----------------------------------------------------------------------
DpopOption = bool | DpopKey | ec.EllipticCurvePrivateKey | None


class AuthClient(SignedTransport):
    """A logged-in session against one authsvc, safe to share between threads.

    ``client_id`` / ``scope``: the registered client this device logs in as, and the
    scopes it asks for (space-separated, RFC 6749; absent: all the client's).
    ``dpop``: bind the session to a key (RFC 9449). ``True`` generates an EC P-256 key
    per login and keeps it in the token store beside the tokens it binds; a
    ``cryptography`` P-256 private key or a :class:`DpopKey` (e.g. an
    :class:`ExternalDpopKey` whose key never leaves a secure element) is used as given
    and never stored. ``refresh_margin``: refresh this many seconds before the access
    token expires. ``timeout``: per-request timeout (s). ``refresh_retries`` /
    ``retry_backoff``: how often and how patiently a refresh whose answer was lost is
    retried (exponential backoff with jitter, all within :data:`REFRESH_RETRY_WINDOW`).
    A ``session`` passed in is used as is and not closed by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        client_id: str | None = None,
        scope: str | None = None,
        dpop: DpopOption = False,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        refresh_retries: int = 3,
        retry_backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self.client_id = client_id
        self.scope = scope
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.refresh_retries = refresh_retries
        self.retry_backoff = retry_backoff
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        # Guards _tokens and the store; held for the whole of a refresh (single flight).
        self._lock = threading.Lock()
        self._tokens = self.store.load()
        # dpop=True: a key per session, kept with its tokens; else the caller's or none.
        self._generate_keys = dpop is True
        self._own_key: DpopKey | None = None
        if isinstance(dpop, ec.EllipticCurvePrivateKey):
            self._own_key = EcDpopKey(dpop)
        elif dpop not in (True, False, None):
            self._own_key = dpop  # type: ignore[assignment]
        self._stored_key: tuple[str, EcDpopKey] | None = None
        # The last DPoP-Nonce of each origin (RFC 9449 section 8: nonces are per server).
        self._nonces: dict[str, str] = {}

    # -- state --------------------------------------------------------------------
    @property
    def tokens(self) -> TokenSet | None:
        """The current tokens, or None when not logged in."""
        return self._tokens

    @property
    def access_token(self) -> str | None:
        """The current access token (possibly about to be refreshed), or None."""
        tokens = self._tokens
        return tokens.access_token if tokens else None

    @property
    def dpop_enabled(self) -> bool:
        """True when logins carry a DPoP proof, so the sessions they open are bound."""
        return self._generate_keys or self._own_key is not None

    # -- session lifecycle ----------------------------------------------------------
    def login(
        self,
        username: str,
        password: str,
        device_id: str | None = None,
        *,
        scope: str | None = None,
    ) -> TokenSet:
        """Open a new session; raises InvalidCredentials, RateLimited, ServiceUnavailable.

        ``scope`` overrides the client's ``scope`` for this login.
        """
        body = {"username": username, "password": password}
        if device_id is not None:
            body["device_id"] = device_id
        if self.client_id is not None:
            body["client_id"] = self.client_id
        if (scope := scope if scope is not None else self.scope) is not None:
            body["scope"] = scope
        key = EcDpopKey.generate() if self._generate_keys else self._own_key
        envelope = self._send("POST", f"{API}/login", key=key, json=body).checked()
        stored = key.private_jwk() if isinstance(key, EcDpopKey) and self._generate_keys else None
        tokens = TokenSet.from_response(envelope["data"], dpop_jwk=stored)
        with self._lock:
            self._set(tokens)
        return tokens

    def refresh(self, scope: str | None = None) -> TokenSet:
        """Refresh now (shared with any refresh already in flight); the new tokens.

        ``scope`` narrows the session for good (RFC 6749 section 6: never wider than it
        holds, else ``invalid_scope`` and the tokens stay usable); a narrowing refresh
        always rotates, even just after another thread's.
        """
        return self._refresh(self._current(), scope=scope)

    def logout(self) -> None:
        """End this session on the server and forget the tokens; a no-op when logged out.

        A transport or 5xx failure raises and keeps the tokens, so the call can be retried.
        """
        if self._tokens is None:
            return
        # LoginRequired: the session was already over, nothing left to end.
        with contextlib.suppress(LoginRequired):
            self.post(f"{API}/logout")
        with self._lock:
            self._set(None)

    def logout_all(self) -> None:
        """End every session of the user (all devices) and forget the tokens."""
        self.post(f"{API}/logout-all")
        with self._lock:
            self._set(None)

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- authenticated calls ----------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``path`` with the access token; the envelope, or an AuthClientError.

        ``kwargs`` go to :meth:`requests.Session.request` (``json``, ``params``, ...).
        Refreshes first when the token is due, and once more (then retries the call) on
        ``401 token_expired`` or a session-over slug: the refresh's answer decides
        whether the session is over (:class:`SessionRevoked`, tokens cleared).
        """
        tokens = self.fresh_tokens()
        reply = self._send(method, path, tokens=tokens, **kwargs)
        if reply.error in RETRY_AFTER_REFRESH:
            # Expired on the way (clock drift), or this access token alone was revoked.
            tokens = self._refresh(tokens)
            reply = self._send(method, path, tokens=tokens, **kwargs)
        # A second refusal after a good refresh is raised as is: the session lives.
        return reply.checked()

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("GET", path, ...)``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("POST", path, ...)``."""
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("DELETE", path, ...)``."""
        return self.request("DELETE", path, **kwargs)

    # -- adapters for other HTTP clients -------------------------------------------------
    def requests_auth(self, *, origins: tuple[str, ...] | None = None) -> RequestsAuth:
        """A ``requests`` auth (``session.auth = client.requests_auth()``) for any API.

        ``origins`` (``"https://api.example.com"``, ...) limits where the token is sent.
        """
        from authsvc.client_auth import RequestsAuth  # lazily: it imports this module

        return RequestsAuth(self, origins=origins)

    def httpx_auth(self, *, origins: tuple[str, ...] | None = None) -> HttpxAuth:
        """An ``httpx.Auth`` for ``httpx.Client`` and ``httpx.AsyncClient`` (extra ``httpx``)."""
        from authsvc.client_httpx import HttpxAuth  # lazily: httpx is an optional extra

        return HttpxAuth(self, origins=origins)

    def fresh_tokens(self) -> TokenSet:
        """The tokens to send now: refreshed first when due.

        A due refresh that fails for a reason that may pass (an outage) does not stop the
        call while the access token in hand has not expired: it still works.
        """
        tokens = self._current()
        if time.time() < tokens.refresh_at(self.refresh_margin):
            return tokens
        try:
            return self._refresh(tokens)
        except TemporaryError:
            if time.time() >= tokens.access_expires_at:
                raise
            return tokens

    def recover(self, stale: TokenSet) -> TokenSet:
        """After a resource refused ``stale``'s access token: refresh once (single flight).

        Raises :class:`SessionRevoked` (tokens cleared) only on the refresh's own word.
        """
        return self._refresh(stale)

    # -- internals -------------------------------------------------------------------
    def _current(self) -> TokenSet:
        tokens = self._tokens
        if tokens is None:
            raise LoginRequired("not logged in", error="login_required")
        return tokens

    def _set(self, tokens: TokenSet | None) -> None:
        # Memory first: if the store fails (disk full), this process keeps the rotated
        # refresh token instead of falling back to the one just used up.
        self._tokens = tokens
        if tokens is None:
            self.store.clear()
        else:
            self.store.save(tokens)

    def _refresh(self, stale: TokenSet, *, scope: str | None = None) -> TokenSet:
        """Rotate ``stale``'s refresh token, unless another thread already did."""
        with self._lock:
            current = self._current()
            if current.refresh_token != stale.refresh_token and scope is None:
                # Refreshed by another thread while this one waited: use its result, as
                # presenting the rotated token again could count as reuse.
                return current
            try:
                tokens = self._rotate(current, scope)
            except AuthClientError as error:
                if error.error not in REFRESH_OVER_ERRORS:
                    raise  # nothing known to be lost: keep the token for a later try
                # The server itself says this refresh token can never work again.
                self._set(None)
                raise SessionRevoked(
                    str(error), code=error.code, error=error.error, data=error.data
                ) from error
            self._set(tokens)
            return tokens

    def _rotate(self, current: TokenSet, scope: str | None) -> TokenSet:
        """POST /refresh; a lost or refused answer is retried with the same token.

        Retrying is safe: a refused token was not rotated, and a lost answer is replayed
        by the server. Each attempt signs a new DPoP proof (a proof is never reused).
        """
        body = {"refresh_token": current.refresh_token}
        if scope is not None:
            body["scope"] = scope
        key = self._key_for(current) if current.bound else None
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                reply = self._send("POST", f"{API}/refresh", key=key, json=body)
                data = refresh_checked(reply)["data"]
                return TokenSet.from_response(data, dpop_jwk=current.dpop_jwk)
            except TemporaryError as error:
                # Jitter keeps a fleet of devices from retrying in lockstep.
                backoff = self.retry_backoff * 2**attempt * random.uniform(0.5, 1.0)  # noqa: S311
                delay = max(backoff, error.retry_after or 0)
                if (
                    attempt >= self.refresh_retries
                    or time.monotonic() - started + delay > REFRESH_RETRY_WINDOW
                ):
                    raise
                time.sleep(delay)
            attempt += 1
