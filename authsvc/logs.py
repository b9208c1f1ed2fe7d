"""Structured logs: one JSON object per line, one line per request and per audit event.

:func:`logging_config` is the ``logging.config.dictConfig`` that gunicorn applies
(``logconfig_dict``); the app itself never configures logging, so tests and embedding
programs keep theirs. What a line may carry is fixed here: method, path (never the
query string), endpoint, status, duration, request id, client IP, and the audit
events' ids and reasons; never a header or a body.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

request_log = logging.getLogger("authsvc.request")
# The request id of the request being answered, or None: installed by the app
# (authsvc.observability), so that this module, which gunicorn's master loads for its
# logging config, does not import Flask (about 8 MiB more in the master).
current_request_id: Callable[[], str | None] | None = None
# The current span's (trace_id, span_id) as hex, or None: set by authsvc.tracing when
# tracing is on; None (no lookup at all) when it is off.
trace_context: Callable[[], tuple[str, str] | None] | None = None

# Everything a LogRecord carries by itself; any other attribute came in through `extra`.
_STANDARD_ATTRIBUTES = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """JSON lines with ``time``, ``level``, ``logger``, ``pid`` and ``message``.

    Every ``extra`` field of the record is a top-level key too; an audit record's
    ``fields`` become top-level keys next to its ``event``, and a record logged while
    a request is handled carries that request's ``request_id`` (and, with tracing on,
    the current span's ``trace_id`` and ``span_id``). Built by hand and
    encoded with orjson: a request line costs a few microseconds.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES:
                data[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        data["time"] = _iso_time(record.created)
        fields = data.pop("fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                if value is not None:
                    # An audit field never overwrites what the line itself says.
                    data.setdefault(name, value)
        if "request_id" not in data and current_request_id is not None:
            request_id = current_request_id()
            if request_id is not None:
                data["request_id"] = request_id
        if trace_context is not None and "trace_id" not in data:
            ids = trace_context()
            if ids is not None:
                data["trace_id"], data["span_id"] = ids
        try:
            return orjson.dumps(data, default=str).decode()
        except (orjson.JSONEncodeError, TypeError):
            # A value orjson refuses (an int over 64 bits, a non-string key): never lose
            # the line for it.
            return json.dumps(data, default=str)


# The second of the last line's time and its ISO 8601 text (one tuple: swapped at once).
_second_text: tuple[int, str] = (-1, "")


def _iso_time(created: float) -> str:
    """``created`` in UTC as ISO 8601 with microseconds; the date part is made once a second."""
    global _second_text
    second = int(created)
    if _second_text[0] != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{_second_text[1]}.{int((created - second) * 1e6):06d}+00:00"


class _RequestRecords:
    """Request lines' LogRecords, filled in from one template.

    ``LogRecord.__init__`` works out the caller's file and module, the process, its
    name and the thread for every record: about two thirds of what a request line cost
    (benchmarks/README.md). A request line's are the same every time but for the time
    and the thread, so a record starts as a copy of one made the usual way, once per
    process (again after a fork). A record factory someone installed
    (``logging.setLogRecordFactory``) is always used instead.
    """

    def __init__(self) -> None:
        self._template: dict[str, Any] | None = None
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        """Make the template again on the next line (the process id has changed)."""
        self._template = None

    def make(self, args: tuple[Any, ...], extra: dict[str, Any]) -> logging.LogRecord:
        """A record of ``REQUEST_LINE % args`` with ``extra`` as attributes."""
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return request_log.makeRecord(
                request_log.name, logging.INFO, "", 0, REQUEST_LINE, args, None, extra=extra
            )
        template = self._template
        if template is None:
            model = request_log.makeRecord(request_log.name, logging.INFO, "", 0, "", (), None)
            template = self._template = dict(vars(model))
        record: logging.LogRecord = logging.LogRecord.__new__(logging.LogRecord)
        attributes = vars(record)
        attributes.update(template)
        created = time.time()
        attributes["created"] = created
        attributes["msecs"] = int((created - int(created)) * 1000) + 0.0
        # logging keeps its start time here; LogRecord.__init__ reads it too.
        attributes["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        if logging.logThreads:
            attributes["thread"] = threading.get_ident()
            attributes["threadName"] = threading.current_thread().name
        attributes["msg"] = REQUEST_LINE
        attributes["args"] = args
        attributes.update(extra)
        return record


REQUEST_LINE = "%s %s %s"
_request_records = _RequestRecords()


def write_request_line(
    method: str,
    path: str,
    endpoint: str,
    status: int,
    seconds: float,
    request_id: str | None,
    remote_ip: str | None,
) -> None:
    """Write one request line (the Flask path's and the fast path's); nothing below INFO."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    record = _request_records.make(
        (method, path, status),
        {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": request_id,
            "remote_ip": remote_ip,
        },
    )
    request_log.handle(record)


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
