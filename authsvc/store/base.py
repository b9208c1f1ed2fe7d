"""What every store class shares: the Redis client type, the clock and reply decoding."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

# What the store runs on: one server (or a Sentinel-managed master) or a Redis Cluster.
RedisClient = redis.Redis | RedisCluster


class Script:
    """A Lua script, called as redis-py's ``Script`` is, for less work per call.

    redis-py's ``Script.__call__`` imports its Pipeline class and checks the client
    against it on every call, then goes through ``evalsha``: about 4 µs of the ~100 µs
    a ``GET /me`` costs in process. Called on its own client this sends ``EVALSHA``
    itself; on ``NOSCRIPT`` (a restarted or just-promoted master) redis-py's script
    loads it and sends it again, as it always did. With ``client`` (a pipeline) the
    call is redis-py's own.
    """

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._registered = client.register_script(source)
        self.script = source
        self.sha = self._registered.sha

    def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """The script's reply: ``EVALSHA`` with ``keys`` and ``args``."""
        if client is not None:
            return self._registered(keys=keys, args=args, client=client)
        try:
            return self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self._registered(keys=keys, args=args)


def now_ms() -> int:
    """Wall-clock milliseconds; every host must run NTP since not-before compares them."""
    return time.time_ns() // 1_000_000


def _roles(raw: str | None) -> tuple[str, ...]:
    return tuple(r for r in (raw or "").split(",") if r)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
