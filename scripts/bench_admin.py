"""Time bulk account creation over HTTP against a real `authsvc serve`.

Starts the service (gunicorn, N workers) on 127.0.0.1 against --redis-url (flushed
first: give it a database of its own) or, without it, in quick-start mode with an
embedded Redis in a temporary folder; creates an admin with `authsvc user add --role
admin` and the admin console client (`authsvc client add`, scope admin); then creates
--users accounts through POST /api/v1/admin/users in requests of MAX_BULK_ROWS rows,
--concurrency requests at a time, with the configured (OWASP) argon2id cost, and prints
the time taken.

    python scripts/bench_admin.py --users 1000 --redis-url redis://127.0.0.1:6379/14

Needs the test extras (requests); reuses the end-to-end test's process helpers.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authsvc.schemas import MAX_BULK_ROWS
from tests.conftest import TEST_SECRET
from tests.test_e2e import AUTHSVC, ServeProcess, add_user_with_cli, serve_env

ADMIN = ("bench-admin", secrets.token_urlsafe(12))
# The admin API needs the admin scope, which only a registered client can grant.
ADMIN_CLIENT = "admin-console"
HTTP_TIMEOUT = 600


def _create(url: str, token: str, start: int, count: int) -> tuple[int, float]:
    rows = [
        {"username": f"bench-dev-{n:06d}", "password": secrets.token_urlsafe(12)}
        for n in range(start, start + count)
    ]
    began = time.perf_counter()
    response = requests.post(
        f"{url}/api/v1/admin/users",
        json={"users": rows},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["data"]["created"], time.perf_counter() - began


def _add_admin(env: dict[str, str]) -> None:
    add_user_with_cli(env, *ADMIN, roles=("admin",))
    command = ["client", "add", ADMIN_CLIENT, "--name", "Admin console", "--scope", "admin"]
    subprocess.run([str(AUTHSVC), *command], env=env, capture_output=True, timeout=60, check=True)


def main() -> None:
    """Parse arguments, serve, create the accounts, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--redis-url", help="a Redis database to flush and use")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="authsvc-bench-admin-"))
    settings = {"JWT_SECRET": TEST_SECRET, "INSTANCE_PATH": folder / "instance"}
    if args.redis_url:
        redis.Redis.from_url(args.redis_url).flushdb()
        settings["REDIS_URL"] = args.redis_url
    env = serve_env(**settings)
    serve = None
    try:
        if args.redis_url:
            _add_admin(env)
        serve = ServeProcess(env, folder, workers=args.workers)
        serve.wait_ready(timeout=60)
        if not args.redis_url:
            _add_admin({**env, "AUTHSVC_REDIS_URL": f"unix://{folder}/instance/redis.sock"})
        token = requests.post(
            f"{serve.url}/api/v1/user/login",
            json={
                "username": ADMIN[0],
                "password": ADMIN[1],
                "client_id": ADMIN_CLIENT,
                "scope": "admin",
            },
            timeout=60,
        ).json()["data"]["access_token"]
        starts = range(0, args.users, MAX_BULK_ROWS)
        began = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(
                pool.map(
                    lambda s: _create(serve.url, token, s, min(MAX_BULK_ROWS, args.users - s)),
                    starts,
                )
            )
        total = time.perf_counter() - began
        created = sum(c for c, _ in results)
        per_request = [t for _, t in results]
        print(
            f"created {created}/{args.users} accounts in {len(results)} requests of "
            f"<= {MAX_BULK_ROWS} rows, concurrency {args.concurrency}, {args.workers} workers: "
            f"{total:.1f} s total, {created / total:.1f} accounts/s, per request "
            f"min {min(per_request):.1f} s / max {max(per_request):.1f} s"
        )
    finally:
        if serve is not None:
            serve.stop()
        if args.redis_url:
            redis.Redis.from_url(args.redis_url).flushdb()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
