"""Benchmark a real `authsvc serve`: throughput, latency percentiles and Redis round trips.

Starts the service (gunicorn, N workers) on 127.0.0.1, against --redis-url when given,
else in quick-start mode with an embedded Redis in a temporary instance folder; creates
a user; then drives a bounded number of requests from C threads (one requests.Session
each) and prints a table. Redis commands per request come from INFO commandstats deltas,
so with a shared --redis-url other clients' traffic shows up in them.

    python scripts/bench.py --workers 2 --requests 2000 --concurrency 8

Needs the test extras (requests); reuses the end-to-end test's process helpers.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_e2e import API, ServeProcess, add_user_with_cli, serve_env

USERNAME = "bench"
PASSWORD = secrets.token_urlsafe(12)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}
HTTP_TIMEOUT = 30
# The throttle would turn the timing comparison into 429s; a benchmark is not an attack.
NO_THROTTLE = 10**9

Step = Callable[[int, requests.Session], bool]


@dataclass
class Measurement:
    """Latencies (seconds) and failures of one load phase."""

    name: str
    latencies: list[float]
    errors: int
    wall_seconds: float

    @property
    def throughput(self) -> float:
        """Completed requests per second over the phase's wall time."""
        return len(self.latencies) / self.wall_seconds

    def percentile_ms(self, p: int) -> float:
        """The p-th percentile latency in milliseconds."""
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


def run_load(name: str, total: int, concurrency: int, step: Step) -> Measurement:
    """Run ``step(thread_index, session)`` ``total`` times spread over ``concurrency`` threads."""
    shares = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_line = threading.Barrier(concurrency + 1)

    def work(index: int) -> None:
        with requests.Session() as session:
            start_line.wait()
            for _ in range(shares[index]):
                started = time.perf_counter()
                ok = step(index, session)
                latencies[index].append(time.perf_counter() - started)
                errors[index] += not ok

    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return Measurement(name, [x for chunk in latencies for x in chunk], sum(errors), wall)


class CommandCounter:
    """Redis commands executed between two INFO commandstats snapshots (INFO itself excluded)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.before: dict[str, int] = {}

    def _snapshot(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {name: int(s["calls"]) for name, s in stats.items() if name != "cmdstat_info"}

    def start(self) -> None:
        """Take the first snapshot."""
        self.before = self._snapshot()

    def delta(self) -> dict[str, int]:
        """Calls per command since :meth:`start`."""
        after = self._snapshot()
        changed = {name: calls - self.before.get(name, 0) for name, calls in after.items()}
        return {name: n for name, n in changed.items() if n}


def client_commands(client: redis.Redis, action: Callable[[], object]) -> Counter[str]:
    """Commands sent by clients (not run inside a Lua script) while ``action`` runs.

    Seen through MONITOR, which marks script-internal commands as ``lua``; commandstats
    counts those too, so it cannot tell a round trip from work inside one. ``client``
    must already hold a connection, so the end marker costs no handshake.
    """
    marker = f"bench-marker-{uuid.uuid4().hex}"
    pool = client.connection_pool
    database = pool.connection_kwargs.get("db", 0)
    seen: Counter[str] = Counter()
    watching = threading.Event()

    def watch() -> None:
        own_pool = type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
        with redis.Redis(connection_pool=own_pool) as watcher, watcher.monitor() as monitor:
            watching.set()
            for entry in monitor.listen():
                if marker in entry["command"]:
                    return
                if entry["client_type"] != "lua" and entry["db"] == database:
                    seen[entry["command"].split(" ", 1)[0].upper()] += 1

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    if not watching.wait(timeout=10):
        raise RuntimeError("MONITOR did not start")
    action()
    client.echo(marker)
    thread.join(timeout=10)
    return seen


class Bench:
    """The client side: one server URL, one token pair per thread, the measurements."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.pairs: list[dict[str, str]] = [{} for _ in range(concurrency)]

    def login(self, session: requests.Session, username: str, password: str) -> requests.Response:
        """POST /login."""
        return session.post(
            f"{self.url}{API}/login",
            json={"username": username, "password": password},
            timeout=HTTP_TIMEOUT,
        )

    def login_step(self, index: int, session: requests.Session) -> bool:
        """Log the bench user in and keep the pair as this thread's."""
        response = self.login(session, USERNAME, PASSWORD)
        if response.status_code != 200:
            return False
        self.pairs[index] = response.json()["data"]
        return True

    def me_step(self, index: int, session: requests.Session) -> bool:
        """GET /me with this thread's access token."""
        headers = {"Authorization": f"Bearer {self.pairs[index]['access_token']}"}
        response = session.get(f"{self.url}{API}/me", headers=headers, timeout=HTTP_TIMEOUT)
        return response.status_code == 200

    def refresh_step(self, index: int, session: requests.Session) -> bool:
        """GET /refresh with this thread's refresh token; continue the chain with the new one."""
        headers = {"Authorization": f"Bearer {self.pairs[index]['refresh_token']}"}
        response = session.get(f"{self.url}{API}/refresh", headers=headers, timeout=HTTP_TIMEOUT)
        if response.status_code != 200:
            return False
        self.pairs[index] = response.json()["data"]
        return True

    def failed_login_timings(self, rounds: int) -> tuple[list[float], list[float]]:
        """Interleaved unknown-user and wrong-password logins, one at a time: their latencies."""
        unknown: list[float] = []
        wrong: list[float] = []
        with requests.Session() as session:
            for _ in range(rounds):
                for username, sink in (
                    (f"nobody-{uuid.uuid4().hex[:8]}", unknown),
                    (USERNAME, wrong),
                ):
                    started = time.perf_counter()
                    response = self.login(session, username, "not the password")
                    sink.append(time.perf_counter() - started)
                    if response.status_code != 401:
                        raise RuntimeError(f"expected 401, got {response.status_code}")
        return unknown, wrong


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for first, *rest in rows:
        cells = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        print("  ".join(cells))
    print(line)


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per endpoint (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--redis-url",
        help="a local Redis to use (default: an embedded one in a temporary folder)",
    )
    args = parser.parse_args()
    if args.redis_url and urlparse(args.redis_url).hostname not in LOCAL_HOSTS:
        parser.error("--redis-url must point at this host (127.0.0.1 or a unix socket)")
    if min(args.workers, args.requests, args.concurrency) < 1:
        parser.error("--workers, --requests and --concurrency must be at least 1")
    return args


def main() -> None:
    """Start the server, run every phase, print the tables, stop the server."""
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="authsvc-bench-"))
    settings: dict[str, object] = {
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": NO_THROTTLE,
        "LOGIN_MAX_FAILURES_PER_IP": NO_THROTTLE,
    }
    if args.redis_url:
        key_prefix = f"authsvc-bench-{uuid.uuid4().hex[:8]}"
        settings |= {
            "REDIS_URL": args.redis_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "REDIS_KEY_PREFIX": key_prefix,
        }
        stats_client = redis.Redis.from_url(args.redis_url)
    else:
        instance = workdir / "instance"
        settings["INSTANCE_PATH"] = instance
        stats_client = redis.Redis(unix_socket_path=str(instance / "redis.sock"))
    env = serve_env(**settings)
    server = ServeProcess(env, workdir, workers=args.workers)
    try:
        server.wait_ready()
        add_user_with_cli(env, USERNAME, PASSWORD)
        run(args, server.url, stats_client)
    finally:
        survivors = server.stop()
        if survivors:
            print(f"warning: killed processes left by serve: {survivors}", file=sys.stderr)
        if args.redis_url:
            keys = list(stats_client.scan_iter(match=f"{key_prefix}:*", count=1000))
            if keys:
                stats_client.unlink(*keys)
        stats_client.close()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, url: str, stats_client: redis.Redis) -> None:
    """The measurements and the report."""
    bench = Bench(url, args.concurrency)
    counter = CommandCounter(stats_client)
    mode = f"redis {args.redis_url}" if args.redis_url else "embedded redis (quick-start mode)"
    print(
        f"authsvc bench: {args.workers} gunicorn workers, {args.concurrency} client threads, "
        f"{args.requests} requests per endpoint, {mode}"
    )

    logins = run_load(
        "POST /login",
        max(args.concurrency, args.requests // 20),
        args.concurrency,
        bench.login_step,
    )
    # Warm-up: every Lua script loaded, every connection pool filled, before counting.
    run_load("warm-up", args.concurrency, args.concurrency, bench.me_step)
    run_load("warm-up", args.concurrency, args.concurrency, bench.refresh_step)

    counter.start()
    me = run_load("GET /me (protected)", args.requests, args.concurrency, bench.me_step)
    me_commands = counter.delta()
    counter.start()
    refresh = run_load(
        "GET /refresh (rotation)", args.requests, args.concurrency, bench.refresh_step
    )
    refresh_commands = counter.delta()

    print_table(
        "Throughput and latency",
        ["endpoint", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"],
        [
            [
                m.name,
                str(len(m.latencies)),
                str(m.errors),
                f"{m.throughput:.0f}",
                f"{m.percentile_ms(50):.2f}",
                f"{m.percentile_ms(95):.2f}",
                f"{m.percentile_ms(99):.2f}",
            ]
            for m in (me, refresh, logins)
        ],
    )

    rounds = max(20, args.requests // 40)
    unknown, wrong = bench.failed_login_timings(rounds)
    unknown_mean, wrong_mean = statistics.fmean(unknown) * 1000, statistics.fmean(wrong) * 1000
    unknown_p50, wrong_p50 = statistics.median(unknown) * 1000, statistics.median(wrong) * 1000
    print_table(
        f"Failed logins, {rounds} each, interleaved, one at a time (constant-time check)",
        ["case", "mean ms", "p50 ms"],
        [
            ["unknown user", f"{unknown_mean:.2f}", f"{unknown_p50:.2f}"],
            ["wrong password", f"{wrong_mean:.2f}", f"{wrong_p50:.2f}"],
            [
                "difference",
                f"{unknown_mean - wrong_mean:+.2f} ({(unknown_mean / wrong_mean - 1) * 100:+.1f}%)",
                f"{unknown_p50 - wrong_p50:+.2f} ({(unknown_p50 / wrong_p50 - 1) * 100:+.1f}%)",
            ],
        ],
    )

    print_table(
        "Redis per request, INFO commandstats deltas over the timed phases "
        "(commands inside a script count there too)",
        ["endpoint", "requests", "evalsha/req", "commandstats calls"],
        [
            [
                m.name,
                str(len(m.latencies)),
                f"{commands.get('cmdstat_evalsha', 0) / len(m.latencies):.3f}",
                ", ".join(
                    f"{name.removeprefix('cmdstat_')}={n}" for name, n in sorted(commands.items())
                ),
            ]
            for m, commands in ((me, me_commands), (refresh, refresh_commands))
        ],
    )

    sample = min(100, args.requests)
    rows = []
    for name, step in (
        ("GET /me (protected)", bench.me_step),
        ("GET /refresh", bench.refresh_step),
    ):
        sent = client_commands(
            stats_client,
            lambda name=name, step=step: run_load(name, sample, args.concurrency, step),
        )
        total = sum(sent.values())
        listing = ", ".join(f"{command}={n}" for command, n in sorted(sent.items()))
        rows.append([name, str(sample), f"{total / sample:.3f}", listing])
    print_table(
        "Round trips per request: client commands seen by MONITOR (script internals excluded)",
        ["endpoint", "requests", "round trips/req", "client commands"],
        rows,
    )


if __name__ == "__main__":
    main()
