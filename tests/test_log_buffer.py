"""Request lines written in batches (BufferedRequestLines): held, then written in order.

The handler trades up to AUTHSVC_LOG_FLUSH_MS of delay on request lines for one write
per batch instead of one per request; nothing else may be delayed or reordered, and a
normal exit loses nothing.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time

import pytest

from authsvc.logs import BufferedRequestLines, JsonFormatter, request_log, write_request_line

AUDIT = logging.getLogger("authsvc.audit")


@pytest.fixture
def stream_handler(request: pytest.FixtureRequest):
    """A BufferedRequestLines on a StringIO as the only handler of ``authsvc`` loggers."""
    flush_seconds = getattr(request, "param", 60.0)
    stream = io.StringIO()
    handler = BufferedRequestLines(stream, flush_seconds=flush_seconds)
    handler.setFormatter(JsonFormatter())
    parent = logging.getLogger("authsvc")
    saved = (parent.handlers[:], parent.level, parent.propagate)
    parent.handlers[:] = [handler]
    parent.setLevel(logging.INFO)
    parent.propagate = False
    try:
        yield handler, stream
    finally:
        parent.handlers[:], level, parent.propagate = saved
        parent.setLevel(level)


def _line(request_id: str) -> None:
    write_request_line("GET", "/api/v1/user/me", "user.me", 200, 0.001, request_id, "127.0.0.1")


def _ids(stream: io.StringIO) -> list[str]:
    return [
        json.loads(text).get("request_id") or json.loads(text)["event"]
        for text in stream.getvalue().splitlines()
    ]


def test_request_lines_are_held_until_a_flush(stream_handler):
    handler, stream = stream_handler
    _line("r1")
    _line("r2")
    assert stream.getvalue() == ""
    handler.flush()
    assert _ids(stream) == ["r1", "r2"]


def test_any_other_record_writes_the_held_lines_first_in_order(stream_handler):
    _handler, stream = stream_handler
    _line("r1")
    AUDIT.info("event=session_revoked", extra={"event": "session_revoked"})
    assert _ids(stream) == ["r1", "session_revoked"]
    _line("r2")
    request_log.warning("not a plain request line")  # above INFO: at once, too
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line.get("request_id") for line in lines] == ["r1", None, "r2", None]
    assert lines[3]["message"] == "not a plain request line"


@pytest.mark.parametrize("stream_handler", [0.0], indirect=True)
def test_zero_seconds_writes_every_line_at_once(stream_handler):
    _handler, stream = stream_handler
    _line("r1")
    assert _ids(stream) == ["r1"]


def test_a_full_buffer_is_written_without_waiting(stream_handler):
    _handler, stream = stream_handler
    count = 0
    while not stream.getvalue():
        _line(f"r{count}")
        count += 1
        assert count < 10_000
    # Written once 64 KiB were held, every line so far, in order.
    assert len(stream.getvalue()) >= BufferedRequestLines.MAX_HELD_BYTES
    assert _ids(stream) == [f"r{n}" for n in range(count)]


@pytest.mark.parametrize("stream_handler", [0.1], indirect=True)
def test_held_lines_are_written_within_the_flush_interval_without_more_traffic(stream_handler):
    _handler, stream = stream_handler
    _line("r1")
    deadline = time.monotonic() + 5
    while not stream.getvalue():
        assert time.monotonic() < deadline, "the flusher thread never wrote the line"
        time.sleep(0.02)
    assert _ids(stream) == ["r1"]


def test_a_normal_exit_writes_the_held_lines():
    """logging.shutdown at exit flushes the handler: no request line is lost."""
    program = (
        "import logging.config\n"
        "from authsvc.logs import logging_config, write_request_line\n"
        "logging.config.dictConfig(logging_config('INFO', flush_seconds=60))\n"
        "write_request_line('GET', '/p', 'e', 200, 0.001, 'last-line', None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stderr)["request_id"] == "last-line"
