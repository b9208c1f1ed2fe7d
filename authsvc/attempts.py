"""Login attempts as the flows use them: counted, settled, handed back after an outage.

Counted before the password check, settled after a right one, handed back when an
outage hid their outcome. The Redis side is :mod:`authsvc.store_login`; the budgets
are in docs/concepts/sessions.md ("Login throttling"). Used by the login and the
password change (a wrong current password counts like a failed login).
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.store import Store, User
from authsvc.store_login import Attempt, Limits, LoginStore


class LoginAttempts:
    """Count, settle and hand back login attempts under the configured budgets."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = LoginStore(store)
        self.limits = Limits(
            account=settings.login_max_failures_per_account,
            network=settings.login_max_failures_per_ip,
            window_ms=settings.login_failure_window * 1000,
        )
        # A network a login succeeded from is known for as long as its session may live.
        self.known_ms = settings.refresh_token_ttl * 1000

    @staticmethod
    def new(name: str, network: str) -> Attempt:
        """A new attempt on account ``name`` from client ``network`` (a random id)."""
        return Attempt(name, network, secrets.token_urlsafe(16))

    def begin(
        self, attempt: Attempt, ip: str, *, flow: str = "login", lookup: bool = True
    ) -> User | None:
        """Count ``attempt`` before the password check; the user (with ``lookup``) or None.

        Counted before the (slow) check, so parallel guesses cannot all pass the limit;
        past a budget, ``too_many_attempts`` (counted nowhere). Per account, each
        network the account logged in from has its own budget and all others share
        one; per client network, one budget.
        """
        begun = self.store.begin(attempt, self.limits, lookup=lookup)
        if begun.wait_ms > 0:
            emit("login_throttled", ip=ip, flow=flow)
            retry_after = max(1, math.ceil(begun.wait_ms / 1000))
            raise AuthError("too_many_attempts", retry_after=retry_after)
        return begun.user

    def finisher(
        self, attempt: Attempt, verified_hash: str, new_hash: str | None
    ) -> Callable[..., bool]:
        """A ``create_session`` that also settles ``attempt`` and upgrades the hash.

        Called like :meth:`Store.create_session`; one script on one Redis.
        """
        return functools.partial(
            self.store.finish,
            attempt=attempt,
            known_ms=self.known_ms,
            verified_hash=verified_hash,
            new_hash=new_hash,
        )

    def settle(self, attempt: Attempt) -> None:
        """A right password with no session to open: hand ``attempt`` back."""
        self.store.settle(attempt, known_ms=self.known_ms)

    @contextmanager
    def handed_back_if_cut_off(self, attempt: Attempt) -> Iterator[None]:
        """Hand ``attempt`` back later when something other than a verdict ends it.

        A wrong password or a disabled account is an answer (the attempt stays
        counted) and a refusal counted nothing; a Redis error (or a bug) may hide a
        counted attempt whose password was never checked, or a right one not yet
        settled. The next login of this process hands it back.
        """
        try:
            yield
        except AuthError:
            raise
        except Exception:
            self.store.hand_back_later(attempt, window_ms=self.limits.window_ms)
            raise
