"""Soak: mixed device traffic against a real `authsvc serve` while Redis restarts and stalls.

Starts its own redis-server (AOF, like production) on a free 127.0.0.1 port and
`authsvc serve` with 2 workers on it. Each device thread owns one account and loops:
log in, call the API, refresh (rotating), sometimes log out or log out everywhere, and
now and then present a token it had revoked earlier. A chaos thread restarts Redis
(SIGTERM, start again on the same port and folder) or stalls it (SIGSTOP for up to 3 s,
then SIGCONT) at random moments. Clients behave like the SDK: a 503 or a timeout is
retried with the same refresh token.

It prints requests by status and the invariants, which must all be 0:

- ``unexpected_5xx``: 5xx answers other than 503;
- ``revoked_accepted``: a 200 for a token whose logout had answered 200;
- ``sessions_lost``: a session that ended although its device never ended it.

and the workers' RSS after warm-up and at the end. Exit status 1 if an invariant broke.

    .venv/bin/python scripts/soak.py --minutes 10

Everything it starts is stopped by PID on exit. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authsvc import create_app
from tests.test_e2e import API, ServeProcess, serve_env
from tests.test_outage import RedisServer

HTTP_TIMEOUT = 5.0
RETRY_PAUSE = 0.2
# How long a device keeps retrying one step through an outage before it gives up on it.
STEP_DEADLINE = 30.0
WARM_UP_SHARE = 0.1
SECRET = secrets.token_urlsafe(48)
# Answers that say the session is over: fine after the device's own logout, a loss otherwise.
SESSION_OVER = {"session_revoked", "session_expired", "refresh_reused", "token_revoked"}


@dataclass
class SoakReport:
    """What a soak saw."""

    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected_5xx: int = 0
    revoked_accepted: int = 0
    sessions_lost: int = 0
    lost_details: list[str] = field(default_factory=list)
    restarts: int = 0
    stalls: int = 0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return self.unexpected_5xx == self.revoked_accepted == self.sessions_lost == 0

    def lines(self) -> list[str]:
        """A human-readable summary."""
        by_status = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return [
            f"soak: {self.seconds:.0f} s, {sum(self.statuses.values())} requests, "
            f"{self.restarts} Redis restarts, {self.stalls} Redis stalls",
            f"requests by status: {by_status}",
            f"unexpected 5xx (not 503): {self.unexpected_5xx}",
            f"revoked tokens accepted:  {self.revoked_accepted}",
            f"sessions lost:            {self.sessions_lost}"
            + (f" ({'; '.join(self.lost_details[:5])})" if self.lost_details else ""),
            f"worker RSS: {self.rss_start_mib:.1f} MiB after warm-up, "
            f"{self.rss_end_mib:.1f} MiB at the end",
        ]


class Device(threading.Thread):
    """One account, one session at a time, a random mix of the API's calls."""

    def __init__(
        self, url: str, username: str, password: str, report: SoakReport, lock: threading.Lock,
        stop: threading.Event, seed: int, pause: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(name=f"device-{username}", daemon=True)
        self.url, self.username, self.password = url, username, password
        self.report, self.lock, self.stop_event = report, lock, stop
        self.pause = pause  # between two steps, as a device does something else
        self.random = random.Random(seed)
        self.http = requests.Session()
        self.access: str | None = None
        self.refresh_token: str | None = None
        self.revoked: list[tuple[str, str]] = []  # (kind, token) whose logout answered 200

    # -- plumbing ---------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self.lock:
            self.report.statuses[key] += 1

    def _request(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        """One request, retried through 503s and timeouts; (status, error slug) or None."""
        deadline = time.monotonic() + STEP_DEADLINE
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                answer = self.http.request(
                    method, self.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kw
                )
            except requests.RequestException:
                self._count("timeout")
                time.sleep(RETRY_PAUSE)
                continue
            self._count(str(answer.status_code))
            if answer.status_code == 503:
                time.sleep(RETRY_PAUSE)
                continue
            if answer.status_code >= 500:
                with self.lock:
                    self.report.unexpected_5xx += 1
            body = _json(answer)
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            return answer.status_code, data.get("error"), data
        return None

    def _lost(self, what: str, slug: str | None) -> None:
        with self.lock:
            self.report.sessions_lost += 1
            self.report.lost_details.append(f"{self.username} {what}: {slug}")
        self.access = self.refresh_token = None

    # -- the steps ----------------------------------------------------------------------
    def login(self) -> None:
        reply = self._request(
            "POST", f"{API}/login",
            json={"username": self.username, "password": self.password, "device_id": "soak"},
        )  # fmt: skip
        if reply and reply[0] == 200:
            self.access, self.refresh_token = reply[2]["access_token"], reply[2]["refresh_token"]
        elif reply and reply[0] == 429:
            self.stop_event.wait(1.0)

    def call(self) -> None:
        reply = self._request("GET", f"{API}/me", self.access)
        if reply is None or reply[0] == 200:
            return
        if reply[1] == "token_expired":
            self.refresh()
        else:
            self._lost("GET /me", reply[1])

    def refresh(self) -> None:
        reply = self._request("GET", f"{API}/refresh", self.refresh_token)
        if reply is None:
            return
        if reply[0] == 200:
            self.access, self.refresh_token = reply[2]["access_token"], reply[2]["refresh_token"]
        else:
            self._lost("refresh", reply[1])

    def logout(self, path: str) -> None:
        reply = self._request("POST", f"{API}/{path}", self.access)
        if reply is None:
            return  # unknown outcome: the tokens are simply dropped, not counted as revoked
        if reply[0] == 200 and self.access and self.refresh_token:
            self.revoked += [("access", self.access), ("refresh", self.refresh_token)]
            del self.revoked[:-20]
        elif reply[1] not in SESSION_OVER:
            self._lost(path, reply[1])
        self.access = self.refresh_token = None

    def present_revoked(self) -> None:
        kind, token = self.random.choice(self.revoked)
        path = f"{API}/me" if kind == "access" else f"{API}/refresh"
        reply = self._request("GET", path, token)
        if reply is not None and reply[0] == 200:
            with self.lock:
                self.report.revoked_accepted += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            if self.pause:
                self.stop_event.wait(self.random.uniform(0, 2 * self.pause))
            if self.access is None:
                self.login()
                continue
            roll = self.random.random()
            if roll < 0.60:
                self.call()
            elif roll < 0.85:
                self.refresh()
            elif roll < 0.90:
                self._request("GET", f"{API}/sessions", self.access)
            elif roll < 0.95 and self.revoked:
                self.present_revoked()
            elif roll < 0.98:
                self.logout("logout")
            else:
                self.logout("logout-all")
        self.http.close()


def _json(answer: requests.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _chaos(redis_server: RedisServer, report: SoakReport, stop: threading.Event, seed: int) -> None:
    chaos = random.Random(seed)
    while not stop.wait(chaos.uniform(2.0, 6.0)):
        if redis_server.process is None:
            return
        if chaos.random() < 0.5:
            redis_server.stop()
            redis_server.start()
            report.restarts += 1
        else:
            pid = redis_server.process.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                stop.wait(chaos.uniform(0.5, 3.0))
            finally:
                os.kill(pid, signal.SIGCONT)
            report.stalls += 1


def _workers_rss_mib(serve: ServeProcess) -> float:
    workers = psutil.Process(serve.process.pid).children(recursive=True)
    return sum(p.memory_info().rss for p in workers if "redis" not in p.name()) / 2**20


def run_soak(
    seconds: float,
    *,
    devices: int = 8,
    seed: int = 1,
    port: int | None = None,
    redis_port: int | None = None,
    pause: float = 0.0,
) -> SoakReport:
    """Run the soak for ``seconds`` and return what it saw (ports None: free ones).

    ``pause``: each device waits between 0 and twice this (seconds, at random) before
    each step; 0 sends as fast as the server answers, which takes every core there is.
    """
    report = SoakReport(seconds=seconds)
    with tempfile.TemporaryDirectory(prefix="authsvc-soak-") as folder:
        redis_server = RedisServer(Path(folder))
        if redis_port:
            redis_server.port = redis_port
        redis_server.start()
        serve: ServeProcess | None = None
        try:
            accounts = [(f"soak-{i}", secrets.token_urlsafe(12)) for i in range(devices)]
            admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
            service = create_app({"JWT_SECRET": SECRET}, redis_client=admin).extensions["authsvc"]
            for username, password in accounts:
                service.add_user(username, password)
            admin.close()
            serve = ServeProcess(
                serve_env(REDIS_URL=redis_server.url, JWT_SECRET=SECRET, LOG_LEVEL="WARNING"),
                Path(folder),
                port=port,
            )
            serve.wait_ready()
            stop, lock = threading.Event(), threading.Lock()
            threads = [
                Device(serve.url, name, password, report, lock, stop, seed * 1000 + i, pause)
                for i, (name, password) in enumerate(accounts)
            ]
            for thread in threads:
                thread.start()
            time.sleep(seconds * WARM_UP_SHARE)
            report.rss_start_mib = _workers_rss_mib(serve)
            chaos = threading.Thread(
                target=_chaos, args=(redis_server, report, stop, seed), daemon=True
            )
            chaos.start()
            time.sleep(seconds * (1 - WARM_UP_SHARE))
            stop.set()
            chaos.join()
            for thread in threads:
                thread.join(STEP_DEADLINE + HTTP_TIMEOUT)
            report.rss_end_mib = _workers_rss_mib(serve)
        finally:
            if serve is not None:
                serve.stop()
            redis_server.stop()
    return report


def main() -> int:
    """Parse the arguments, soak, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, help="authsvc serve's port (default: a free one)")
    parser.add_argument("--redis-port", type=int, help="its redis-server's (default: free)")
    parser.add_argument(
        "--pause", type=float, default=0.0,
        help="mean seconds each device waits before each step (default 0: no wait)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args()
    report = run_soak(
        args.minutes * 60,
        devices=args.devices,
        seed=args.seed,
        port=args.port,
        redis_port=args.redis_port,
        pause=args.pause,
    )
    print("\n".join(report.lines()))
    if args.json:
        print(json.dumps(report.__dict__, default=dict))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
