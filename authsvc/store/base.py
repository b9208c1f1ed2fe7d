"""What every store class shares: the Redis client type, the clock and reply decoding."""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.cluster import RedisCluster

# What the store runs on: one server (or a Sentinel-managed master) or a Redis Cluster.
RedisClient = redis.Redis | RedisCluster


def now_ms() -> int:
    """Wall-clock milliseconds; every host must run NTP since not-before compares them."""
    return time.time_ns() // 1_000_000


def _roles(raw: str | None) -> tuple[str, ...]:
    return tuple(r for r in (raw or "").split(",") if r)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
