"""Python client SDK for authsvc: log in, call APIs, refresh tokens safely, keep them.

For devices and services; it needs only ``requests`` (no Flask, no Redis)::

    store = FileTokenStore("/var/lib/thermostat/tokens.json")
    client = AuthClient("https://auth.example.com", token_store=store)
    if client.tokens is None:
        client.login("thermostat-42", password, device_id="thermostat-42")
    me = client.get("/api/v1/user/me")["data"]

What it does for you:

- attaches ``Authorization: Bearer <access token>`` to every call and returns the
  parsed ``{code, msg, data}`` envelope, or raises an :class:`AuthClientError`;
- refreshes the access token shortly before it expires (``refresh_margin``) and, if a
  call still comes back ``401 token_expired``, refreshes and retries that call once;
- runs at most one refresh at a time per client, across threads: a thread that waited
  for a refresh in progress uses its result instead of presenting a refresh token that
  has just been rotated (which the server would treat as reuse and end the session);
- retries a refresh whose answer was lost (connection error, timeout, 5xx) with the
  *same* refresh token: the server's grace window replays the pair it already issued,
  so the client converges instead of tripping reuse detection;
- forgets the tokens only when authsvc itself says the session is over
  (:data:`REFRESH_OVER_ERRORS`); a proxy's 401/403 page or a ``token_invalid`` is
  retried like a lost answer and then raised as :class:`RefreshRefused`, tokens kept;
- keeps the tokens in a pluggable :class:`TokenStore`; :class:`FileTokenStore` lets a
  device keep its session across reboots.

One client per token store: two processes refreshing from the same file would present
the same refresh token and one of them would eventually be seen as a replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import requests

__all__ = [
    "AuthClient",
    "AuthClientError",
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

log = logging.getLogger(__name__)

API = "/api/v1/user"
DEFAULT_TIMEOUT = 10.0
DEFAULT_REFRESH_MARGIN = 30.0
# The server replays a lost refresh answer for 20 s after the first rotation
# (AUTHSVC_REFRESH_GRACE_SECONDS). Retries are only sent within this many seconds of
# the first attempt, so none arrives after the window and counts as reuse.
REFRESH_RETRY_WINDOW = 15.0
# Envelope slugs on an API call that mean the session is over for good: the user must
# log in again, so the tokens are cleared.
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
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


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
    **dict.fromkeys(SESSION_OVER_ERRORS, SessionRevoked),
}


# -- tokens and where they are kept ---------------------------------------------------
@dataclass(frozen=True)
class TokenSet:
    """A token pair and when its access token expires, in this device's clock (epoch s)."""

    # Kept out of repr(): a TokenSet printed into a log must not carry its tokens.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    obtained_at: float
    session_id: str | None = None

    @classmethod
    def from_response(cls, data: dict[str, Any], now: float | None = None) -> TokenSet:
        """Build from a login/refresh answer's ``data``; ``expires_in`` counts from ``now``."""
        now = time.time() if now is None else now
        return cls(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            access_expires_at=now + float(data["expires_in"]),
            obtained_at=now,
            session_id=data.get("session_id"),
        )

    def refresh_at(self, margin: float) -> float:
        """When to refresh: ``margin`` s before expiry, at most half the token's life early.

        The cap keeps a margin larger than a short access-token lifetime from turning
        every call into a refresh.
        """
        lifetime = max(self.access_expires_at - self.obtained_at, 0.0)
        return self.access_expires_at - min(margin, lifetime / 2)

    def to_json(self) -> str:
        """The JSON a :class:`FileTokenStore` writes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        """Parse :meth:`to_json` output; ValueError or TypeError when it is not one."""
        return cls(**json.loads(text))


class TokenStore(Protocol):
    """Where a client keeps its tokens between calls (and, if persistent, between runs)."""

    def load(self) -> TokenSet | None:
        """The saved tokens, or None."""

    def save(self, tokens: TokenSet) -> None:
        """Replace the saved tokens."""

    def clear(self) -> None:
        """Forget the saved tokens."""


class MemoryTokenStore:
    """Tokens in memory only: the session ends with the process."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens

    def load(self) -> TokenSet | None:
        """The saved tokens, or None."""
        return self._tokens

    def save(self, tokens: TokenSet) -> None:
        """Replace the saved tokens."""
        self._tokens = tokens

    def clear(self) -> None:
        """Forget the saved tokens."""
        self._tokens = None


class FileTokenStore:
    """Tokens in a JSON file, mode 0600, replaced atomically: a device keeps its session.

    A crash or power loss mid-write leaves either the old or the new file, never a
    torn one, so the refresh token survives reboots.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> TokenSet | None:
        """The saved tokens; None when there is no file or it cannot be read as tokens."""
        try:
            return TokenSet.from_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            log.warning("ignoring unreadable token file %s: log in again", self.path)
            return None

    def save(self, tokens: TokenSet) -> None:
        """Write to a 0600 temporary file in the same directory, fsync, then os.replace."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 whatever the umask; the same directory
        # keeps os.replace a rename within one file system, hence atomic.
        fd, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(tokens.to_json())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    def clear(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # The rename itself is only durable once the directory entry reaches the disk.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- answers ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Reply:
    """One parsed answer; ``code`` is the envelope's (HTTP 200 in always200 mode lies)."""

    code: int
    msg: str
    data: Any
    envelope: dict[str, Any] | None
    retry_after: int | None

    @classmethod
    def parse(cls, response: requests.Response) -> _Reply:
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


def _refresh_checked(reply: _Reply) -> dict[str, Any]:
    """:meth:`_Reply.checked` for a refresh: a 401/403 without proof is RefreshRefused."""
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


# -- the client ----------------------------------------------------------------------
class AuthClient:
    """A logged-in session against one authsvc, safe to share between threads.

    ``refresh_margin``: refresh this many seconds before the access token expires.
    ``timeout``: per-request timeout (s). ``refresh_retries`` / ``retry_backoff``: how
    often and how patiently a refresh whose answer was lost is retried (exponential
    backoff with jitter, all within :data:`REFRESH_RETRY_WINDOW`). A ``session`` passed
    in is used as is and not closed by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        refresh_retries: int = 3,
        retry_backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.refresh_retries = refresh_retries
        self.retry_backoff = retry_backoff
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        # Guards _tokens and the store; held for the whole of a refresh (single flight).
        self._lock = threading.Lock()
        self._tokens = self.store.load()

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

    # -- session lifecycle ----------------------------------------------------------
    def login(self, username: str, password: str, device_id: str | None = None) -> TokenSet:
        """Open a new session; raises InvalidCredentials, RateLimited, ServiceUnavailable."""
        body = {"username": username, "password": password}
        if device_id is not None:
            body["device_id"] = device_id
        envelope = self._send("POST", f"{API}/login", json=body).checked()
        tokens = TokenSet.from_response(envelope["data"])
        with self._lock:
            self._set(tokens)
        return tokens

    def refresh(self) -> TokenSet:
        """Refresh now (shared with any refresh already in flight) and return the new tokens."""
        return self._refresh(self._current())

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
        Refreshes first when the token is due, and once more on ``401 token_expired``.
        """
        tokens = self._current()
        if time.time() >= tokens.refresh_at(self.refresh_margin):
            tokens = self._refresh(tokens)
        reply = self._send_with(tokens, method, path, kwargs)
        if reply.error == "token_expired":
            # Clock drift or a small margin let the token lapse on the way.
            tokens = self._refresh(tokens)
            reply = self._send_with(tokens, method, path, kwargs)
        try:
            return reply.checked()
        except SessionRevoked:
            self._forget(tokens)
            raise

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("GET", path, ...)``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("POST", path, ...)``."""
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request("DELETE", path, ...)``."""
        return self.request("DELETE", path, **kwargs)

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

    def _forget(self, stale: TokenSet) -> None:
        """Clear the tokens if they are still ``stale`` (not a newer login's)."""
        with self._lock:
            if self._tokens is not None and self._tokens.refresh_token == stale.refresh_token:
                self._set(None)

    def _refresh(self, stale: TokenSet) -> TokenSet:
        """Rotate ``stale``'s refresh token, unless another thread already did."""
        with self._lock:
            current = self._current()
            if current.refresh_token != stale.refresh_token:
                # Refreshed by another thread while this one waited: use its result, as
                # presenting the rotated token again could count as reuse.
                return current
            try:
                tokens = self._rotate(current.refresh_token)
            except AuthClientError as error:
                if error.error not in REFRESH_OVER_ERRORS:
                    raise  # nothing known to be lost: keep the token for a later try
                # The server itself says this refresh token can never work again.
                self._set(None)
                if isinstance(error, SessionRevoked):
                    raise
                raise SessionRevoked(
                    str(error), code=error.code, error=error.error, data=error.data
                ) from error
            self._set(tokens)
            return tokens

    def _rotate(self, refresh_token: str) -> TokenSet:
        """POST /refresh; a lost or refused answer is retried with the same token.

        Retrying is safe: a refused token was not rotated, and a lost answer is replayed
        by the server's grace window.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                reply = self._send("POST", f"{API}/refresh", json={"refresh_token": refresh_token})
                return TokenSet.from_response(_refresh_checked(reply)["data"])
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

    def _send_with(
        self, tokens: TokenSet, method: str, path: str, kwargs: dict[str, Any]
    ) -> _Reply:
        headers = {
            **(kwargs.get("headers") or {}),
            "Authorization": f"Bearer {tokens.access_token}",
        }
        return self._send(method, path, **{**kwargs, "headers": headers})

    def _send(self, method: str, path: str, **kwargs: Any) -> _Reply:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self._session.request(method, self.base_url + path, **kwargs)
        except _TRANSPORT_ERRORS as error:
            raise ServiceUnavailable(
                f"no answer from {self.base_url}: {type(error).__name__}",
                error="connection_failed",
            ) from error
        return _Reply.parse(response)
