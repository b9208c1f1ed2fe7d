"""What every store class shares: the Redis client type, the clock and reply decoding."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

# What the store runs on: one server (or a Sentinel-managed master) or a Redis Cluster.
RedisClient = redis.Redis | RedisCluster


class ThreadClients:
    """For one server's client: a client per thread with a connection of its own.

    redis-py's pool lends a connection for each command and takes it back after it: a
    lock, a process-id check (a system call) and a readiness ``poll`` (another) to lend
    it, a lock and a process-id check to take it back; about 30 µs of the ~90 µs of CPU
    a script call costs its caller (docs/performance.md, sixth pass). Each thread here
    calls through redis-py's own single-connection client over the same pool
    (``Redis.client()``): the same timeouts, retry policy, health check and reconnects,
    and the connection is lent once, for the thread's life. That is one connection per
    thread that calls a script (in a gunicorn worker, each request thread), given back
    when the thread ends. After a fork each thread starts over.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._local = threading.local()

    def current(self) -> redis.Redis:
        """The calling thread's client; the shared one while its commands are wrapped.

        A client whose ``execute_command`` was wrapped on the instance (OpenTelemetry's
        ``instrument_client``) is used as it is, so that the wrapper sees every command.
        """
        if "execute_command" in vars(self._client):
            return self._client
        try:
            client: redis.Redis = self._local.client
        except AttributeError:
            client = self._local.client = self._client.client()
        return client

    def forget(self) -> None:
        """Drop every thread's client (after a fork they hold the parent's connections)."""
        self._local = threading.local()


# One set of thread clients per Redis client, shared by all its scripts.
_thread_clients: weakref.WeakKeyDictionary[Any, ThreadClients] = weakref.WeakKeyDictionary()
_thread_clients_lock = threading.Lock()


def _forget_thread_clients() -> None:
    for clients in list(_thread_clients.values()):
        clients.forget()


os.register_at_fork(after_in_child=_forget_thread_clients)


def thread_clients(client: RedisClient) -> ThreadClients | None:
    """``client``'s :class:`ThreadClients`; None for a Cluster (its own routing) or a pipeline."""
    if not isinstance(client, redis.Redis) or isinstance(client, Pipeline):
        return None
    with _thread_clients_lock:
        found = _thread_clients.get(client)
        if found is None:
            found = _thread_clients[client] = ThreadClients(client)
        return found


class Script:
    """A Lua script, called as redis-py's ``Script`` is, for less work per call.

    redis-py's ``Script.__call__`` imports its Pipeline class and checks the client
    against it on every call, then goes through ``evalsha``: about 4 µs of the ~100 µs
    a ``GET /me`` costs in process. Called on its own client this sends ``EVALSHA``
    itself, on this thread's connection (:class:`ThreadClients`); on ``NOSCRIPT`` (a
    restarted or just-promoted master) redis-py's script loads it and sends it again,
    as it always did. With ``client`` (a pipeline) the call is redis-py's own.
    """

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._thread_clients = thread_clients(client)
        self._registered = client.register_script(source)
        self.script = source
        self.sha = self._registered.sha

    def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """The script's reply: ``EVALSHA`` with ``keys`` and ``args``."""
        if client is not None:
            return self._registered(keys=keys, args=args, client=client)
        own = self._thread_clients.current() if self._thread_clients else self._client
        try:
            return own.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self._registered(keys=keys, args=args)


def now_ms() -> int:
    """Wall-clock milliseconds; every host must run NTP since not-before compares them."""
    return time.time_ns() // 1_000_000


def _roles(raw: str | None) -> tuple[str, ...]:
    return tuple(r for r in (raw or "").split(",") if r)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
