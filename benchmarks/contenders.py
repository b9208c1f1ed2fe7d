"""The servers benchmarks/run.py measures, how each is started, and the accounts they share.

(a) the floor and (b) flask-jwt-extended's Redis blocklist pattern, each under gunicorn's
sync and gthread workers, (c) authsvc at its defaults, (d) authsvc with DPoP-bound
sessions, and optionally (c0)/(d0) another checkout of authsvc for a before/after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dpop_contender
import jwt
import psutil
import redis
import requests

from authsvc import create_app
from authsvc.config import Settings
from authsvc.embedded import stop_process

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

PASSWORD = "bench password 0123"
ACCOUNTS = 64
SCENARIOS = ("S1", "S2", "S3")
HTTP_TIMEOUT = 30
STARTUP_TIMEOUT = 60
# A server is idle when it used under this share of one core over this many seconds.
IDLE_WINDOW = 0.05
IDLE_SHARE = 0.1
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
    redis_url: str = ""  # its Redis database
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

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Return once the server has finished what wrk left queued in it (its CPU is quiet).

        wrk stops with a request in flight on each connection, and the server still
        answers them: 32 logins are half a second of both cores, which the next
        contender's slice would pay for.
        """
        deadline = time.monotonic() + timeout
        used = sum(self.tree_cpu().values())
        while time.monotonic() < deadline:
            time.sleep(IDLE_WINDOW)
            before, used = used, sum(self.tree_cpu().values())
            if used - before < IDLE_WINDOW * IDLE_SHARE:
                return

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
    worker = (
        ["--worker-class", "sync"]
        if threads is None
        else ["--worker-class", "gthread", "--threads", str(threads)]
    )
    return [sys.executable, "-m", "gunicorn", "--workers", str(workers), *worker,
            "--bind", bind, "--log-level", "warning", app]  # fmt: skip


def make_contenders(
    args: argparse.Namespace, redis_url: str, secret: str, *, own_databases: bool
) -> list[Contender]:
    """(a) the floor, (b) flask-jwt-extended's Redis blocklist pattern, (c) authsvc.

    ``own_databases``: each contender gets a database of its own on ``redis_url``'s
    server (numbered from 0), else all share ``redis_url``'s.
    """
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
        ("floor", "(a) floor: bare WSGI, PyJWT + EXISTS", ("S1", "S3"), "floor_app:app", None),
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
        baseline_env = {**authsvc_env, **dict(item.split("=", 1) for item in args.baseline_env)}
        contenders.append(
            Contender(
                "baseline",
                f"(c0) authsvc from {args.baseline}",
                SCENARIOS,
                [sys.executable, "-c", "from authsvc.cli import main; main()", "serve"],
                {**baseline_env, "AUTHSVC_BIND": bind, "PYTHONPATH": pythonpath},
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
                        **baseline_env,
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
    kept = [c for c in contenders if c.key in keep]
    for number, contender in enumerate(kept):
        # A database each on the benchmark's own Redis: keys another contender made
        # (DPoP proofs remembered for 5 minutes, say) expire in their own database,
        # not inside this one's bytes-per-session window.
        contender.redis_url = database_url(redis_url, number) if own_databases else redis_url
        for name in ("BENCH_REDIS_URL", "AUTHSVC_REDIS_URL"):
            if name in contender.env:
                contender.env = {**contender.env, name: contender.redis_url}
    return kept


def database_url(url: str, number: int) -> str:
    """``url`` with its database number replaced by ``number``."""
    return urlsplit(url)._replace(path=f"/{number}").geturl()


def create_accounts(contenders: list[Contender], secret: str) -> None:
    """bench0..bench63 with PASSWORD in each database: authsvc's users, hashes for (a), (b)."""
    for url in dict.fromkeys(c.redis_url for c in contenders):
        users = {c.key for c in contenders if c.redis_url == url}
        app = create_app({"REDIS_URL": url, "JWT_SECRET": secret})
        service = app.extensions["authsvc"]
        if users & {"authsvc", "baseline", "dpop", "dpop-baseline"}:
            with ThreadPoolExecutor(4) as pool:
                names = [f"bench{i}" for i in range(ACCOUNTS)]
                list(pool.map(service.add_user, names, [PASSWORD] * ACCOUNTS))
        if users & {"floor", "fje", "fje-gthread"}:
            stored = service.passwords.hash(PASSWORD)
            client = redis.Redis.from_url(url)
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
