"""Side-by-side HTTP benchmark: the floor, flask-jwt-extended's blocklist pattern, authsvc.

One run starts a dedicated redis-server on a free loopback port (or uses --redis-url),
starts the contenders under gunicorn with the same worker count, and drives each with
wrk (same threads, connections and duration), scenario by scenario, the contenders
taking turns in short slices (--slices) so that a neighbour's burst hits them alike:

  S1  GET /api/v1/user/me with a valid access token
  S2  refresh with rotation, every refresh token used exactly once
  (contender (d), authsvc with DPoP: S1 and S2 of a bound session, wrk sending
  pre-made proofs, each used once; see benchmarks/dpop_contender.py)
  S3  login (argon2id), compared with the raw argon2id verify rate on the same cores

For each run it prints req/s, p50/p99, the ratios to the floor (a) and to
flask-jwt-extended (b), Redis round trips per request (INFO stats deltas of reads
processed; "cmds" also counts commands run inside Lua scripts), Redis bytes per session
(MEMORY USAGE) and the peak RSS of the server's process tree. See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py            # needs /usr/bin/wrk (apt-get install wrk)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

import dpop_contender  # noqa: E402
from contenders import (  # noqa: E402
    ACCOUNTS,
    CONTENDERS,
    DPOP_KEY,
    PASSWORD,
    PEERS,
    SCENARIOS,
    Contender,
    create_accounts,
    floor_token,
    free_port,
    login,
    make_contenders,
    mint_refresh_tokens,
    pinned,
    wait_until,
)
from report import Result, percentile, report  # noqa: E402

from authsvc.config import Settings  # noqa: E402
from authsvc.embedded import stop_process  # noqa: E402

PROBES = 21

# -- Redis ---------------------------------------------------------------------------


@contextlib.contextmanager
def benchmark_redis(url: str | None, cpus: str | None, workdir: Path) -> Iterator[str]:
    """A flushed Redis database: --redis-url's, or a redis-server started on a free port."""
    if url:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        yield url
        return
    port = free_port()
    command = [
        shutil.which("redis-server") or "redis-server",
        "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(
        pinned(command, cpus), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis.Redis.from_url(url).ping(), "redis-server", process)
        yield url
    finally:
        stop_process(process)


def redis_counters(client: redis.Redis) -> tuple[int, int]:
    """(reads processed, commands processed) so far; commands include those inside scripts."""
    stats = client.info("stats")
    return int(stats["total_reads_processed"]), int(stats["total_commands_processed"])


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds (user + system) the Redis server has used so far."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_bytes(client: redis.Redis) -> dict[bytes, int]:
    """MEMORY USAGE of every key of the database, by key."""
    usage: dict[bytes, int] = {}
    batch: list[bytes] = []
    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            usage.update(_usage(client, batch))
            batch = []
    usage.update(_usage(client, batch))
    return usage


def _usage(client: redis.Redis, keys: list[bytes]) -> dict[bytes, int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return {key: value or 0 for key, value in zip(keys, pipe.execute(), strict=True)}


def bytes_added(before: dict[bytes, int], after: dict[bytes, int]) -> int:
    """What the keys present ``after`` grew by since ``before`` (new keys count whole).

    Keys gone meanwhile are left out: those that expired during the slice (DPoP's
    remembered proofs from an earlier S1 run, for one) are not the sessions' doing, and
    subtracting them made the bytes per session negative.
    """
    return sum(size - before.get(key, 0) for key, size in after.items())


# -- wrk -------------------------------------------------------------------------------


def wrk(
    contender: Contender,
    scenario: str,
    script_args: list[str],
    args: argparse.Namespace,
    workdir: Path,
    seconds: float,
) -> dict[str, Any]:
    """Run wrk against ``contender``; the numbers its done() printed."""
    script = workdir / f"{scenario}.lua"
    name = {"S1": "me.lua", "S2": "refresh.lua", "S3": "login.lua"}[scenario]
    if contender.key.startswith("dpop"):
        name = {"S1": "me_dpop.lua", "S2": "refresh_dpop.lua"}[scenario]
    script.write_text(
        (BENCH_DIR / "wrk" / "common.lua").read_text() + (BENCH_DIR / "wrk" / name).read_text()
    )
    command = [args.wrk, "-t", str(args.threads), "-c", str(args.connections), "-d",
               f"{int(seconds)}s", "--timeout", "10s", "-s", str(script), contender.url, "--",
               *script_args]  # fmt: skip
    done = subprocess.run(
        pinned(command, args.cpus),
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise RuntimeError(f"wrk failed:\n{done.stdout}\n{done.stderr}")


@dataclass
class Tally:
    """One contender's measured slices of one scenario, summed as they come in."""

    requests: int = 0
    duration_us: int = 0
    errors: int = 0
    latency_us: Counter[int] = field(default_factory=Counter)  # wrk's histogram, merged
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    redis_seconds: float = 0.0
    slice_rates: list[float] = field(default_factory=list)
    bytes_per_session: int | None = None

    def add(
        self, numbers: dict[str, Any], cpu_by_pid: dict[int, float], redis_seconds: float
    ) -> None:
        """Add one wrk slice: its done() numbers and the CPU the server and Redis spent."""
        self.requests += numbers["requests"]
        self.duration_us += numbers["duration_us"]
        self.errors += numbers["status_errors"] + numbers["socket_errors"] + numbers["timeouts"]
        self.latency_us.update(dict(numbers["latency"]))  # Counter.update adds counts
        for pid, seconds in cpu_by_pid.items():
            self.cpu_by_pid[pid] = self.cpu_by_pid.get(pid, 0.0) + seconds
        self.redis_seconds += redis_seconds
        seconds = numbers["duration_us"] / 1e6
        self.slice_rates.append(numbers["requests"] / seconds if seconds else 0.0)

    def result(self, contender: str, scenario: str, round_number: int) -> Result:
        """The summed slices as one row of the report (Redis round trips filled in later)."""
        cpu_seconds = sum(self.cpu_by_pid.values())
        per_request = 1e6 / self.requests if self.requests else 0.0
        return Result(
            contender=contender,
            scenario=scenario,
            round=round_number,
            requests=self.requests,
            seconds=self.duration_us / 1e6,
            p50_ms=percentile(self.latency_us, 50) / 1000,
            p99_ms=percentile(self.latency_us, 99) / 1000,
            errors=self.errors,
            redis_reads=0.0,
            redis_commands=0.0,
            cpu_us=cpu_seconds * per_request,
            busiest_share=max(self.cpu_by_pid.values(), default=0.0) / cpu_seconds
            if cpu_seconds
            else 0.0,
            redis_cpu_us=self.redis_seconds * per_request,
            bytes_per_session=self.bytes_per_session,
            slice_rates=self.slice_rates,
        )


def warm_up(
    contender: Contender, scenario: str, args: argparse.Namespace, workdir: Path, secret: str
) -> None:
    """An unmeasured wrk run of ``args.warmup`` seconds."""
    if args.warmup > 0:
        script_args = prepare(contender, scenario, args, workdir, secret, args.warmup, "warmup")
        wrk(contender, scenario, script_args, args, workdir, args.warmup)


def measure_slice(
    contender: Contender,
    scenario: str,
    tally: Tally,
    args: argparse.Namespace,
    workdir: Path,
    client: redis.Redis,
    secret: str,
) -> None:
    """One measured wrk slice of ``scenario``, with the CPU, RSS and Redis bookkeeping."""
    seconds = slice_seconds(args)
    count_bytes = scenario == "S2" and tally.bytes_per_session is None
    database = redis.Redis.from_url(contender.redis_url)
    memory_before = redis_bytes(database) if count_bytes else {}
    script_args = prepare(contender, scenario, args, workdir, secret, seconds, "run")
    cpu_before, redis_before = contender.tree_cpu(), redis_cpu(client)
    with contender.sampling_rss():
        numbers = wrk(contender, scenario, script_args, args, workdir, seconds)
    cpu_by_pid = {
        pid: used - cpu_before.get(pid, 0.0) for pid, used in contender.tree_cpu().items()
    }
    tally.add(numbers, cpu_by_pid, redis_cpu(client) - redis_before)
    contender.wait_until_idle()
    if count_bytes:
        # Over the contender's first slice only: scanning every key after every slice
        # would take longer than the slices (flask-jwt-extended's blocklist grows).
        added = bytes_added(memory_before, redis_bytes(database))
        tally.bytes_per_session = added // args.sessions
    database.close()


def slice_seconds(args: argparse.Namespace) -> int:
    """Seconds in one slice: wrk takes whole seconds."""
    return max(1, int(args.duration) // int(args.slices))


def measure_round(
    contenders: list[Contender],
    scenario: str,
    round_number: int,
    args: argparse.Namespace,
    workdir: Path,
    client: redis.Redis,
    secret: str,
) -> tuple[list[Result], float | None]:
    """Every contender on ``scenario``, in interleaved slices; S3 also raw argon2id's rate.

    Each contender's ``--duration`` is cut into ``--slices`` wrk runs taken in turns,
    the turn order rotating by one each slice, so a neighbour's burst on a shared machine
    lands on every contender alike instead of on the one measured at that moment.
    wrk's latency histograms are merged, so p50/p99 are those of all the slices' requests.
    """
    playing = [c for c in contenders if scenario in c.scenarios]
    tallies = {c.key: Tally() for c in playing}
    # Raw argon2id takes its turns beside authsvc's logins, on the same cores.
    turns: list[Contender | None] = [*playing]
    if scenario == "S3" and "authsvc" in tallies:
        turns.append(None)
    argon2_verifies = 0.0
    for contender in playing:
        warm_up(contender, scenario, args, workdir, secret)
        contender.wait_until_idle()
        contender.peak_rss = 0
    for index in range(args.slices):
        shift = index % len(turns)
        for turn in turns[shift:] + turns[:shift]:
            if turn is None:
                argon2_verifies += raw_argon2_verifies(args.workers, slice_seconds(args), args.cpus)
            else:
                tally = tallies[turn.key]
                measure_slice(turn, scenario, tally, args, workdir, client, secret)
    results = []
    for contender in playing:
        result = tallies[contender.key].result(contender.key, scenario, round_number)
        result.peak_rss = contender.peak_rss
        result.redis_reads, result.redis_commands = probe_redis(contender, scenario, client, secret)
        results.append(result)
        print(
            f"{scenario} {contender.key}: {result.rate:.0f} req/s (slices "
            f"{min(result.slice_rates):.0f}-{max(result.slice_rates):.0f}) "
            f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms "
            f"errors {result.errors}, server CPU {result.cpu_us:.0f} us/req, "
            f"busiest process {result.busiest_share:.0%} of it, "
            f"Redis CPU {result.redis_cpu_us:.0f} us/req",
            file=sys.stderr,
            flush=True,
        )
    if None not in turns:
        return results, None
    argon2_rate = argon2_verifies / (slice_seconds(args) * args.slices)
    print(f"raw argon2id: {argon2_rate:.1f}/s", file=sys.stderr, flush=True)
    return results, argon2_rate


def probe_redis(
    contender: Contender, scenario: str, client: redis.Redis, secret: str
) -> tuple[float, float]:
    """Redis round trips and commands per request, from PROBES requests sent one by one.

    Counted apart from the wrk run, where requests still in flight at its end would be
    counted on Redis but not by wrk. Round trips are reads the server processed (a
    pipeline or a script is one); commands include those a Lua script runs.
    """
    session = requests.Session()
    if contender.key.startswith("dpop"):
        tokens = [
            dpop_contender.login(contender.url, DPOP_KEY, f"bench{i % ACCOUNTS}", PASSWORD)[
                "refresh_token"
            ]
            for i in range(PROBES if scenario == "S2" else 0)
        ]
        url = contender.url + ("/api/v1/user/me" if scenario == "S1" else "/api/v1/user/refresh")
        send = lambda i: session.get(  # noqa: E731
            url,
            headers={
                **dpop_contender.probe_headers(contender, DPOP_KEY, scenario),
                **({"Authorization": f"Bearer {tokens[i]}"} if scenario == "S2" else {}),
            },
        )
    elif scenario == "S1":
        token = contender.access_token or floor_token(secret)
        send = lambda _: session.get(  # noqa: E731
            f"{contender.url}/api/v1/user/me", headers={"Authorization": f"Bearer {token}"}
        )
    elif scenario == "S2":
        tokens = mint_refresh_tokens(contender, PROBES)
        send = lambda i: session.get(  # noqa: E731
            f"{contender.url}/api/v1/user/refresh",
            headers={"Authorization": f"Bearer {tokens[i]}"},
        )
    else:
        send = lambda i: session.post(  # noqa: E731
            f"{contender.url}/api/v1/user/login",
            json={"username": f"bench{i % ACCOUNTS}", "password": PASSWORD},
        )
    send(0).raise_for_status()  # a fresh connection of the session, outside the count
    # Requests wrk left queued in the server still run after it stops: wait them out.
    reads_before, commands_before = redis_counters(client)
    for _ in range(50):
        time.sleep(0.2)
        settled = redis_counters(client)
        if settled[0] == reads_before + 1:  # only this INFO's own read since the last one
            break
        reads_before, commands_before = settled
    reads_before, commands_before = redis_counters(client)
    for i in range(1, PROBES):
        send(i).raise_for_status()
    reads_after, commands_after = redis_counters(client)
    session.close()
    # The second INFO is a read and a command of its own.
    count = PROBES - 1
    return (reads_after - reads_before - 1) / count, (commands_after - commands_before - 1) / count


def prepare(
    contender: Contender,
    scenario: str,
    args: argparse.Namespace,
    workdir: Path,
    secret: str,
    seconds: int,
    label: str,
) -> list[str]:
    """What the scenario's wrk script needs: a token file, or the accounts."""
    if contender.key.startswith("dpop"):
        return dpop_contender.prepare(
            contender,
            scenario,
            DPOP_KEY,
            workdir,
            seconds=seconds,
            rate=args.dpop_rate,
            threads=args.threads,
            sessions=args.sessions,
            accounts=ACCOUNTS,
            password=PASSWORD,
        )
    if scenario == "S1":
        if not contender.access_token:
            contender.access_token = (
                floor_token(secret)
                if contender.key in PEERS["floor"]
                else login(contender, 0)["access_token"]
            )
        path = workdir / f"{contender.key}-access"
        path.write_text(contender.access_token + "\n")
        return [str(path)]
    if scenario == "S2":
        # Fresh sessions for every wrk run: a token rotated by the warm-up is spent.
        path = workdir / f"{contender.key}-refresh-{label}"
        path.write_text("\n".join(mint_refresh_tokens(contender, args.sessions)) + "\n")
        return [str(path), str(args.threads)]
    return [str(ACCOUNTS), PASSWORD]


# -- raw argon2id ----------------------------------------------------------------------------


def _argon2_worker(seconds: float, out: Any) -> None:
    from argon2 import PasswordHasher, Type

    defaults = Settings()
    hasher = PasswordHasher(
        time_cost=defaults.argon2_time_cost,
        memory_cost=defaults.argon2_memory_kib,
        parallelism=defaults.argon2_parallelism,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() < started + seconds:
        hasher.verify(stored, PASSWORD)
        count += 1
    # The last verify ends after the deadline (half a verify late on average, 0.6% of a
    # 2 s slice): counted over the time they took, as wrk counts what it got in its own.
    out.put(count * seconds / (time.perf_counter() - started))


def raw_argon2_verifies(processes: int, seconds: float, cpus: str | None) -> float:
    """argon2id verifies per ``seconds`` by ``processes`` processes at authsvc's parameters.

    Each process's count is scaled to the time its verifies really took (the last one
    ends after ``seconds``), so the sum is a rate, not a whole number.
    """
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in _cpu_list(cpus)})
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_argon2_worker, args=(seconds, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total: float = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total


def _cpu_list(cpus: str) -> list[str]:
    out: list[str] = []
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        out.extend(str(n) for n in range(int(low), int(high or low) + 1))
    return out


# -- report -----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="cut each --duration into this many wrk runs, contenders taking turns",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up per contender (0: none)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per contender")
    parser.add_argument("--sessions", type=int, default=64, help="S2 sessions (> connections)")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                        choices=CONTENDERS)  # fmt: skip
    parser.add_argument("--dpop-rate", type=int, default=6000,
                        help="(d): proofs made per wrk second (beyond: errors)")  # fmt: skip
    parser.add_argument("--redis-url", help="use this Redis database (it is FLUSHED) instead")
    parser.add_argument("--cpus", help="taskset CPU list for wrk, Redis and every server")
    parser.add_argument("--authsvc-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for authsvc, e.g. AUTHSVC_THREADS=8")  # fmt: skip
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also serve the authsvc checked out in this folder (before/after)",
    )
    parser.add_argument(
        "--baseline-path",
        action="append",
        default=[],
        metavar="DIR",
        help="extra import path for --baseline (dependencies it alone needs)",
    )
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for --baseline only (after --authsvc-env): one setting "
        "against another, e.g. --baseline . --baseline-env AUTHSVC_THREADS=8",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure every scenario N times")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not Path(args.wrk).exists():
        parser.error("wrk not found: apt-get install wrk")
    if args.sessions <= args.connections:
        parser.error("--sessions must exceed --connections (each connection needs a session)")
    return args


def main() -> None:
    """Run every scenario for every contender, interleaved, and print the report."""
    args = parse_args()
    load_before = os.getloadavg()  # at the end it would show the run's own load
    secret = secrets.token_urlsafe(48)
    results: list[Result] = []
    argon2_rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as tmp:
        workdir = Path(tmp)
        with benchmark_redis(args.redis_url, args.cpus, workdir) as redis_url:
            client = redis.Redis.from_url(redis_url)
            contenders = make_contenders(
                args, redis_url, secret, own_databases=args.redis_url is None
            )
            create_accounts(contenders, secret)
            try:
                for contender in contenders:
                    contender.start(workdir, args.cpus)
                for round_number in range(args.repeat):
                    for scenario in args.scenarios:
                        round_results, argon2_rate = measure_round(
                            contenders, scenario, round_number, args, workdir, client, secret
                        )
                        results += round_results
                        if argon2_rate is not None:
                            argon2_rates[round_number] = argon2_rate
            finally:
                for contender in contenders:
                    contender.stop()
    print(report(results, argon2_rates, args, load_before))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [r.__dict__ | {"rate": r.rate} for r in results],
                    "argon2_rates": argon2_rates,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
