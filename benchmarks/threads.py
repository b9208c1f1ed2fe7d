"""Where a worker's CPU goes under load, thread by thread: authsvc (or a peer) under wrk.

Starts one contender of benchmarks/run.py on its own redis-server, drives it with one
scenario's wrk script, and prints each worker thread's CPU per completed request (from
``/proc/<pid>/task/*/stat``, user + system, or user only with ``--user``), biggest
first. Under S3 the first thread of each worker is its argon2 thread and the next ones
its request threads; the raw argon2id verify rate of as many processes as workers is
measured right after each run, on the same cores.

    .venv/bin/python benchmarks/threads.py --scenario S3 --seconds 10 --cpus 0-1
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

import run  # noqa: E402
from contenders import CONTENDERS, create_accounts, make_contenders  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(master_pid: int, *, user_only: bool) -> dict[tuple[int, int], float]:
    """CPU seconds so far of every thread of every worker, by (worker pid, thread id)."""
    used = {}
    for worker in psutil.Process(master_pid).children(recursive=True):
        for task in Path(f"/proc/{worker.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:  # the thread ended
                continue
            ticks = int(fields[11]) + (0 if user_only else int(fields[12]))
            used[(worker.pid, int(task.name))] = ticks / TICKS
    return used


def main() -> None:
    """Measure ``--rounds`` wrk runs and print each worker's threads per request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contender", default="authsvc", choices=CONTENDERS)
    parser.add_argument("--scenario", default="S3", choices=run.SCENARIOS)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", help="taskset CPU list for wrk, Redis and the server")
    parser.add_argument("--user", action="store_true", help="user CPU only")
    parser.add_argument("--authsvc-env", action="append", default=[], metavar="NAME=VALUE")
    mine = parser.parse_args()
    sys.argv = [sys.argv[0], "--contenders", mine.contender]
    sys.argv += [item for pair in mine.authsvc_env for item in ("--authsvc-env", pair)]
    args = run.parse_args()  # run.py's defaults: wrk threads, connections, workers
    args.cpus = mine.cpus
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="authsvc-threads-") as tmp:
        workdir = Path(tmp)
        with run.benchmark_redis(None, mine.cpus, workdir) as redis_url:
            contenders = make_contenders(args, redis_url, secret, own_databases=True)
            contender = next(c for c in contenders if c.key == mine.contender)
            create_accounts([contender], secret)
            contender.start(workdir, mine.cpus)
            try:
                measure(contender, mine, args, workdir, secret)
            finally:
                contender.stop()


def measure(
    contender: run.Contender,
    mine: argparse.Namespace,
    args: argparse.Namespace,
    workdir: Path,
    secret: str,
) -> None:
    """The wrk runs, each followed by raw argon2id under S3."""
    if contender.process is None:
        raise RuntimeError(f"{contender.key} is not running")
    run.warm_up(contender, mine.scenario, args, workdir, secret)
    contender.wait_until_idle()
    for _ in range(mine.rounds):
        script_args = run.prepare(
            contender, mine.scenario, args, workdir, secret, mine.seconds, "run"
        )
        before = thread_cpu(contender.process.pid, user_only=mine.user)
        numbers = run.wrk(contender, mine.scenario, script_args, args, workdir, mine.seconds)
        after = thread_cpu(contender.process.pid, user_only=mine.user)
        contender.wait_until_idle()
        requests = numbers["requests"]
        print(f"{mine.scenario} {contender.key}: {requests / numbers['duration_us'] * 1e6:.1f}/s")
        by_worker: dict[int, list[float]] = {}
        for (pid, tid), seconds in after.items():
            if (pid, tid) in before:
                used = (seconds - before[(pid, tid)]) / requests * 1e3
                by_worker.setdefault(pid, []).append(used)
        for pid, threads in sorted(by_worker.items()):
            listed = ", ".join(f"{ms:.2f}" for ms in sorted(threads, reverse=True))
            print(f"  worker {pid}, ms of CPU per request by thread: {listed}")
        if mine.scenario == "S3":
            verifies = run.raw_argon2_verifies(args.workers, mine.seconds, mine.cpus)
            print(f"  raw argon2id, {args.workers} processes: {verifies / mine.seconds:.1f}/s")


if __name__ == "__main__":
    main()
