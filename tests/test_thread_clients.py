"""Script calls on a connection of the calling thread's own (authsvc.store.base.ThreadClients).

Against the real Redis: the point is which connection carries a command, what happens
when the server drops it, and what a forked child does with its parent's.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

import pytest
import redis
from redis.connection import ConnectionPool

from authsvc.config import Settings
from authsvc.factory import make_redis
from authsvc.store.base import Script, thread_clients
from tests.test_outage import RedisServer

ONE_LUA = "return 1"


@pytest.fixture
def client(real_redis_url: str) -> Any:
    """The client authsvc makes: its timeouts and its retry policy."""
    client = make_redis(Settings(redis_url=real_redis_url))
    yield client
    client.close()
    client.connection_pool.disconnect()


def _connection_id(client: redis.Redis) -> int:
    """The server's id of the calling thread's connection (asked on that connection)."""
    clients = thread_clients(client)
    assert clients is not None
    return int(clients.current().client_id())


def _in_thread(call: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join()
    return result[0]


def test_a_thread_keeps_one_connection_and_borrows_none_per_call(client, monkeypatch) -> None:
    script = Script(client, ONE_LUA)
    script()
    first = _connection_id(client)
    lent = []
    original = ConnectionPool.get_connection
    monkeypatch.setattr(
        ConnectionPool, "get_connection", lambda pool: lent.append(pool) or original(pool)
    )
    assert [script() for _ in range(5)] == [1] * 5
    assert lent == []  # redis-py's pool lends a connection for every command
    # The server saw the scripts on that connection: its last command was one.
    (mine,) = [c for c in client.client_list() if int(c["id"]) == first]
    assert mine["cmd"] == "evalsha"
    assert _connection_id(client) == first


def test_every_thread_has_a_connection_of_its_own(client) -> None:
    mine = _connection_id(client)
    together = threading.Barrier(3)  # all alive at once: an ended thread's goes back

    def theirs() -> int:
        found = _connection_id(client)
        together.wait(timeout=10)
        return found

    threads = [threading.Thread(target=lambda: seen.append(theirs())) for _ in range(3)]
    seen: list[int] = []
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({mine, *seen}) == 4


def test_a_connection_goes_back_to_the_pool_when_its_thread_ends(client) -> None:
    script = Script(client, ONE_LUA)

    def call_and_name_the_connection() -> Any:
        script()
        clients = thread_clients(client)
        assert clients is not None
        return clients.current().connection

    lent = _in_thread(call_and_name_the_connection)
    gc.collect()
    pool = client.connection_pool
    # (A script new to the server was also sent once on a connection the pool lent.)
    assert lent in pool._available_connections
    assert not pool._in_use_connections


def test_a_dropped_connection_is_made_again_and_the_call_answered(client) -> None:
    script = Script(client, ONE_LUA)
    script()
    before = _connection_id(client)
    # What a Redis restart or an idle timeout does to the thread's connection.
    assert client.client_kill_filter(_id=before) == 1
    assert script() == 1
    assert _connection_id(client) != before


def test_a_script_missing_from_the_server_is_loaded_again(client) -> None:
    script = Script(client, ONE_LUA)
    script()
    client.script_flush()  # a restarted or just-promoted master knows no script
    assert script() == 1


def test_a_forked_child_opens_its_own_connection(client) -> None:
    script = Script(client, ONE_LUA)
    script()
    parent = _connection_id(client)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer with its connection's id, never run pytest's exit
        try:
            script()
            os.write(write, str(_connection_id(client)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = int(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    assert child != parent
    # The parent's connection is still its own and still open.
    assert script() == 1
    assert _connection_id(client) == parent


def test_commands_of_a_wrapped_client_go_through_its_wrapper(client) -> None:
    script = Script(client, ONE_LUA)
    script()  # known to the server now: the call below is one EVALSHA
    seen: list[tuple[Any, ...]] = []
    execute = client.execute_command

    def wrapped(*args: Any, **options: Any) -> Any:  # as OpenTelemetry's instrument_client
        seen.append(args)
        return execute(*args, **options)

    client.execute_command = wrapped
    script()
    assert [args[0] for args in seen] == ["EVALSHA"]


def test_a_client_has_one_set_of_thread_clients_and_a_pipeline_none(client) -> None:
    assert thread_clients(client) is thread_clients(client)
    assert thread_clients(client.pipeline()) is None


def test_a_reply_that_came_too_late_never_answers_the_threads_next_call(tmp_path):
    """The attacker's case: a slow Redis answers a check after its timeout; kept on the
    thread's connection, that late reply (a revoked token's "ok", say) would answer the
    next request's call. The timed-out connection is closed instead."""
    server = RedisServer(tmp_path)  # our own: a pause holds every client of the server
    server.start()
    try:
        client = make_redis(Settings(redis_url=server.url, redis_socket_timeout=0.3))
        echo = Script(client, "return ARGV[1]")
        assert echo(args=["before"]) == "before"
        server.pause(1000)
        with pytest.raises(redis.exceptions.TimeoutError):
            echo(args=["late"])  # Redis runs it when the pause ends: too late
        server.wait_for_pause_end()
        assert echo(args=["next"]) == "next"
        client.close()
    finally:
        server.stop()
