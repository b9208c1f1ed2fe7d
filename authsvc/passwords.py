"""argon2id hashing with OWASP parameters, a dummy hash for unknown users, rehash policy."""

from __future__ import annotations

import contextlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD_LENGTH = 128


class Passwords:
    """Hash and verify passwords; verification of an unknown user costs the same time."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Verified against when the username does not exist, so that "no such user"
        # and "wrong password" take the same time (OWASP Authentication Cheat Sheet).
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """An argon2id PHC string for ``password``."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored_hash``.

        With no hash (unknown user) or an unreadable one, a dummy hash is verified
        instead so that every "no" takes the same time.
        """
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password)
        except InvalidHashError:
            self._verify_dummy(password)
            return False
        except VerificationError:
            return False

    def _verify_dummy(self, password: str) -> None:
        with contextlib.suppress(VerificationError):
            self._hasher.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self._hasher.check_needs_rehash(stored_hash)
