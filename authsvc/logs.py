"""Structured logs: one JSON object per line, one line per request and per audit event.

:func:`logging_config` is the ``logging.config.dictConfig`` that gunicorn applies
(``logconfig_dict``); the app itself never configures logging, so tests and embedding
programs keep theirs. What a line may carry is fixed here: method, path (never the
query string), endpoint, status, duration, request id, client IP, and the audit
events' ids and reasons; never a header or a body.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

request_log = logging.getLogger("authsvc.request")

_FORMAT = "%(levelname)s %(name)s %(process)d %(message)s"
_RENAMED = {"levelname": "level", "name": "logger", "process": "pid"}


class JsonFormatter(_BaseJsonFormatter):
    """JSON lines with ``time``, ``level``, ``logger``, ``pid`` and ``message``.

    An audit record's ``fields`` become top-level keys next to its ``event``, and a
    record logged while a request is handled carries that request's ``request_id``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", _FORMAT)
        kwargs.setdefault("rename_fields", _RENAMED)
        kwargs.setdefault("timestamp", "time")
        super().__init__(**kwargs)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Flatten the audit fields and add the request id."""
        fields = log_data.pop("fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                if value is not None:
                    # An audit field never overwrites what the line itself says.
                    log_data.setdefault(name, value)
        if has_request_context() and "request_id" in g:
            log_data.setdefault("request_id", g.request_id)
        return super().process_log_record(log_data)


def log_request(endpoint: str, status: int, seconds: float) -> None:
    """Write the request line of the request being answered."""
    # request.path is the path alone: a token pasted into a query string stays out.
    request_log.info(
        "%s %s %s",
        request.method,
        request.path,
        status,
        extra={
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": g.get("request_id"),
            "remote_ip": request.remote_addr,
        },
    )


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The dictConfig for gunicorn: JSON lines on stderr, gunicorn's access log dropped.

    The app's request line replaces gunicorn's access log, which gunicorn still
    writes whenever a logging config is given, even with ``accesslog = None``.
    """
    stderr = ["stderr"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "discard": {"class": "logging.NullHandler"},
        },
        "root": {"level": level, "handlers": stderr},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": stderr, "propagate": False},
            "authsvc": {"level": level, "handlers": stderr, "propagate": False},
            "gunicorn.access": {"handlers": ["discard"], "propagate": False},
        },
    }
