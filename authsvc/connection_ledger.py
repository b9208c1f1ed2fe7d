"""How many connections each worker of a gunicorn server holds, in memory they all share.

A burst of connects (wrk opening 32, a load balancer filling its pool, a fleet coming
back after an outage) reaches every worker's main thread at once, and whichever runs
first accepts: measured, 32 keep-alive connections split 8/24, 3/29, 20/12 between two
idle workers, and keep-alive keeps the split (docs/performance.md, sixth pass). The
worker holding 29 answers them with its four threads under one GIL while the other
idles, and the tail of the latency follows. With this ledger a worker sees what the
others hold and leaves a new connection to a lighter one (authsvc.gunicorn_worker).

The ledger is an anonymous shared mapping made in the master before the first fork, a
slot per worker: its pid and its count, each written only by that worker while it
lives (whole aligned 8-byte words, so a reader sees the old value or the new one), and
a generation that moves when a worker claims or clears a slot, so that the others look
again at once. A worker that stops clears its slot first, so that nobody waits for it
to accept; the slot of one that died without (killed) is cleared by the master when it
reaps it (gunicorn's ``child_exit``), and ignored by the others until then (they look
again once a tick).

Only the balance of connections depends on it: a wrong count delays an accept by 10 ms
at most (gunicorn_worker.BALANCE_STEPS), and never refuses one.
"""

from __future__ import annotations

import mmap
import os
import struct

_CELL = struct.Struct("=qq")  # pid, connections held
_GENERATION = struct.Struct("=q")  # before the slots


class ConnectionLedger:
    """Slots of (pid, connections held), shared by the processes forked after it is made."""

    def __init__(self, slots: int = 256) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, _GENERATION.size + slots * _CELL.size)  # MAP_SHARED

    @property
    def generation(self) -> int:
        """Moves whenever a process claims or clears a slot."""
        return int(_GENERATION.unpack_from(self._memory)[0])

    def claim(self, preferred: int) -> int:
        """A slot for this process: ``preferred`` (mod the slots) or the next free one.

        Free means empty or held by a process that no longer exists.
        """
        pid = os.getpid()
        for step in range(self.slots):
            slot = (preferred + step) % self.slots
            holder, _count = self._read(slot)
            if holder in (0, pid) or not _alive(holder):
                self.record(slot, 0)
                self._moved()
                return slot
        return preferred % self.slots  # every slot held: share one (the balance blurs)

    def record(self, slot: int, connections: int) -> None:
        """Note that the calling process holds ``connections`` now."""
        _CELL.pack_into(self._memory, self._offset(slot), os.getpid(), connections)

    def release(self, slot: int) -> None:
        """Clear the slot: its process takes no more connections, leave it none."""
        _CELL.pack_into(self._memory, self._offset(slot), 0, 0)
        self._moved()

    def forget(self, pid: int) -> None:
        """Clear the slots of ``pid``, a worker that died (the master's child_exit hook).

        Its process is gone, so nobody else writes them; done at once, a new process
        given the same pid later cannot pass for it.
        """
        for slot in range(self.slots):
            if self._read(slot)[0] == pid:
                _CELL.pack_into(self._memory, self._offset(slot), 0, 0)
        self._moved()

    def others(self, slot: int) -> list[int]:
        """The slots held by other live processes (a system call per slot: once a tick)."""
        found = []
        for other in range(self.slots):
            holder, _count = self._read(other)
            if other != slot and holder and _alive(holder):
                found.append(other)
        return found

    def fewest(self, slots: list[int]) -> int | None:
        """The fewest connections any of ``slots`` holds (None if none is held any more)."""
        counts = [count for holder, count in map(self._read, slots) if holder]
        return min(counts, default=None)

    def _read(self, slot: int) -> tuple[int, int]:
        holder, count = _CELL.unpack_from(self._memory, self._offset(slot))
        return holder, count

    def _offset(self, slot: int) -> int:
        return _GENERATION.size + slot * _CELL.size

    def _moved(self) -> None:
        # Two processes moving it at once may count one step: it still moved.
        _GENERATION.pack_into(self._memory, 0, self.generation + 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not one of our workers, but alive
        return True
    return True
