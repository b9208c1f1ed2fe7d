"""In-process cost per request of authsvc's hot paths, with the logging gunicorn configures.

Runs N requests of one scenario through Flask's test client against a real Redis
(flushed: give it a database of its own) and prints the CPU microseconds per request
(best and median batch); with
--profile, the top of a cProfile sorted by cumulative time. Logs go through the same
dictConfig as under gunicorn, to /dev/null.

    .venv/bin/python benchmarks/profile_requests.py --redis-url redis://127.0.0.1:6379/11 me
    .venv/bin/python benchmarks/profile_requests.py --redis-url ... refresh --profile
    .venv/bin/python benchmarks/profile_requests.py --redis-url ... me_dpop   # or refresh_dpop
    .venv/bin/python benchmarks/profile_requests.py --redis-url ... login --requests 500

The ``_dpop`` scenarios bind the session to an ES256 key (RFC 9449) and send a fresh
proof with every request, as benchmarks/wrk/*_dpop.lua do (refresh: GET, the refresh
token as Bearer); the proofs are signed before each batch, outside the count. ``login``
goes round robin over 64 accounts and also prints the request thread's own CPU (the
hash runs on the hashing threads).
"""

from __future__ import annotations

import argparse
import cProfile
import logging.config
import pstats
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from authsvc import create_app
from authsvc.logs import logging_config
from tests.dpop_keys import DeviceKey

BATCH = 100
ACCOUNTS = 64  # login: round robin, as in benchmarks/run.py
PASSWORD = "profile password 0123"


def main() -> None:
    """Measure one scenario."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["me", "refresh", "me_dpop", "refresh_dpop", "login"])
    parser.add_argument("--redis-url", required=True, help="a database of its own (FLUSHED)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="cumulative", help="cProfile order (e.g. tottime)")
    args = parser.parse_args()

    config = logging_config(args.log_level)
    config["handlers"]["stderr"]["stream"] = open("/dev/null", "w")  # noqa: SIM115
    logging.config.dictConfig(config)
    redis.Redis.from_url(args.redis_url).flushdb()
    app = create_app({"REDIS_URL": args.redis_url, "JWT_SECRET": secrets.token_urlsafe(48)})
    for i in range(ACCOUNTS if args.scenario == "login" else 1):
        app.extensions["authsvc"].add_user(f"profiler{i}" if i else "profiler", PASSWORD)
    client = app.test_client()
    dpop = args.scenario.endswith("_dpop")
    key = DeviceKey("ES256")
    login_headers = {"DPoP": key.proof("POST", "/api/v1/user/login")} if dpop else {}
    pair = client.post(
        "/api/v1/user/login",
        json={"username": "profiler", "password": PASSWORD},
        headers=login_headers,
    ).get_json()["data"]

    state: dict[str, Any] = {"refresh": pair["refresh_token"], "proofs": []}
    scheme = "DPoP" if dpop else "Bearer"

    def proof_headers() -> dict[str, str]:
        return {"DPoP": state["proofs"].pop()} if dpop else {}

    def me() -> None:
        response = client.get(
            "/api/v1/user/me",
            headers={"Authorization": f"{scheme} {pair['access_token']}", **proof_headers()},
        )
        assert response.status_code == 200, response.get_data()  # noqa: S101

    def refresh() -> None:
        # As wrk/refresh.lua and wrk/refresh_dpop.lua: GET, the refresh token as Bearer.
        response = client.get(
            "/api/v1/user/refresh",
            headers={"Authorization": f"Bearer {state['refresh']}", **proof_headers()},
        )
        assert response.status_code == 200, response.get_data()  # noqa: S101
        state["refresh"] = response.get_json()["data"]["refresh_token"]

    def sign(count: int) -> None:
        """Proofs for the next ``count`` requests, made before they are timed."""
        if args.scenario == "me_dpop":
            state["proofs"] = [
                key.proof("GET", "/api/v1/user/me", access_token=pair["access_token"])
                for _ in range(count)
            ]
        elif dpop:
            state["proofs"] = [key.proof("GET", "/api/v1/user/refresh") for _ in range(count)]

    def login() -> None:
        # Round robin over the accounts, as benchmarks/wrk/login.lua does.
        state["login"] = index = (state.get("login", 0) + 1) % ACCOUNTS
        response = client.post(
            "/api/v1/user/login",
            json={"username": f"profiler{index}" if index else "profiler", "password": PASSWORD},
        )
        assert response.status_code == 200, response.get_data()  # noqa: S101

    step = {"me": me, "me_dpop": me, "refresh": refresh, "refresh_dpop": refresh, "login": login}
    step = step[args.scenario]
    sign(200)
    for _ in range(20 if args.scenario == "login" else 200):  # warm up
        step()
    # CPU time, not wall time: on a shared machine waiting for a core is not a cost.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler:
        profiler.enable()
    # Batches of BATCH requests; on a shared, busy machine the fastest batch is the best
    # estimate of the cost itself (noise only ever adds), the median says how noisy.
    batches, own = [], []
    for _ in range(max(args.requests // BATCH, 1)):
        if profiler:
            profiler.disable()
        sign(BATCH)
        if profiler:
            profiler.enable()
        cpu_started, thread_started = time.process_time(), time.thread_time()
        for _ in range(BATCH):
            step()
        batches.append((time.process_time() - cpu_started) / BATCH * 1e6)
        own.append((time.thread_time() - thread_started) / BATCH * 1e6)
    if profiler:
        profiler.disable()
    batches.sort()
    print(f"{args.scenario}: {batches[0]:.0f} us CPU per request at best, "
          f"{batches[len(batches) // 2]:.0f} median ({len(batches)} batches of {BATCH}, "
          f"log level {args.log_level})")  # fmt: skip
    if args.scenario == "login":
        own.sort()
        print(f"login, request thread only (no hash): {own[0]:.0f} us at best, "
              f"{own[len(own) // 2]:.0f} median")  # fmt: skip
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    main()
