"""argon2id hashing with OWASP parameters, a dummy hash for unknown users, rehash policy.

Hashes run on a small pool of threads, one per CPU core: whatever the number of
request threads, at most that many argon2 computations run at once in a worker and the
others queue. That keeps memory flat (each hash needs ``memory_kib``, and glibc keeps a
freed block in the arena of the thread that used it, so the same few threads must do
all the hashing, not merely a few at a time) and loses no throughput (argon2 is
CPU-bound: more hashes than cores only thrash the caches).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD_LENGTH = 128

T = TypeVar("T")


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _HashingThreads:
    """The process's argon2 threads: one per core, started on first use, new after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        # A gunicorn worker forked from a master that hashed (quick start's demo user)
        # must not wait on threads that only exist in the master.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._executor = None

    @property
    def size(self) -> int:
        """How many hashes may run at once in this process."""
        return cpu_cores()

    def run(self, work: Callable[..., T], *args: str) -> T:
        """``work(*args)`` on a hashing thread; waits in the queue while all are busy."""
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="argon2")
                executor = self._executor
        return executor.submit(work, *args).result()


hashing_threads = _HashingThreads()


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
        self._dummy_hash = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """An argon2id PHC string for ``password``."""
        return hashing_threads.run(self._hasher.hash, password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored_hash``.

        With no hash (unknown user) or an unreadable one, a dummy hash is verified
        instead so that every "no" takes the same time.
        """
        try:
            stored = stored_hash or self._dummy_hash
            return hashing_threads.run(self._hasher.verify, stored, password)
        except InvalidHashError:
            self._verify_dummy(password)
            return False
        except VerificationError:
            return False

    def _verify_dummy(self, password: str) -> None:
        with contextlib.suppress(VerificationError):
            hashing_threads.run(self._hasher.verify, self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self._hasher.check_needs_rehash(stored_hash)
