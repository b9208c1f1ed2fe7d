"""gunicorn settings: bind and workers from AUTHSVC_* env, timeouts, logging; no app logic.

Used by ``authsvc serve`` and, through the top-level ``gunicorn.conf.py``, by a plain
``gunicorn wsgi:app``.
"""

from __future__ import annotations

import os

from authsvc.config import Settings

bind = os.environ.get("AUTHSVC_BIND", Settings.bind)
workers = int(os.environ.get("AUTHSVC_WORKERS", str(Settings.workers)))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
# gunicorn's control socket lives at one fixed path per user, so two instances on a
# host (or the tests' servers) would fight over it; authsvc does not use it.
control_socket_disable = True
# Paths only (%(U)s), never the query string: a token pasted there must not reach a log.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
errorlog = "-"
loglevel = "info"
_STDERR = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
# Replaces gunicorn's defaults whole, so the root, gunicorn and authsvc loggers are all named.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": _STDERR},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        name: {"level": "INFO", "handlers": ["stderr"], "propagate": False}
        for name in ("gunicorn.error", "gunicorn.access", "authsvc")
    },
}
