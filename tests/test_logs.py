"""The request line's record and time, made the cheap way, match the logging module's."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from authsvc import logs


class _Keep(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[list[logging.LogRecord]]:
    """The authsvc.request records written while a test runs (at INFO)."""
    handler = _Keep()
    logger = logs.request_log
    previous = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = previous


def _write(request_id: str = "rid-1") -> None:
    logs.write_request_line("GET", "/api/v1/user/me", "user.me", 200, 0.0012345, request_id, "::1")


def test_a_request_record_holds_what_logging_would_have_put_in_it(kept):
    """Every attribute of a regular record, with the same values (the time aside)."""
    _write()
    _write()  # the second comes from the template made for the first
    record = kept[-1]
    regular = logs.request_log.makeRecord(
        logs.request_log.name,
        logging.INFO,
        "",
        0,
        logs.REQUEST_LINE,
        ("GET", "/api/v1/user/me", 200),
        None,
        extra={
            "method": "GET",
            "path": "/api/v1/user/me",
            "endpoint": "user.me",
            "status": 200,
            "duration_ms": 1.234,
            "request_id": "rid-1",
            "remote_ip": "::1",
        },
    )
    # A handler that formats the record adds "message" to it (pytest's own do).
    mine = {k: v for k, v in vars(record).items() if k != "message"}
    theirs = vars(regular)
    assert set(mine) == set(theirs)
    timing = {"created", "msecs", "relativeCreated"}
    assert {k: v for k, v in mine.items() if k not in timing} == {
        k: v for k, v in theirs.items() if k not in timing
    }
    assert abs(record.created - regular.created) < 5
    assert record.msecs == int((record.created % 1) * 1000)
    assert record.getMessage() == "GET /api/v1/user/me 200"
    assert type(record) is logging.LogRecord


def test_each_record_is_new_and_carries_its_own_request(kept):
    """The template is copied, never shared: one line's fields do not leak into the next."""
    _write("rid-a")
    _write("rid-b")
    first, second = kept
    assert first is not second
    assert (first.request_id, second.request_id) == ("rid-a", "rid-b")


def test_an_installed_record_factory_still_makes_the_records(kept):
    """A factory someone installed (as OpenTelemetry's logging one does) is used, not skipped."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def marking_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.marked = True
        made.append(record)
        return record

    logging.setLogRecordFactory(marking_factory)
    try:
        _write()
    finally:
        logging.setLogRecordFactory(factory)
    assert kept == made
    assert kept[0].marked is True


def test_a_forked_worker_writes_its_own_pid(kept):
    """gunicorn forks workers: a child's lines carry the child's pid, not the parent's."""
    _write()  # the parent's template exists now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one line, its pid, through the pipe
        try:
            _write()
            os.write(write_end, str(kept[-1].process).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    written = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert written == str(pid)
    assert kept[-1].process == os.getpid()


@pytest.mark.parametrize(
    "created",
    [0.0, 1796286941.5, 1796286941.123456, 1796286941.999999, 1796286942.0, 951782400.25],
)
def test_the_line_time_is_iso_8601_utc_with_microseconds(created):
    """The same instant as datetime's own ISO text, always with six digits of fraction."""
    text = logs._iso_time(created)
    assert text.endswith("+00:00")
    assert len(text.split(".")[1]) == len("123456+00:00")
    expected = datetime.fromtimestamp(created, tz=UTC)
    assert abs((datetime.fromisoformat(text) - expected).total_seconds()) < 2e-6


def test_the_json_line_of_a_record_made_from_the_template(kept):
    """Formatted as gunicorn does, the cheap record gives the documented JSON line."""
    _write("rid-json")
    entry = json.loads(logs.JsonFormatter().format(kept[-1]))
    assert entry["pid"] == os.getpid()
    assert entry["message"] == "GET /api/v1/user/me 200"
    assert (entry["logger"], entry["level"], entry["request_id"]) == (
        "authsvc.request",
        "INFO",
        "rid-json",
    )
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
