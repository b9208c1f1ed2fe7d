"""argon2id hashing with OWASP parameters, a dummy hash for unknown users, rehash policy.

Hashes run on a small pool of threads, one per CPU core this process has to itself:
the cores shared among the server's worker processes (``AUTHSVC_HASH_CONCURRENCY``, by
default the cores divided by the gunicorn workers, rounded up). Whatever the number of
request threads, at most that many argon2 computations run at once in a worker and the
others queue. That keeps memory flat (each hash needs ``memory_kib``, and glibc keeps a
freed block in the arena of the thread that used it, so the same few threads must do
all the hashing, not merely a few at a time) and loses no throughput (argon2 is
CPU-bound: more hashes than cores only take turns on them; 2 workers with a thread per
core each held 4 hashes' memory for 2 cores).
"""

from __future__ import annotations

import contextlib
import math
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


def share_of_cores(cores: int, processes: int) -> int:
    """Hashes one process may run at once: its share of ``cores``, rounded up, at least 1.

    Rounded up so that no core idles while every process is busy (3 workers on 4 cores:
    2 each); fewer than that would leave cores idle, more only take turns on them.
    """
    return max(1, math.ceil(cores / max(1, processes)))


class _HashingThreads:
    """The process's argon2 threads: its share of the cores, started on first use.

    New threads after a fork. The number is :meth:`configure`'s ``limit``, else the
    cores shared among the server's worker processes (1 outside gunicorn: all cores).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_size = 0
        self._limit = 0  # 0: automatic
        self._processes = 1
        self._pending = 0  # asked for and not finished (running or queued)
        # A gunicorn worker forked from a master that hashed (quick start's demo user)
        # must not wait on threads that only exist in the master.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._executor = None
        self._pending = 0

    @property
    def size(self) -> int:
        """How many hashes may run at once in this process."""
        return self._limit or share_of_cores(cpu_cores(), self._processes)

    def configure(self, *, limit: int | None = None, processes: int | None = None) -> None:
        """Set the bound (``limit``, 0: automatic) or the server's worker processes.

        Hashes asked for after this run on threads of the new number; those already
        queued finish on the old ones, which then exit.
        """
        with self._lock:
            if limit is not None:
                self._limit = limit
            if processes is not None:
                self._processes = processes
            executor = self._executor
            if executor is not None and self._executor_size != self.size:
                self._executor = None
                # Its queued hashes still run (and were submitted under this lock).
                executor.shutdown(wait=False)

    def pending(self) -> int:
        """Hashes asked for and not finished yet: running, or queued for a thread."""
        return self._pending

    def run(self, work: Callable[..., T], *args: str) -> T:
        """``work(*args)`` on a hashing thread; waits in the queue while all are busy."""
        with self._lock:
            if self._executor is None:
                self._executor_size = self.size
                self._executor = ThreadPoolExecutor(
                    self._executor_size, thread_name_prefix="argon2"
                )
            self._pending += 1
            future = self._executor.submit(work, *args)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending -= 1


hashing_threads = _HashingThreads()


class Passwords:
    """Hash and verify passwords; verification of an unknown user costs the same time."""

    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        concurrency: int | None = None,
    ) -> None:
        """argon2id at these parameters; ``concurrency`` bounds the process's hashes.

        ``concurrency`` (``AUTHSVC_HASH_CONCURRENCY``) is for the whole process, which
        has one set of hashing threads: 0 means its share of the CPU cores, None leaves
        the process's setting as it is.
        """
        if concurrency is not None:
            hashing_threads.configure(limit=concurrency)
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
