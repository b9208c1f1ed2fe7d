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
