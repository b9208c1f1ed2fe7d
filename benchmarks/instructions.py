"""Instructions per ``GET /me``, counted by valgrind: the same number on a busy machine.

On a shared machine req/s moves by 10% from one run to the next, which hides a change
of a few percent. callgrind counts the instructions a process executes instead, which
does not depend on what else runs. This runs ``GET /api/v1/user/me`` through authsvc's
WSGI app (its fast path, the logging gunicorn configures, multiprocess metrics) and
through the floor app (benchmarks/floor_app.py), in process against a real Redis,
``--requests`` times under ``valgrind --tool=callgrind``, and again with none; the
difference over ``--requests`` is the count per request. It counts Python and the C
libraries, not the kernel (socket calls, the log write) nor Redis, and not gunicorn.

    .venv/bin/python benchmarks/instructions.py --redis-url redis://127.0.0.1:6379/11
    .venv/bin/python benchmarks/instructions.py --redis-url ... --baseline /work/base

``--baseline DIR`` also counts the authsvc package found in DIR (before/after). Each
count runs Python under valgrind twice: about a minute and a half.
"""

from __future__ import annotations

import argparse
import io
import logging.config
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SECRET = "instructions-benchmark-secret-0123456789abcdef0123"
WARM_UP = 50


def environ(token: str) -> dict[str, Any]:
    """A WSGI environ for ``GET /api/v1/user/me`` with ``token`` as Bearer, as gunicorn makes."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/user/me",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def authsvc_app(redis_url: str) -> tuple[WSGIApp, str]:
    """authsvc with the logging gunicorn configures (to /dev/null), one user, its token."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="authsvc-ir-"))
    from authsvc import create_app
    from authsvc.logs import logging_config

    config = logging_config("INFO")
    config["handlers"]["stderr"]["stream"] = open(os.devnull, "w")  # noqa: SIM115
    logging.config.dictConfig(config)
    app = create_app({"REDIS_URL": redis_url, "JWT_SECRET": SECRET})
    app.extensions["authsvc"].add_user("counted", "counted password 0123")
    reply = app.test_client().post(
        "/api/v1/user/login", json={"username": "counted", "password": "counted password 0123"}
    )
    return app, reply.get_json()["data"]["access_token"]


def floor(redis_url: str) -> tuple[WSGIApp, str]:
    """The floor app and an HS256 token it accepts."""
    os.environ["BENCH_REDIS_URL"], os.environ["BENCH_JWT_SECRET"] = redis_url, SECRET
    sys.path.insert(0, str(BENCH_DIR))
    import floor_app
    import jwt

    claims = {"sub": "u1", "aud": "authsvc", "jti": secrets.token_urlsafe(16)}
    token = jwt.encode({**claims, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    return floor_app.app, token


def serve(contender: str, source: str, redis_url: str, requests: int) -> None:
    """(Under valgrind) set up ``contender``, warm it up, answer ``requests`` requests."""
    sys.path.insert(0, source)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    app, token = (authsvc_app if contender != "floor" else floor)(redis_url)

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"{contender}: {status}")

    for _ in range(WARM_UP + requests):
        b"".join(app(environ(token), start_response))


def instructions(contender: str, source: str, redis_url: str, requests: int) -> int:
    """What callgrind counted for one run of :func:`serve`."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--redis-url", redis_url,
        "--serve", contender, source, str(requests),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {contender}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(contender: str, source: str, redis_url: str, requests: int) -> float:
    """Instructions per request: a run with ``requests`` less a run with none."""
    counted = instructions(contender, source, redis_url, requests)
    return (counted - instructions(contender, source, redis_url, 0)) / requests


def main() -> None:
    """Count every contender and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True, help="a database of its own (FLUSHED)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--baseline", help="also count the authsvc package in this folder")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        contender, source, count = args.serve
        serve(contender, source, args.redis_url, int(count))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    contenders = [("floor", str(ROOT)), ("authsvc", str(ROOT))]
    if args.baseline:
        contenders.append(("baseline", str(Path(args.baseline).resolve())))
    counts = {
        name: per_request(name, source, args.redis_url, args.requests)
        for name, source in contenders
    }
    print(f"GET /api/v1/user/me in process, {args.requests} requests, valgrind --tool=callgrind")
    print("| contender | instructions per request | x floor |")
    print("|---|---|---|")
    for name, count in counts.items():
        print(f"| {name} | {count:,.0f} | {count / counts['floor']:.2f} |")


if __name__ == "__main__":
    main()
