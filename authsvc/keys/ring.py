"""The keys one worker signs and verifies with, following its source's changes."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import redis

from authsvc.events import emit
from authsvc.keys.directory import KeyDirectory
from authsvc.keys.model import (
    HMAC_ALGORITHMS,
    KeySource,
    RingState,
    SigningKey,
    hmac_kid,
    load_pem,
    ring_at,
    thumbprint_kid,
)

_REDIS_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

log = logging.getLogger("authsvc.keys")
_RELOAD_INTERVAL_SECONDS = 1.0
# An unknown kid rereads the source at most this often per worker: a flood of made-up
# kids costs one Redis GET (or one stat) a second, not one per request.
_FORCED_RELOAD_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class ReloadFailure:
    """Why the last reload of the keys failed; the last good keys still serve."""

    reason: str  # the exception class: safe to show on /readyz (no path, no key)
    detail: str  # the message, for the log
    since: int  # Unix time of the first failure in a row


class KeyRing:
    """The keys one worker signs and verifies with, following its source's changes.

    Every second at most (:meth:`refresh`, before each request) it compares the
    source's version with the one it loaded and rereads on a change; a token under a
    kid it does not know forces one more check, at most once a second. Activation
    times need no reread: the signer changes when the clock reaches them.

    A reload that fails (a manifest naming a missing or unreadable key, a truncated
    manifest, a Redis record that fails authentication, a ring older than one already
    seen, Redis unreachable) keeps the last good keys: one error line per distinct
    failure, the ``key_reload_failed`` event (metrics) on each try,
    :attr:`reload_failure` for ``/readyz``. A first load that fails, in the
    constructor, falls back to the source's snapshot (the Redis ring's last good
    keys, reported stale in the same way); only without one does it raise: a process
    whose host never had good keys must not start.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        keep_seconds: int,
        secret: str = "",
        key_dir: str = "",
        private_key_file: str = "",
        source: KeySource | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithm = algorithm
        self.keep_seconds = keep_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._source: KeySource | None = source
        self._keys: list[SigningKey] = []
        self._checked_at = -math.inf
        self._forced_at = -math.inf
        self._loaded_version: object = None
        self.reload_failure: ReloadFailure | None = None
        if algorithm in HMAC_ALGORITHMS:
            self._set_fixed(SigningKey(hmac_kid(secret), algorithm, secret, secret))
        elif private_key_file:
            pem = Path(private_key_file).read_bytes()
            self._set_fixed(load_pem(Path(private_key_file), algorithm, thumbprint_kid(pem), None))
        else:
            if self._source is None:
                self._source = KeyDirectory(Path(key_dir), algorithm)
            self._checked_at = monotonic()
            try:
                self._load()
            except Exception as error:  # whatever is wrong with the source at boot
                self._boot_from_last_good(error)

    def _boot_from_last_good(self, error: Exception) -> None:
        """Start with the snapshot's keys, reported stale; re-raise without one.

        A worker restarted (a crash, an OOM kill, gunicorn's timeout) while the ring is
        bad or Redis does not answer must not fail to boot: gunicorn's master would
        exit, and with it every worker of the host.
        """
        assert self._source is not None  # noqa: S101 - only called with a source
        try:
            keys = self._source.last_good()
        except Exception:  # a snapshot that cannot be opened is no snapshot
            keys = None
        if not keys:
            raise error  # this host never had good keys: it must not start
        self._apply(keys)
        self._keys = keys
        log.error(
            "cannot load the keys in %s at startup (%s: %s); serving the last good keys "
            "of this host's snapshot, reported stale until the ring is good again",
            self._source.describe(),
            type(error).__name__,
            error,
        )
        self._reload_failed(error)
        # The first request checks again: recovery as soon as the ring is good, and the
        # failure counted in its metrics (no app context to count it in here).
        self._checked_at = -math.inf

    def _set_fixed(self, key: SigningKey) -> None:
        self._state = RingState(key, (key,), math.inf)
        self._by_kid = {key.kid: key}

    def _apply(self, keys: list[SigningKey]) -> None:
        state = ring_at(keys, self._clock(), self.keep_seconds)
        # The dict first, then the state: a thread that sees the new signer also knows
        # its kid (the dict alone is never missing a key the state names).
        self._by_kid = {key.kid: key for key in state.verifying}
        self._state = state

    def _load(self, version: object = None) -> None:
        assert self._source is not None  # noqa: S101 - only called with a source
        # The version before the keys: a change in between is seen again next time.
        if version is None:
            version = self._source.version()
        keys = self._source.records()
        self._apply(keys)
        self._keys = keys
        self._loaded_version = version

    def _advance(self) -> None:
        """Recompute the ring when an activation or expiry time has passed (no I/O)."""
        if self._clock() < self._state.next_change:
            return
        with self._lock:
            if self._clock() >= self._state.next_change:
                self._apply(self._keys)

    def refresh(self) -> None:
        """Pick up a change of the source (checks its version at most once a second)."""
        if self._source is None:
            return
        self._advance()
        if self._monotonic() - self._checked_at < _RELOAD_INTERVAL_SECONDS:
            return
        # One thread checks; the others go on with the keys they have.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._monotonic() - self._checked_at >= _RELOAD_INTERVAL_SECONDS:
                self._check()
        finally:
            self._lock.release()

    def _force_check(self) -> None:
        """An unknown kid: check the source now, unless this worker did in the last second."""
        with self._lock:
            if self._monotonic() - self._forced_at < _FORCED_RELOAD_INTERVAL_SECONDS:
                return
            self._forced_at = self._monotonic()
            self._check(raise_outage=True)

    def _check(self, *, raise_outage: bool = False) -> None:
        assert self._source is not None  # noqa: S101 - only called with a source
        self._checked_at = self._monotonic()
        try:
            version = self._source.version()
            if version != self._loaded_version:
                self._load(version)
        except Exception as error:  # whatever is wrong with the source: keep serving
            # The version stays unrecorded, so the next check (a second later) tries
            # again and picks up the repair.
            self._reload_failed(error)
            if raise_outage and isinstance(error, _REDIS_OUTAGE):
                # A token under a kid only Redis could tell about: 503, try again, not
                # a 401 that would sign its holder out.
                raise
            return
        if self.reload_failure is not None:
            log.info("keys in %s reloaded: the reload error is resolved", self._source.describe())
            self.reload_failure = None
            emit("key_reload_recovered")

    def _reload_failed(self, error: Exception) -> None:
        reason, detail = type(error).__name__, str(error)
        previous = self.reload_failure
        if previous is None or (previous.reason, previous.detail) != (reason, detail):
            log.error(
                "cannot reload the keys in %s (%s: %s); still serving the last good keys",
                self._source.describe() if self._source else "-",
                reason,
                detail,
            )
            since = previous.since if previous else int(time.time())
            self.reload_failure = ReloadFailure(reason, detail, since)
        emit("key_reload_failed", reason=reason)

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        self._advance()
        return self._state.active

    def verifying_key(self, kid: str | None) -> Any:
        """The key for ``kid``; an unknown or missing kid makes the token invalid.

        An unknown kid first forces one check of the source (rate-limited per worker):
        a key another host just published is found at once, not a second later.
        """
        self._advance()
        key = self._by_kid.get(kid or "")
        if key is None and kid and self._source is not None:
            self._force_check()
            key = self._by_kid.get(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return key.verifying_key

    def state(self) -> RingState:
        """The ring now: signer, verifying keys (retired and pending), next change."""
        self._advance()
        return self._state

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: every key still verifying, pending ones included.

        Never an HMAC secret.
        """
        keys = [jwk for key in self.state().verifying if (jwk := key.public_jwk()) is not None]
        return {"keys": keys}
