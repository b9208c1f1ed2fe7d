"""S1 (GET /me) with tracing off and on, side by side, in this process.

The full Flask stack through the test client, over a real Redis; "on" is what
OTEL_EXPORTER_OTLP_ENDPOINT gives (the Flask and Redis instrumentations, the scrubbing
processor, the batch processor) with an exporter that drops the batches, so the
network cost of a collector is left out. CPU microseconds per request (process time,
every thread), best of many repeats (noise only ever adds); run it pinned to one core:

    taskset -c 1 .venv/bin/python benchmarks/tracing.py [--redis-url redis://127.0.0.1:6379/7]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="authsvc-tracing-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fakeredis
import redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from authsvc import create_app, tracing
from authsvc.config import Settings
from authsvc.factory import make_redis

SECRET = "tracing-benchmark-secret-0123456789abcdef0123456789"
PASSWORD = "benchmark password 123"


class DropExporter(SpanExporter):
    """Counts the spans it is handed and sends them nowhere."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def s1_request(redis_url: str | None, traced: bool) -> tuple[Callable[[], None], Callable[[], int]]:
    """A GET /me callable on a fresh app (tracing off or on), and its span count."""
    client = (
        make_redis(Settings(redis_url=redis_url))
        if redis_url
        else fakeredis.FakeRedis(decode_responses=True)
    )
    exporter = DropExporter()
    provider = tracing.make_provider(exporter) if traced else None
    app = create_app(
        {"JWT_SECRET": SECRET, "REDIS_URL": "redis://unused", "REDIS_KEY_PREFIX": "bench-tracing"},
        redis_client=client,
        tracer_provider=provider,
    )
    username = f"bench-{'on' if traced else 'off'}-{os.getpid()}"
    app.extensions["authsvc"].add_user(username, PASSWORD)
    http = app.test_client()
    login = http.post("/api/v1/user/login", json={"username": username, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.get_json()['data']['access_token']}"}

    def me() -> None:
        assert http.get("/api/v1/user/me", headers=headers).status_code == 200  # noqa: S101

    def spans() -> int:
        if provider is not None:
            provider.force_flush()
        return exporter.spans

    return me, spans


def python_calls(operation: Callable[[], None], number: int) -> float:
    """Python function calls per ``operation``: a count, the same on a busy machine."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(number):
        operation()
    profile.disable()
    return pstats.Stats(profile).total_calls / number  # type: ignore[attr-defined]


def main() -> None:
    """Print S1 per-request CPU time and Python calls, tracing off and on."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a real Redis (default: fakeredis)")
    parser.add_argument("--number", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    variants = {name: s1_request(args.redis_url, name == "on") for name in ("off", "on")}
    best = dict.fromkeys(variants, float("inf"))
    # Interleaved rounds: both variants see the same machine; the best round of each.
    # CPU time of the whole process (the batch processor's thread included): unlike
    # wall time, hardly moved by other processes' waiting.
    for _ in range(args.rounds):
        for name, (me, _) in variants.items():
            timer = timeit.Timer(me, timer=time.process_time)
            best[name] = min(best[name], timer.timeit(args.number) / args.number * 1e6)
    calls = {name: python_calls(me, 200) for name, (me, _) in variants.items()}
    for name, (_, spans) in variants.items():
        print(
            f"S1 GET /me, tracing {name:3s}: {best[name]:7.1f} CPU us/request, "
            f"{calls[name]:6.0f} Python calls/request, {spans()} spans exported"
        )
    print(
        f"on / off: CPU {best['on'] / best['off']:.2f}x (+{best['on'] - best['off']:.0f} us), "
        f"calls {calls['on'] / calls['off']:.2f}x (+{calls['on'] - calls['off']:.0f})"
    )
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter("bench-tracing*"):
            client.delete(key)


if __name__ == "__main__":
    main()
