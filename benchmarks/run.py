"""Side-by-side HTTP benchmark: the floor, flask-jwt-extended's blocklist pattern, authsvc.

One run starts a dedicated redis-server on a free loopback port (or uses --redis-url),
starts the three contenders under gunicorn with the same worker count, and drives each
with wrk (same threads, connections and duration), scenario by scenario, interleaved:

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
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psutil
import redis
import requests

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

import dpop_contender  # noqa: E402

from authsvc import create_app  # noqa: E402
from authsvc.config import Settings  # noqa: E402
from authsvc.embedded import stop_process  # noqa: E402

PASSWORD = "bench password 0123"
ACCOUNTS = 64
PROBES = 21
SCENARIOS = ("S1", "S2", "S3")
SCENARIO_TITLES = {
    "S1": "GET /api/v1/user/me",
    "S2": "refresh (rotation)",
    "S3": "login (argon2id)",
}
HTTP_TIMEOUT = 30
STARTUP_TIMEOUT = 60
DPOP_KEY = dpop_contender.DeviceKey()  # the (d) contender's device
CONTENDERS = ("floor", "floor-gthread", "fje", "fje-gthread", "authsvc", "dpop")
# The peers, each under sync and gthread workers: a ratio is reported against both.
PEERS = {"floor": ("floor", "floor-gthread"), "fje": ("fje", "fje-gthread")}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` under ``taskset -c cpus`` when asked, so every contender shares the cores."""
    return ["taskset", "-c", cpus, *command] if cpus else command


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


def redis_bytes(client: redis.Redis) -> int:
    """Sum of MEMORY USAGE over every key of the database."""
    total = 0
    batch: list[bytes] = []
    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(client, batch)
            batch = []
    return total + _usage(client, batch)


def _usage(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(value or 0 for value in pipe.execute())


# -- the contenders ------------------------------------------------------------------


def wait_until(check: Callable[[], Any], what: str, process: subprocess.Popen[bytes]) -> None:
    """Poll ``check`` until it is truthy; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early (code {process.returncode})")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {STARTUP_TIMEOUT} s")


@dataclass
class Contender:
    """One server under test: how to start it and how it answers."""

    key: str
    title: str
    scenarios: tuple[str, ...]
    command: list[str]
    env: dict[str, str]
    cwd: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    peak_rss: int = 0
    access_token: str = ""
    _rss_stop: threading.Event = field(default_factory=threading.Event)

    def start(self, workdir: Path, cpus: str | None) -> None:
        """Start gunicorn in the background, stderr to a file; wait until it answers."""
        self.log_path = workdir / f"{self.key}.stderr"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                pinned(self.command, cpus),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_until(
                lambda: requests.get(f"{self.url}/api/v1/user/me", timeout=1).status_code,
                self.title,
                self.process,
            )
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{self.log_tail()}") from None

    def log_tail(self) -> str:
        """The last lines the server wrote to stderr."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        """SIGTERM the gunicorn master (by PID); it stops its workers."""
        if self.process is not None:
            stop_process(self.process)

    def tree_cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) used so far by the master and each live worker, by PID."""
        if self.process is None:
            return {}
        try:
            master = psutil.Process(self.process.pid)
            processes = [master, *master.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        used = {}
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                used[process.pid] = times.user + times.system
        return used

    def tree_rss(self) -> int:
        """Resident memory of the master and every worker, summed (bytes)."""
        if self.process is None:
            return 0
        try:
            master = psutil.Process(self.process.pid)
            processes = [master, *master.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    @contextlib.contextmanager
    def sampling_rss(self) -> Iterator[None]:
        """Track the peak of :meth:`tree_rss` every 50 ms while the block runs."""
        self._rss_stop.clear()

        def sample() -> None:
            while not self._rss_stop.wait(0.05):
                self.peak_rss = max(self.peak_rss, self.tree_rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield
        finally:
            self._rss_stop.set()
            sampler.join()


def gunicorn_command(app: str, bind: str, workers: int, threads: int | None) -> list[str]:
    """A plain gunicorn for the reference contenders (no config file).

    ``threads`` None: sync workers (one request at a time, no keep-alive); else gthread
    workers with that many threads and gunicorn's default keep-alive, like authsvc.
    """
    worker = ["--worker-class", "sync"] if threads is None else [
        "--worker-class", "gthread", "--threads", str(threads)]
    return [sys.executable, "-m", "gunicorn", "--workers", str(workers), *worker,
            "--bind", bind, "--log-level", "warning", app]  # fmt: skip


def make_contenders(args: argparse.Namespace, redis_url: str, secret: str) -> list[Contender]:
    """(a) the floor, (b) flask-jwt-extended's Redis blocklist pattern, (c) authsvc."""
    defaults = Settings()
    base_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUTHSVC_", "PROMETHEUS_MULTIPROC_DIR"))
    }
    bench_env = {
        **base_env,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_JWT_SECRET": secret,
        "BENCH_ARGON2_TIME_COST": str(defaults.argon2_time_cost),
        "BENCH_ARGON2_MEMORY_KIB": str(defaults.argon2_memory_kib),
        "BENCH_ARGON2_PARALLELISM": str(defaults.argon2_parallelism),
    }
    contenders = []
    threads = defaults.threads  # the peers' gthread variant runs as many threads as authsvc
    for key, title, scenarios, app, worker_threads in (
        ("floor", "(a) floor: bare WSGI, PyJWT + EXISTS", ("S1",), "floor_app:app", None),
        ("floor-gthread", "(a') the floor under gthread", ("S1",), "floor_app:app", threads),
        ("fje", "(b) flask-jwt-extended + Redis blocklist", SCENARIOS, "fje_app:app", None),
        ("fje-gthread", "(b') (b) under gthread", ("S1", "S2"), "fje_app:app", threads),
    ):
        bind = f"127.0.0.1:{free_port()}"
        contenders.append(
            Contender(
                key,
                title,
                scenarios,
                gunicorn_command(app, bind, args.workers, worker_threads),
                bench_env,
                BENCH_DIR,
                url=f"http://{bind}",
            )
        )
    bind = f"127.0.0.1:{free_port()}"
    authsvc_env = {
        **base_env,
        "AUTHSVC_REDIS_URL": redis_url,
        "AUTHSVC_JWT_SECRET": secret,
        "AUTHSVC_BIND": bind,
        "AUTHSVC_WORKERS": str(args.workers),
        **dict(item.split("=", 1) for item in args.authsvc_env),
    }
    contenders.append(
        Contender(
            "authsvc",
            "(c) authsvc (defaults: logs, metrics, every check)",
            SCENARIOS,
            [str(Path(sys.executable).parent / "authsvc"), "serve"],
            authsvc_env,
            ROOT,
            url=f"http://{bind}",
        )
    )
    bind = f"127.0.0.1:{free_port()}"
    contenders.append(
        Contender(
            "dpop",
            "(d) authsvc, DPoP-bound sessions (a fresh ES256 proof per request)",
            ("S1", "S2"),
            [str(Path(sys.executable).parent / "authsvc"), "serve"],
            {
                **authsvc_env,
                "AUTHSVC_BIND": bind,
                "AUTHSVC_DPOP_PROOF_WINDOW": str(dpop_contender.PROOF_WINDOW),
            },
            ROOT,
            url=f"http://{bind}",
        )
    )
    if args.baseline:
        # Another checkout of authsvc (e.g. `git archive main | tar -x -C /tmp/base`),
        # imported first, served by the same Python: before/after in one run.
        bind = f"127.0.0.1:{free_port()}"
        pythonpath = os.pathsep.join([str(args.baseline), *args.baseline_path])
        contenders.append(
            Contender(
                "baseline",
                f"(c0) authsvc from {args.baseline}",
                SCENARIOS,
                [sys.executable, "-c", "from authsvc.cli import main; main()", "serve"],
                {**authsvc_env, "AUTHSVC_BIND": bind, "PYTHONPATH": pythonpath},
                args.baseline,
                url=f"http://{bind}",
            )
        )
        if "dpop" in args.contenders:
            # The same checkout with DPoP-bound sessions: before/after of the proof path.
            bind = f"127.0.0.1:{free_port()}"
            contenders.append(
                Contender(
                    "dpop-baseline",
                    f"(d0) authsvc from {args.baseline}, DPoP-bound sessions",
                    ("S1", "S2"),
                    [sys.executable, "-c", "from authsvc.cli import main; main()", "serve"],
                    {
                        **authsvc_env,
                        "AUTHSVC_BIND": bind,
                        "PYTHONPATH": pythonpath,
                        "AUTHSVC_DPOP_PROOF_WINDOW": str(dpop_contender.PROOF_WINDOW),
                    },
                    args.baseline,
                    url=f"http://{bind}",
                )
            )
    keep = {*args.contenders, "dpop-baseline"}
    if "authsvc" in args.contenders or "dpop" not in args.contenders:
        keep.add("baseline")
    return [c for c in contenders if c.key in keep]


def create_accounts(contenders: list[Contender], redis_url: str, secret: str) -> None:
    """bench0..bench63 with PASSWORD: in authsvc's store, and as hashes for (b)."""
    app = create_app({"REDIS_URL": redis_url, "JWT_SECRET": secret})
    service = app.extensions["authsvc"]
    client = redis.Redis.from_url(redis_url)
    if any(c.key in ("authsvc", "baseline", "dpop", "dpop-baseline") for c in contenders):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: service.add_user(f"bench{i}", PASSWORD), range(ACCOUNTS)))
    stored = service.passwords.hash(PASSWORD)
    client.mset({f"user:bench{i}": stored for i in range(ACCOUNTS)})
    client.close()


def login(contender: Contender, index: int) -> dict[str, Any]:
    """One login of account ``bench<index>`` over HTTP; the token pair."""
    response = requests.post(
        f"{contender.url}/api/v1/user/login",
        json={"username": f"bench{index % ACCOUNTS}", "password": PASSWORD},
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["data"]


def mint_refresh_tokens(contender: Contender, count: int) -> list[str]:
    """``count`` new sessions' refresh tokens, logged in over HTTP."""
    with ThreadPoolExecutor(4) as pool:
        return [
            pair["refresh_token"] for pair in pool.map(lambda i: login(contender, i), range(count))
        ]


def floor_token(secret: str) -> str:
    """An access token for the floor app: HS256, same claims authsvc puts in one."""
    now = int(time.time())
    claims = {"iss": "authsvc", "aud": "authsvc", "sub": uuid.uuid4().hex, "iat": now,
              "nbf": now, "exp": now + 900, "jti": secrets.token_urlsafe(16),
              "sid": secrets.token_urlsafe(16), "type": "access", "roles": []}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


# -- wrk -------------------------------------------------------------------------------


@dataclass
class Result:
    """One measured wrk run of one contender in one scenario."""

    contender: str
    scenario: str
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    redis_reads: float
    redis_commands: float
    peak_rss: int = 0
    # The server's own CPU (master + workers, user + system) per completed request: on a
    # shared machine this moves far less with the neighbours' load than req/s does.
    cpu_us: float = 0.0
    # The busiest process's share of that CPU: about 1/workers when the load is spread;
    # near 1 when one worker took (nearly) every keep-alive connection.
    busiest_share: float = 0.0
    redis_cpu_us: float = 0.0  # the Redis server's, likewise
    bytes_per_session: int | None = None

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


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


def measure(
    contender: Contender,
    scenario: str,
    round_number: int,
    args: argparse.Namespace,
    workdir: Path,
    client: redis.Redis,
    secret: str,
) -> Result:
    """Warm up, then one measured wrk run of ``scenario`` with Redis and RSS bookkeeping."""
    memory_before = redis_bytes(client) if scenario == "S2" else 0
    script_args = prepare(contender, scenario, args, workdir, secret, warmup=True)
    if args.warmup > 0:
        wrk(contender, scenario, script_args, args, workdir, args.warmup)
        script_args = prepare(contender, scenario, args, workdir, secret, warmup=False)
    contender.peak_rss = 0
    cpu_before, redis_before = contender.tree_cpu(), redis_cpu(client)
    with contender.sampling_rss():
        numbers = wrk(contender, scenario, script_args, args, workdir, args.duration)
    cpu_by_process = {
        pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in contender.tree_cpu().items()
    }
    cpu_seconds = sum(cpu_by_process.values())
    redis_seconds = redis_cpu(client) - redis_before
    redis_reads, redis_commands = probe_redis(contender, scenario, client, secret)
    result = Result(
        contender=contender.key,
        scenario=scenario,
        round=round_number,
        requests=numbers["requests"],
        seconds=numbers["duration_us"] / 1e6,
        p50_ms=numbers["p50_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        errors=numbers["status_errors"] + numbers["socket_errors"] + numbers["timeouts"],
        redis_reads=redis_reads,
        redis_commands=redis_commands,
        peak_rss=contender.peak_rss,
        cpu_us=cpu_seconds / numbers["requests"] * 1e6 if numbers["requests"] else 0.0,
        busiest_share=max(cpu_by_process.values(), default=0.0) / cpu_seconds if cpu_seconds else 0,
        redis_cpu_us=redis_seconds / numbers["requests"] * 1e6 if numbers["requests"] else 0.0,
    )
    if scenario == "S2":
        sessions = args.sessions * (2 if args.warmup > 0 else 1)
        result.bytes_per_session = (redis_bytes(client) - memory_before) // sessions
    return result


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
    *,
    warmup: bool,
) -> list[str]:
    """What the scenario's wrk script needs: a token file, or the accounts."""
    if contender.key.startswith("dpop"):
        return dpop_contender.prepare(
            contender,
            scenario,
            DPOP_KEY,
            workdir,
            seconds=args.warmup if warmup else args.duration,
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
        path = workdir / f"{contender.key}-refresh-{'warmup' if warmup else 'run'}"
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
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored, PASSWORD)
        count += 1
    out.put(count)


def raw_argon2_rate(processes: int, seconds: float, cpus: str | None) -> float:
    """argon2id verifies per second with ``processes`` processes at authsvc's parameters."""
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in _cpu_list(cpus)})
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_argon2_worker, args=(seconds, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def _cpu_list(cpus: str) -> list[str]:
    out: list[str] = []
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        out.extend(str(n) for n in range(int(low), int(high or low) + 1))
    return out


# -- report -----------------------------------------------------------------------------


def report(results: list[Result], argon2_rates: dict[int, float], args: argparse.Namespace) -> str:
    """The markdown table, the target checks and the machine."""
    by = {(r.round, r.contender, r.scenario): r for r in results}
    lines = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, gunicorn "
        f"{args.workers} workers each, one Redis, {args.cpus or 'no'} CPU pinning",
        "",
        "| round | scenario | contender | req/s | p50 ms | p99 ms | errors | x floor sync/gthread "
        "| x fje sync/gthread | server CPU us/req | busiest process | Redis CPU us/req "
        "| Redis round trips/req | Redis cmds/req | Redis B/session | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratios = []
        for peer in ("floor", "fje"):
            rates = [by.get((r.round, key, r.scenario)) for key in PEERS[peer]]
            ratios.append(
                " / ".join(f"{r.rate / o.rate:.2f}" if o and o.rate else "-" for o in rates)
            )
        lines.append(
            f"| {r.round + 1} | {r.scenario} {SCENARIO_TITLES[r.scenario]} | {r.contender} | "
            f"{r.rate:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {ratios[0]} | "
            f"{ratios[1]} | {r.cpu_us:.0f} | {r.busiest_share:.0%} | {r.redis_cpu_us:.0f} | "
            f"{r.redis_reads:.2f} | {r.redis_commands:.2f} | "
            f"{r.bytes_per_session if r.bytes_per_session is not None else '-'} | "
            f"{r.peak_rss / 2**20:.0f} |"
        )
    for round_number, rate in sorted(argon2_rates.items()):
        lines.append(
            f"\nraw argon2id verify, {args.workers} processes, round {round_number + 1}: "
            f"{rate:.1f}/s"
        )
    for round_number in sorted({r.round for r in results}):
        mine = {(c, s): r for (n, c, s), r in by.items() if n == round_number}
        lines += ["", f"Targets (authsvc), round {round_number + 1}:"]
        lines += [f"  {check}" for check in target_checks(mine, argon2_rates.get(round_number))]
    lines += ["", machine()]
    return "\n".join(lines)


# (contender, scenario, peer, at least this many times the peer's rate): the performance
# issue's targets, each checked against the peer under sync and under gthread workers.
RATE_TARGETS = (
    ("authsvc", "S1", "fje", 1.3),
    ("authsvc", "S1", "floor", 0.9),
    ("authsvc", "S2", "fje", 1.3),
    ("dpop", "S1", "fje", 1.0),
    ("dpop", "S2", "fje", 1.0),
)
TAIL_TARGET = 3.0  # p99 at most this many times p50, S1 and S2
RSS_TARGET_MIB = 200  # authsvc's peak RSS under S1-S3
LOGIN_TARGET = 0.9  # S3 at least this times the raw argon2id verify rate


def target_checks(by: dict[tuple[str, str], Result], argon2_rate: float | None) -> list[str]:
    """The issue's targets for one round, each with its measured value and PASS/MISS."""
    checks: list[tuple[str, float, float, bool]] = []  # name, value, goal, higher is better
    for who, scenario, peer, goal in RATE_TARGETS:
        mine = by.get((who, scenario))
        for key in PEERS[peer]:
            theirs = by.get((key, scenario))
            if mine and theirs and theirs.rate:
                name = f"{scenario}{' with DPoP' if who == 'dpop' else ''} >= {goal}x {key}"
                checks.append((name, mine.rate / theirs.rate, goal, True))
    login = by.get(("authsvc", "S3"))
    if login and argon2_rate:
        checks.append(
            (f"S3 >= {LOGIN_TARGET}x raw argon2id", login.rate / argon2_rate, LOGIN_TARGET, True)
        )
    for scenario in ("S1", "S2"):
        mine = by.get(("authsvc", scenario))
        if mine and mine.p50_ms:
            name = f"{scenario} p99 <= {TAIL_TARGET:g}x p50"
            checks.append((name, mine.p99_ms / mine.p50_ms, TAIL_TARGET, False))
    peaks = [r.peak_rss for (who, _), r in by.items() if who == "authsvc"]
    if peaks:
        name = f"authsvc peak RSS <= {RSS_TARGET_MIB} MiB"
        checks.append((name, max(peaks) / 2**20, RSS_TARGET_MIB, False))
    return [
        f"{'PASS' if (value >= goal if higher else value <= goal) else 'MISS'} {name}: "
        f"{value:.2f}"
        for name, value, goal, higher in checks
    ]


def machine() -> str:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Machine: {os.cpu_count()} CPUs ({model}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average before the run: {load}"
    )


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up per run (0: none)"
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
    secret = secrets.token_urlsafe(48)
    results: list[Result] = []
    argon2_rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as tmp:
        workdir = Path(tmp)
        with benchmark_redis(args.redis_url, args.cpus, workdir) as redis_url:
            client = redis.Redis.from_url(redis_url)
            contenders = make_contenders(args, redis_url, secret)
            create_accounts(contenders, redis_url, secret)
            try:
                for contender in contenders:
                    contender.start(workdir, args.cpus)
                for round_number in range(args.repeat):
                    for scenario in args.scenarios:
                        for contender in contenders:
                            if scenario not in contender.scenarios:
                                continue
                            result = measure(
                                contender, scenario, round_number, args, workdir, client, secret
                            )
                            results.append(result)
                            print(
                                f"{scenario} {contender.key}: {result.rate:.0f} req/s "
                                f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms "
                                f"errors {result.errors}, server CPU {result.cpu_us:.0f} us/req, "
                                f"busiest process {result.busiest_share:.0%} of it, "
                                f"Redis CPU {result.redis_cpu_us:.0f} us/req",
                                file=sys.stderr,
                                flush=True,
                            )
                            if scenario == "S3" and contender.key == "authsvc":
                                # Right after authsvc's logins, on the same (now idle)
                                # cores: the shared machine's load drifts between runs.
                                rate = raw_argon2_rate(args.workers, args.duration, args.cpus)
                                argon2_rates[round_number] = rate
                                print(f"raw argon2id: {rate:.1f}/s", file=sys.stderr, flush=True)
            finally:
                for contender in contenders:
                    contender.stop()
    print(report(results, argon2_rates, args))
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
