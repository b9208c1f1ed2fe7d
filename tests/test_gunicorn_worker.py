"""BalancedThreadWorker under the real `authsvc serve`: a busy worker leaves new
connections to a worker with a thread free.

gunicorn's plain gthread worker accepts connections with every thread busy, and keeps
them; here two workers of one thread each, one held by a request whose body has not
arrived yet, must hand every new connection to the other worker. (The busy worker
listens again at its next event after the 2 ms pause; with no event, gunicorn's loop
wakes after 1 s, so the new connections are all made well within that second.)
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import TEST_SECRET
from tests.test_e2e import API, HTTP_TIMEOUT, ServeProcess, serve_env

pytestmark = pytest.mark.e2e

NEW_CONNECTIONS = 8


def _request_lines(serve: ServeProcess, request_ids: set[str]) -> dict[str, int]:
    """request id -> the pid of the worker that answered it, once all are logged."""
    deadline = time.monotonic() + 10  # request lines are written in batches (1 s)
    while True:
        found = {}
        for text in serve.stderr().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                if line.get("request_id") in request_ids:
                    found[line["request_id"]] = line["pid"]
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_worker_with_no_thread_free_takes_no_new_connection(tmp_path: Path, real_redis_url):
    redis.Redis.from_url(real_redis_url).flushdb()
    env = serve_env(REDIS_URL=real_redis_url, JWT_SECRET=TEST_SECRET, THREADS=1)
    serve = ServeProcess(env, tmp_path)
    held: socket.socket | None = None
    try:
        serve.wait_ready()
        host, port = serve.url.removeprefix("http://").split(":")
        held = socket.create_connection((host, int(port)), timeout=HTTP_TIMEOUT)
        held_id = uuid.uuid4().hex
        body = b'{"username": "nobody", "password": "not the password"}'
        # Headers and half the body: the worker that takes it has its one thread
        # waiting for the rest.
        held.sendall(
            f"POST {API}/login HTTP/1.1\r\nHost: {host}\r\nX-Request-ID: {held_id}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.2)  # accepted and read by one worker

        ids = {uuid.uuid4().hex for _ in range(NEW_CONNECTIONS)}
        for request_id in ids:  # each on a new connection
            response = requests.get(
                f"{serve.url}/healthz",
                headers={"X-Request-ID": request_id, "Connection": "close"},
                timeout=HTTP_TIMEOUT,
            )
            assert response.status_code == 200

        held.sendall(body[10:])
        answer = held.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:100]

        served_by = _request_lines(serve, {*ids, held_id})
        assert set(served_by) == {*ids, held_id}
        free_worker = {served_by[request_id] for request_id in ids}
        # Every new connection went to the worker with a thread free, none waited
        # behind the held request.
        assert len(free_worker) == 1
        assert free_worker != {served_by[held_id]}
    finally:
        if held is not None:
            held.close()
        survivors = serve.stop()
    assert not survivors
