"""gunicorn settings: bind and workers from AUTHSVC_* env, timeouts, JSON logs, metric hooks.

Used by ``authsvc serve`` and, through the top-level ``gunicorn.conf.py``, by a plain
``gunicorn wsgi:app``. No app logic.
"""

from __future__ import annotations

import os
import select
from typing import Any

from gunicorn.glogging import Logger

from authsvc.config import Settings
from authsvc.logs import logging_config
from authsvc.metrics import (
    default_multiprocess_dir,
    mark_process_dead,
    multiprocess_enabled,
    prepare_multiprocess_dir,
    remove_temporary_dirs,
)


class AppLogger(Logger):
    """gunicorn's logger without its access log: the app writes one JSON line per request.

    With a logging config, gunicorn builds every access-log line (its atoms dict,
    about 9% of a worker's CPU on GET /me) even when the line goes to a NullHandler.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: see :func:`authsvc.observability.log_request`."""


def _count(name: str, default: int, most: int) -> int:
    raw = os.environ.get(f"AUTHSVC_{name}", str(default))
    if not raw.strip().isdigit() or not 1 <= int(raw) <= most:
        # One clear line instead of a traceback from gunicorn's config loader.
        raise SystemExit(f"AUTHSVC_{name} must be a whole number from 1 to {most}, not {raw!r}")
    return int(raw)


bind = os.environ.get("AUTHSVC_BIND", Settings.bind)
workers = _count("WORKERS", Settings.workers, 10**6)
# Threads, so a few slow devices on flaky links cannot hold every worker (sync workers
# need a buffering proxy in front for that); the app is thread-safe (pooled Redis).
# Threads that take turns on the worker's one epoll, with no main-thread hop per request
# (authsvc/gunicorn_worker.py); gunicorn's gthread where there is no epoll (not Linux).
worker_class = (
    "authsvc.gunicorn_worker.EpollThreadWorker" if hasattr(select, "epoll") else "gthread"
)
threads = _count("THREADS", Settings.threads, 64)
timeout = 30
graceful_timeout = 20
keepalive = 5
# A keep-alive connection is closed after this many requests (nginx's keepalive_requests,
# Apache's MaxKeepAliveRequests) and the client connects again. gthread workers never
# hand a connection to one another, so a burst of connects (a load balancer filling its
# pool, a benchmark) can land on one worker and stay there for good, leaving it one core
# while the other workers idle; measured: one worker doing 100% of the work in one run
# out of three. A new connection goes to whichever worker accepts first, usually the
# least busy one, so the load spreads again within a few hundred requests.
MAX_KEEPALIVE_REQUESTS = 100
# gunicorn's control socket lives at one fixed path per user, so two instances on a
# host (or the tests' servers) would fight over it; authsvc does not use it.
control_socket_disable = True
# The app writes one JSON line per request itself (path only, never the query string,
# where a token may have been pasted), so gunicorn's access log is off.
accesslog = None
logger_class = AppLogger
errorlog = "-"
loglevel = "info"
logconfig_dict = logging_config(loglevel.upper())


def on_starting(server: Any) -> None:
    """Count every worker in /metrics under a plain ``gunicorn wsgi:app`` too.

    ``authsvc serve`` has prepared the directory already; otherwise a private one is
    made here, in the master, before any worker exists.
    """
    if multiprocess_enabled():
        return
    try:
        prepare_multiprocess_dir(default_multiprocess_dir())
    except RuntimeError as error:  # the app was loaded in the master first (preload_app)
        server.log.warning("%s", error)


def pre_request(worker: Any, req: Any) -> None:
    """Close the connection after its MAX_KEEPALIVE_REQUESTS-th request (see above)."""
    if req.req_number >= MAX_KEEPALIVE_REQUESTS:
        req.must_close = True


def post_fork(server: Any, worker: Any) -> None:
    """Tell the new worker how many workers share the cores, before its app exists.

    Its argon2 threads default to its share of the cores (AUTHSVC_HASH_CONCURRENCY=0):
    every worker with one thread per core would run more hashes than there are cores.
    From gunicorn's own count, so ``--workers`` and ``-w`` are followed too. Imported
    here, in the worker: the master has no use for argon2.
    """
    from authsvc.passwords import hashing_threads

    hashing_threads.configure(processes=server.cfg.workers)


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker: its live gauges and its slot in the connection ledger.

    The gauges are prometheus-client's multiprocess bookkeeping; the ledger is
    authsvc.connection_ledger, where a dead worker's pid could later be another process's.
    """
    mark_process_dead(worker.pid)
    ledger = getattr(worker, "ledger", None)
    if ledger is not None:
        ledger.forget(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder if it was a temporary one made for this run."""
    remove_temporary_dirs()
