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
        data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
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
    # makeRecord + handle is what Logger.info does, less the caller lookup on the stack.
    record = request_log.makeRecord(
        request_log.name,
        logging.INFO,
        "",
        0,
        "%s %s %s",
        (method, path, status),
        None,
        extra={
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


class BufferedRequestLines(logging.StreamHandler[Any]):
    """A StreamHandler that writes request lines in batches (nginx's ``access_log buffer``).

    Every other record is written at once, after the lines held before it.

    One ``write`` per request line costs a system call and a GIL hand-off per request
    under gthread workers: about 45 us of the ~600 us of worker CPU a ``GET /me`` takes
    (docs/performance.md). Lines wait at most ``flush_seconds`` (a background thread
    writes them out), or until 64 KiB are held, or until any other record (an audit
    event, a warning) comes, or until the process exits normally; a worker killed by
    SIGKILL loses at most that last second of request lines. ``flush_seconds`` 0: every
    line at once, as a plain StreamHandler.
    """

    MAX_HELD_BYTES = 64 * 1024

    def __init__(self, stream: Any = None, flush_seconds: float = 1.0) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._held: list[str] = []
        self._held_bytes = 0
        self._flusher_pid = 0  # the process whose flusher thread runs (none after a fork)

    def emit(self, record: logging.LogRecord) -> None:
        """Hold a request line, or write this record and everything held before it."""
        try:
            line = self.format(record) + self.terminator
            hold = (
                self.flush_seconds > 0
                and record.name == request_log.name
                and record.levelno <= logging.INFO
            )
            with self.lock:  # type: ignore[union-attr]
                self._held.append(line)
                self._held_bytes += len(line)
                if hold and self._held_bytes < self.MAX_HELD_BYTES:
                    self._start_flusher()
                    return
                self._write_held()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write what is held, then flush the stream (logging.shutdown calls this at exit)."""
        with self.lock:  # type: ignore[union-attr]
            self._write_held()

    def _write_held(self) -> None:
        if self._held:
            self.stream.write("".join(self._held))
            self._held.clear()
            self._held_bytes = 0
        super().flush()

    def _start_flusher(self) -> None:
        # Threads do not survive a fork: each gunicorn worker starts its own.
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True).start()

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # a closed stream at exit: nothing left to write to
                return


def logging_config(level: str = "INFO", flush_seconds: float = 1.0) -> dict[str, Any]:
    """The dictConfig for gunicorn: JSON lines on stderr, gunicorn's access log dropped.

    The app's request line replaces gunicorn's access log, which gunicorn still
    writes whenever a logging config is given, even with ``accesslog = None``.
    Request lines are written in batches of at most ``flush_seconds``
    (:class:`BufferedRequestLines`; ``AUTHSVC_LOG_FLUSH_MS``).
    """
    stderr = ["stderr"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "()": BufferedRequestLines,
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "flush_seconds": flush_seconds,
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
