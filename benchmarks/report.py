"""benchmarks/run.py's results: one measured contender and scenario, the table, the targets."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from contenders import PEERS

SCENARIO_TITLES = {
    "S1": "GET /api/v1/user/me",
    "S2": "refresh (rotation)",
    "S3": "login (argon2id)",
}


def percentile(histogram: Counter[int], p: float) -> int:
    """The ``p``th percentile of a latency histogram (value -> count), as wrk computes it.

    wrk's ``stats_percentile``: the smallest value whose cumulative count reaches
    ``round(p / 100 * count + 0.5)``; 0 for an empty histogram.
    """
    rank = math.floor(p / 100 * sum(histogram.values()) + 0.5 + 0.5)  # C's round(x + 0.5)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return 0


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
    slice_rates: list[float] = field(default_factory=list)  # req/s of each wrk slice

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def report(
    results: list[Result],
    argon2_rates: dict[int, float],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
) -> str:
    """The markdown table, the target checks and the machine (with its load at the start)."""
    by = {(r.round, r.contender, r.scenario): r for r in results}
    lines = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, gunicorn "
        f"{args.workers} workers each, one Redis, {args.cpus or 'no'} CPU pinning",
        "",
        "| round | scenario | contender | req/s | slices req/s | p50 ms | p99 ms | errors "
        "| x floor sync/gthread | x fje sync/gthread | server CPU us/req | busiest process "
        "| Redis CPU us/req | Redis round trips/req | Redis cmds/req | Redis B/session "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"{r.rate:.0f} | {spread(r.slice_rates)} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.errors} | {ratios[0]} | "
            f"{ratios[1]} | {r.cpu_us:.0f} | {r.busiest_share:.0%} | {r.redis_cpu_us:.0f} | "
            f"{r.redis_reads:.2f} | {r.redis_commands:.2f} | "
            f"{r.bytes_per_session if r.bytes_per_session is not None else '-'} | "
            f"{r.peak_rss / 2**20:.0f} |"
        )
    for round_number, rate in sorted(argon2_rates.items()):
        # Every login contender against the same round's rate: the floor's says how
        # close to the hash any Python login behind HTTP gets on this machine.
        logins = ", ".join(
            f"{r.contender} {r.rate / rate:.2f}"
            for r in results
            if r.round == round_number and r.scenario == "S3"
        )
        lines.append(
            f"\nraw argon2id verify, {args.workers} processes, round {round_number + 1}: "
            f"{rate:.1f}/s; S3 x raw argon2id: {logins}"
        )
    for round_number in sorted({r.round for r in results}):
        mine = {(c, s): r for (n, c, s), r in by.items() if n == round_number}
        lines += ["", f"Targets (authsvc), round {round_number + 1}:"]
        lines += [f"  {check}" for check in target_checks(mine, argon2_rates.get(round_number))]
    lines += ["", machine(load_before)]
    return "\n".join(lines)


def spread(rates: list[float]) -> str:
    """The slowest and fastest slice, e.g. ``1810-2230``."""
    return f"{min(rates):.0f}-{max(rates):.0f}" if rates else "-"


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
        f"{'PASS' if (value >= goal if higher else value <= goal) else 'MISS'} {name}: {value:.2f}"
        for name, value, goal, higher in checks
    ]


def machine(load_before: tuple[float, float, float]) -> str:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in load_before)
    return (
        f"Machine: {os.cpu_count()} CPUs ({model}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average before the run: {load}"
    )
