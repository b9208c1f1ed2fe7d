"""The connection ledger the workers share, and the worker's rule that reads it.

The ledger is real shared memory seen across a real fork; the rule is the worker's own
method, on a worker object that gunicorn did not start (its sleep recorded, not waited).
tests/test_gunicorn_worker.py drives both under the real `authsvc serve`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from authsvc import connection_ledger, gunicorn_worker
from authsvc.connection_ledger import ConnectionLedger
from authsvc.gunicorn_worker import (
    BALANCE_MISSES,
    BALANCE_SLACK,
    BALANCE_STEP_SECONDS,
    BALANCE_STEPS,
    EpollThreadWorker,
)


@contextmanager
def other_worker(ledger: ConnectionLedger, connections: int) -> Iterator[tuple[int, int]]:
    """A forked process holding a slot with ``connections``; yields (pid, its slot)."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: claim, record, say which slot, wait to be killed
        try:
            slot = ledger.claim(7)
            ledger.record(slot, connections)
            os.write(ready_write, slot.to_bytes(4, "big"))
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_write)
    try:
        slot = int.from_bytes(os.read(ready_read, 4), "big")
        yield pid, slot
    finally:
        os.close(ready_read)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_count_recorded_in_a_forked_process_is_seen_by_its_parent():
    ledger = ConnectionLedger(slots=16)
    mine = ledger.claim(3)
    ledger.record(mine, 5)
    with other_worker(ledger, connections=9) as (_pid, theirs):
        assert theirs != mine
        assert ledger.others(mine) == [theirs]
        assert ledger.fewest([theirs]) == 9
    # Killed, never cleared: its slot no longer counts once the others look again.
    assert ledger.others(mine) == []


def test_a_dead_workers_slot_is_claimed_again_and_a_live_ones_is_not():
    ledger = ConnectionLedger(slots=16)
    with other_worker(ledger, connections=4) as (_pid, theirs):
        assert theirs == 7
        assert ledger.claim(7) == 8  # held by a live process: the next free one
    assert ledger.claim(7) == 7  # its process is gone


def test_the_master_forgets_a_dead_workers_slot_when_it_reaps_it():
    """gunicorn_conf.child_exit: a later process given the same pid cannot pass for it."""
    from authsvc import gunicorn_conf

    ledger = ConnectionLedger(slots=16)
    mine = ledger.claim(0)
    with other_worker(ledger, connections=3) as (pid, _slot):
        worker = type("Reaped", (), {"pid": pid, "ledger": ledger})()
        before = ledger.generation
        gunicorn_conf.child_exit(None, worker)
        # Still running here, as a reused pid would be: the slot is gone all the same.
        assert ledger.others(mine) == []
        assert ledger.generation != before


def test_a_released_slot_is_left_no_connection_and_moves_the_generation():
    ledger = ConnectionLedger(slots=16)
    mine = ledger.claim(0)
    with other_worker(ledger, connections=0) as (_pid, theirs):
        before = ledger.generation
        ledger.release(mine)
        assert ledger.generation != before
        assert ledger.others(theirs) == []  # as the other worker sees it now


class _Worker(EpollThreadWorker):
    """The rule's state, without gunicorn: a slot in ``ledger`` and ``held`` connections."""

    def __init__(self, ledger: ConnectionLedger, held: int) -> None:  # no super(): no master
        self.connections = dict.fromkeys(range(held))
        self.slot = ledger.claim(0)
        self.lighter_generation = -1
        self.lighter = []
        self.missed = 0
        self.balance_off_until = 0.0


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """The worker's sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(gunicorn_worker.time, "sleep", slept.append)
    return slept


def test_a_worker_holding_more_than_the_slack_leaves_the_connection_to_a_lighter_one(pauses):
    ledger = ConnectionLedger(slots=16)
    with other_worker(ledger, connections=3):
        balanced = _Worker(ledger, held=3 + BALANCE_SLACK)
        balanced._leave_to_a_lighter_worker(ledger)
        assert pauses == []
        heavier = _Worker(ledger, held=3 + BALANCE_SLACK + 1)
        heavier._leave_to_a_lighter_worker(ledger)  # the lighter one takes none: waits it out
        assert pauses == [BALANCE_STEP_SECONDS] * BALANCE_STEPS


def test_the_wait_ends_when_the_lighter_worker_takes_a_connection(monkeypatch):
    ledger = ConnectionLedger(slots=16)
    with other_worker(ledger, connections=1) as (pid, theirs):
        heavier = _Worker(ledger, held=10)
        steps: list[float] = []

        def lighter_accepts(seconds: float) -> None:
            steps.append(seconds)
            if len(steps) == 3:  # what the lighter worker writes when it accepts
                with monkeypatch.context() as as_the_other:
                    as_the_other.setattr(connection_ledger.os, "getpid", lambda: pid)
                    ledger.record(theirs, 2)

        monkeypatch.setattr(gunicorn_worker.time, "sleep", lighter_accepts)
        heavier._leave_to_a_lighter_worker(ledger)
        assert len(steps) == 3
        assert heavier.missed == 0


def test_a_lighter_worker_that_takes_nothing_is_not_waited_for_again_within_a_tick(pauses):
    """Stuck, stopped by a debugger, or every thread of it busy: after BALANCE_MISSES
    pauses in which its count did not move, the heavier worker accepts at once."""
    ledger = ConnectionLedger(slots=16)
    with other_worker(ledger, connections=0) as (pid, _slot):
        os.kill(pid, signal.SIGSTOP)
        heavier = _Worker(ledger, held=20)
        for _ in range(BALANCE_MISSES + 5):
            heavier._leave_to_a_lighter_worker(ledger)
        assert len(pauses) == BALANCE_MISSES * BALANCE_STEPS
