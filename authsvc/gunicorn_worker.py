"""gunicorn's gthread worker that accepts a connection only when it has a thread free.

gunicorn's ``ThreadWorker`` accepts every connection the kernel hands it, busy or not
(gunicorn issues #908, #3433), and keeps each one for good (keep-alive). A burst of
connects (a load balancer filling its pool, a fleet reconnecting, a benchmark) can land
on one worker while the others idle: measured with 32 connections sending logins, one
worker took them all and the server ran at 45 logins a second on one core instead of
about 80 on two. Closing a connection after 100 requests (gunicorn_conf) spreads fast
traffic again within seconds, but not logins, which come at a few a second per
connection. Here a worker stops listening while every thread has a request, so the
connection waits in the kernel's queue for a worker that can start it at once; nothing
waits longer than it would have in the busy worker's queue.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    """A ``ThreadWorker`` that listens for connections only with a thread free."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests_in_flight = 0  # handed to the thread pool and not finished

    def enqueue_req(self, conn: Any) -> None:
        """Hand a connection with a request to the thread pool (main thread only)."""
        self.requests_in_flight += 1
        super().enqueue_req(conn)
        if self.requests_in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A request is done (main thread): its thread is free again."""
        self.requests_in_flight -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool | None) -> None:
        """Listen only while a thread is free; the run loop asks again every turn."""
        super().set_accept_enabled(bool(enabled) and self.requests_in_flight < self.cfg.threads)
