"""What each piece of a request costs, in microseconds: the per-request cost breakdown.

Each line is the fastest of many repeats of one operation (on a shared, busy machine
noise only ever adds), in this process, with the app's default settings over fakeredis;
the Redis round trip is measured against --redis-url when given.

    .venv/bin/python benchmarks/micro.py [--redis-url redis://127.0.0.1:6379/11]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

# Multiprocess metrics, as under gunicorn: set before prometheus_client is imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="authsvc-micro-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fakeredis
import redis

from authsvc import create_app, tokens
from authsvc.errors import ok
from authsvc.logs import JsonFormatter, log_request, request_log
from authsvc.observability import metrics_of

SECRET = "micro-benchmark-secret-0123456789abcdef0123456789"


def best_us(operation: Callable[[], object], number: int = 500, repeat: int = 30) -> float:
    """The fastest of ``repeat`` runs of ``number`` calls, per call, in microseconds."""
    return min(timeit.repeat(operation, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    """Print one line per operation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="also time one EXISTS round trip to this Redis")
    args = parser.parse_args()

    app = create_app(
        {"JWT_SECRET": SECRET, "REDIS_URL": "redis://unused"},
        redis_client=fakeredis.FakeRedis(decode_responses=True),
    )
    now = int(time.time())

    def mint() -> tokens.TokenPair:
        return tokens.mint_pair(
            user_id="0123456789abcdef0123456789abcdef",
            session_id="Zx3abcdefghijklmnopqrs",
            roles=(),
            refresh_jti="refresh-jti-0123456789",
            access_jti="access-jti-0123456789a",
            issued_at=now,
            session_expires_at=now + 30 * 24 * 3600,
            access_ttl=900,
            client_id="default",
            scope="profile",
        )

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(JsonFormatter())
    request_log.addHandler(handler)
    request_log.propagate = False
    metrics = metrics_of(app)
    rows: list[tuple[str, float]] = []
    with app.test_request_context("/api/v1/user/me", headers={"X-Request-ID": "rid-1"}):
        from flask import g

        g.request_id = "rid-1"
        pair = mint()
        rows.append(("verify an access token (parse, HMAC, claims)",
                     best_us(lambda: tokens.verify(pair.access_token, tokens.ACCESS))))  # fmt: skip
        rows.append(("mint an access + refresh pair", best_us(mint)))
        request_log.setLevel(logging.INFO)
        rows.append(("request log line at INFO (record, JSON, write)",
                     best_us(lambda: log_request("user.me", 200, 0.000123))))  # fmt: skip
        request_log.setLevel(logging.WARNING)
        rows.append(("request log line, logger above INFO",
                     best_us(lambda: log_request("user.me", 200, 0.000123))))  # fmt: skip
        observe = lambda: metrics.observe_request("user.me", 200, 0.000123)  # noqa: E731
        rows.append(("metrics: count + latency histogram (multiprocess)", best_us(observe)))
        data = {"user_id": "0123456789abcdef0123456789abcdef", "username": "bench1",
                "roles": [], "session_id": "Zx3abcdefghijklmnopqrs"}  # fmt: skip
        rows.append(("the envelope response (ok(data))", best_us(lambda: ok(data))))
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        client.ping()
        rows.append(("one Redis round trip (EXISTS)", best_us(lambda: client.exists("x"), 200, 20)))
    width = max(len(name) for name, _ in rows)
    for name, micros in rows:
        print(f"{name:<{width}}  {micros:8.2f} us")


if __name__ == "__main__":
    main()
