"""The benchmark scripts still run against the package as it is now.

Nothing else imports them, so a moved or renamed function broke one of them silently
before (micro.py, when log_request moved). Each is imported in a process of its own
(they set environment variables and import paths at import time).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))


def _run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    # What benchmarks/run.py hands the contender apps (the argon2id parameters: small).
    env = {
        "BENCH_REDIS_URL": url,
        "BENCH_JWT_SECRET": "x" * 48,
        "BENCH_ARGON2_TIME_COST": "1",
        "BENCH_ARGON2_MEMORY_KIB": "64",
        "BENCH_ARGON2_PARALLELISM": "1",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_every_benchmark_script_is_listed():
    assert {"run", "micro", "instructions", "floor_app", "profile_requests"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_script_imports(name, real_redis_url):
    """Importing the script (not running it) finds every name it uses from authsvc."""
    code = f"import sys; sys.path[:0] = ['benchmarks', '.']; import {name}"
    done = _run("-c", code, url=real_redis_url)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("contender", ["authsvc", "floor"])
def test_the_instruction_count_harness_answers_its_requests(contender, real_redis, real_redis_url):
    """What benchmarks/instructions.py runs under valgrind: GET /me answered 200 each time."""
    done = _run(
        "benchmarks/instructions.py",
        "--redis-url",
        real_redis_url,
        "--serve",
        contender,
        str(ROOT),
        "5",
        url=real_redis_url,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_slices_merge_into_one_result(real_redis_url):
    """run.py's slices: requests, time and CPU add up; p50/p99 come from the merged histogram.

    The percentile follows wrk's rule (C's round(p/100*count + 0.5)): of 1..100 µs, p50 is
    51 µs (Python's round would say 50).
    """
    code = """
import sys; sys.path[:0] = ['benchmarks', '.']
from collections import Counter
from report import percentile
from run import Tally
assert percentile(Counter(range(1, 101)), 50) == 51, percentile(Counter(range(1, 101)), 50)
assert percentile(Counter(range(1, 101)), 99) == 100
assert percentile(Counter(), 99) == 0
tally = Tally()
slow = {"requests": 10, "duration_us": 1_000_000, "status_errors": 1, "socket_errors": 0,
        "timeouts": 0, "latency": [[9000, 10]]}
fast = {"requests": 90, "duration_us": 1_000_000, "status_errors": 0, "socket_errors": 2,
        "timeouts": 0, "latency": [[1000, 80], [9000, 10]]}
tally.add(slow, {7: 0.004, 8: 0.001}, 0.001)
tally.add(fast, {7: 0.011, 8: 0.004}, 0.002)
result = tally.result("authsvc", "S1", 0)
assert (result.requests, result.seconds, result.errors) == (100, 2.0, 3), result
assert result.rate == 50.0 and result.slice_rates == [10.0, 90.0]
assert (result.p50_ms, result.p99_ms) == (1.0, 9.0), (result.p50_ms, result.p99_ms)
assert round(result.cpu_us) == 200 and round(result.busiest_share, 2) == 0.75
assert round(result.redis_cpu_us) == 30
print("ok")
"""
    done = _run("-c", code, url=real_redis_url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_the_floor_logs_in_and_refuses_a_wrong_password(real_redis, real_redis_url):
    """The floor's S3 login: the stored hash verified, two HS256 tokens; 401 on a mismatch."""
    code = """
import sys; sys.path[:0] = ['benchmarks', '.']
import jwt
from werkzeug.test import Client
import floor_app
floor_app._redis.set("user:floor-probe", floor_app._hasher.hash("right password"))
client = Client(floor_app.app)
account = {"username": "floor-probe", "password": "right password"}
good = client.post("/api/v1/user/login", json=account)
assert good.status_code == 200, good.get_data()
data = good.get_json()["data"]
for kind, token in (("access", data["access_token"]), ("refresh", data["refresh_token"])):
    claims = jwt.decode(token, "x" * 48, algorithms=["HS256"], audience="authsvc")
    assert claims["sub"] == "floor-probe" and claims["type"] == kind, claims
bad = client.post("/api/v1/user/login", json={"username": "floor-probe", "password": "wrong"})
assert bad.status_code == 401, bad.get_data()
print("ok")
"""
    done = _run("-c", code, url=real_redis_url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_the_report_gives_every_login_contender_against_raw_argon2id(real_redis_url):
    """Each S3 contender's rate over the same round's raw argon2id rate, on one line."""
    code = """
import sys; sys.path[:0] = ['benchmarks', '.']
from argparse import Namespace
from report import Result, report
def s3(contender, rate, round_number):
    return Result(contender, "S3", round_number, requests=int(rate * 10), seconds=10.0,
                  errors=0, p50_ms=400.0, p99_ms=450.0, redis_reads=1.0, redis_commands=1.0)
results = [s3("floor", 81, 0), s3("authsvc", 72, 0), s3("floor", 99, 1)]
args = Namespace(threads=2, connections=32, duration=10, workers=2, cpus="0-1")
text = report(results, {0: 90.0}, args, (0.0, 0.0, 0.0))
line = next(line for line in text.splitlines() if line.startswith("raw argon2id"))
assert line.endswith("90.0/s; S3 x raw argon2id: floor 0.90, authsvc 0.80"), line
print("ok")
"""
    done = _run("-c", code, url=real_redis_url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_bytes_per_session_leave_out_keys_that_expired_meanwhile(real_redis_url):
    """run.py's Redis bytes: a key gone during the slice is not subtracted from the new ones.

    DPoP's remembered proofs of an earlier S1 run expired during S2's first slice, and
    the bytes per session came out negative (-2024 B).
    """
    code = """
import sys; sys.path[:0] = ['benchmarks', '.']
import redis
from run import bytes_added, redis_bytes
client = redis.Redis.from_url(sys.argv[1])
client.flushdb()
client.set("expiring-proof", "p" * 5000)
client.rpush("growing-index", "one")
before = redis_bytes(client)
client.delete("expiring-proof")
client.rpush("growing-index", *["x" * 100] * 10)
client.set("new-session", "s" * 300)
after = redis_bytes(client)
grown = after[b"growing-index"] - before[b"growing-index"]
assert grown > 0 and set(after) == {b"growing-index", b"new-session"}, (before, after)
assert bytes_added(before, after) == after[b"new-session"] + grown, (before, after)
client.flushdb()
print("ok")
"""
    done = _run("-c", code, real_redis_url, url=real_redis_url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
