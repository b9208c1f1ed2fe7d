"""gunicorn's gthread worker that, with every thread busy, lets other workers accept first.

gunicorn's ``ThreadWorker`` accepts every connection the kernel hands it, busy or not
(gunicorn issues #908, #3433), and keeps each one for good (keep-alive). A burst of
connects (a load balancer filling its pool, a fleet reconnecting, a benchmark) can land
on one worker while the others idle: measured with 32 connections sending logins, one
worker took them all and the server ran at 45 logins a second on one core instead of
about 80 on two. Closing a connection after 100 requests (gunicorn_conf) spreads fast
traffic again within seconds, but not logins, which come at a few a second per
connection.

Here a worker with every thread busy stops listening for ACCEPT_PAUSE_SECONDS, so a
worker with a thread free takes the connection first. It does not stop for longer:
under steady load every worker is busy nearly all the time, and a worker that waited
for a free thread would leave a reconnecting client in the kernel's queue behind its
kept-alive connections (measured: p99 590 ms against a p50 of 7 ms). Paused, then one
connection, then paused again, busy workers take new connections in turns.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# How long a busy worker leaves new connections to the others.
ACCEPT_PAUSE_SECONDS = 0.002


class BalancedThreadWorker(ThreadWorker):
    """A ``ThreadWorker`` that, with every thread busy, lets other workers accept first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests_in_flight = 0  # handed to the thread pool and not finished
        self.paused_at = 0.0  # when this worker last stopped listening for being busy

    @property
    def listening(self) -> bool:
        """Whether the listening sockets are on the poller (gunicorn's own flag)."""
        return bool(self._accepting)  # type: ignore[attr-defined]

    def enqueue_req(self, conn: Any) -> None:
        """Hand a connection with a request to the thread pool (main thread only)."""
        self.requests_in_flight += 1
        super().enqueue_req(conn)
        if self.listening:
            self.set_accept_enabled(True)  # stays on only while a thread is free

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A request is done (main thread): its thread is free again."""
        self.requests_in_flight -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool | None) -> None:
        """Listen, unless every thread is busy and the pause has not run out.

        gunicorn's run loop asks again on every turn, so listening resumes at the first
        event after the pause.
        """
        if enabled and self.requests_in_flight >= self.cfg.threads:
            now = time.monotonic()
            if self.listening:
                self.paused_at = now
                enabled = False
            else:
                enabled = now - self.paused_at >= ACCEPT_PAUSE_SECONDS
        super().set_accept_enabled(bool(enabled))
