"""argon2id work the tests need not repeat: each hash at the OWASP floor costs about 30 ms
of CPU, and the suite would otherwise make thousands that prove nothing new.

- Every app hashes a random password when it is built (``Passwords``' dummy hash, which an
  unknown user's login is verified against). About 1,300 tests build an app: each worker
  process makes one dummy hash per parameter set and every later ``Passwords`` with the
  same parameters gets that one (:func:`one_dummy_hash_per_parameters`, on for the whole
  run from conftest). It is still a real argon2id hash of a random password with those
  parameters, so an unknown user's login still runs one real verification.
- The ``user`` fixture (about 850 tests) creates alice through ``AuthService.add_user``
  with her password hashed once per worker and parameter set (:func:`add_user_hashing_once`).
  Tests of account creation itself call ``add_user`` and hash as the product does.

Logins still verify with argon2 at the configured parameters: that is what they test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from authsvc.passwords import Passwords
from authsvc.service import AuthService

# (time_cost, memory_kib, parallelism) -> the dummy hash of the first Passwords built.
_dummy_hashes: dict[tuple[int, int, int], str] = {}
# (time_cost, memory_kib, parallelism, password) -> one hash of that password.
_hashes: dict[tuple[int, int, int, str], str] = {}


def _parameters(passwords: Passwords) -> tuple[int, int, int]:
    hasher = passwords._hasher
    return hasher.time_cost, hasher.memory_cost, hasher.parallelism


@contextlib.contextmanager
def one_dummy_hash_per_parameters() -> Iterator[None]:
    """While open, a ``Passwords`` built with parameters seen before reuses the dummy hash
    made then instead of hashing a new random password."""
    original = Passwords.__init__

    def init(self: Passwords, **arguments: Any) -> None:
        key = (arguments["time_cost"], arguments["memory_kib"], arguments["parallelism"])
        known = _dummy_hashes.get(key)
        if known is not None:
            # The only hash __init__ makes is its dummy; an instance attribute, so no
            # other Passwords (another thread's) is affected.
            self.hash = lambda password: known  # type: ignore[method-assign]
        try:
            original(self, **arguments)
        finally:
            self.__dict__.pop("hash", None)
        _dummy_hashes.setdefault(key, self._dummy_hash)

    Passwords.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        Passwords.__init__ = original  # type: ignore[method-assign]


def add_user_hashing_once(
    service: AuthService, username: str, password: str, roles: tuple[str, ...] = ()
) -> Any:
    """``service.add_user(username, password, roles)``, the password's hash made once per
    worker for the service's parameters and reused (a valid argon2id hash of ``password``)."""
    passwords = service.passwords
    if "hash" in passwords.__dict__:  # a test's own stand-in: leave it alone
        return service.add_user(username, password, roles)
    key = (*_parameters(passwords), password)
    if key not in _hashes:
        _hashes[key] = passwords.hash(password)
    hashed = _hashes[key]

    def hash_once(candidate: str) -> str:
        return hashed if candidate == password else Passwords.hash(passwords, candidate)

    passwords.hash = hash_once  # type: ignore[method-assign]
    try:
        return service.add_user(username, password, roles)
    finally:
        passwords.__dict__.pop("hash", None)
