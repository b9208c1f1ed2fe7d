"""A gunicorn threaded worker whose threads take requests from one epoll themselves.

gunicorn's gthread worker has a main thread that polls every connection and hands each
request to a thread pool; when the request is done the thread hands the connection back
through a pipe, the main thread wakes, puts it on the poller again, and so on: per
request a pipe write and read, two ``epoll_ctl``, two ``fcntl``, a future and its
locks, and the GIL passed between the main thread and a pool thread. Measured under
wrk on 2 cores, that hop was 14-20% of the server's CPU on ``GET /me`` and refresh.

Here the worker's threads wait on one epoll themselves, each connection armed for one
event (``EPOLLONESHOT``): the kernel hands a readable connection to one waiting thread,
which reads the request, answers it and arms the connection again, with no other
thread in between. The main thread accepts new connections (a busy worker first leaves
them to the others for a moment: below), keeps the arbiter's heartbeat and closes idle
connections: it shuts an idle socket down rather than closing it, so its fd cannot be
reused while a thread may hold its event; the thread that reads the end of stream
closes it.

gunicorn's gthread accepts every connection the kernel hands it, busy or not (gunicorn
issues #908, #3433), and keeps each one for good (keep-alive): a burst of connects (a
load balancer filling its pool, a fleet reconnecting, a benchmark) can land on one
worker while the others idle (measured: 45 logins a second on one core instead of about
80 on two). Here a worker with every thread busy waits for one to come free before it
accepts, so a worker with a thread free takes the connection first: ACCEPT_PAUSE_SECONDS
at most while its threads keep coming free (under steady load every worker is busy
nearly all the time, and busy workers then take new connections in turns; waiting
longer left a burst of reconnecting login clients in the kernel's queue: p99 2.6-2.9 s
against 1.0-1.6 s), ACCEPT_WAIT_SECONDS when none has for HELD_SECONDS (its threads
held by slow requests: a connection accepted would wait behind them). A connection
accepted counts as busy until a thread takes it, as in gthread, whose main thread hands
it to the pool at once: otherwise an idle worker would accept a whole burst before its
threads saw the first request (measured: 31 of 32 login connections on one worker).
That rule does not see a burst reaching idle workers, whose threads come free at once:
whichever main thread runs first takes most of it (32 keep-alive connections split
8/24, 3/29, 20/12). So the workers also share a ledger of the connections each holds
(authsvc.connection_ledger), and one holding more than BALANCE_SLACK above another
leaves the connection to it (split 15/17 to 17/15 since).

Kept from gthread (its ``handle`` answers each request): keep-alive with gunicorn's
``keepalive`` idle timeout, ``worker_connections``, ``max_requests``, a request read
ahead of the socket (pipelining), HTTP/2 and TLS as gunicorn does them. On stop
(SIGTERM) the worker accepts nothing more, answers what is in flight and, for
STOP_KEEPALIVE_LINGER seconds, what arrives on a kept-alive connection (with
``Connection: close``, as gthread does), then closes the rest.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import TConn, ThreadWorker

from authsvc.connection_ledger import ConnectionLedger

# Armed for one event: the kernel wakes one thread per readable connection.
_ARMED = select.EPOLLIN | select.EPOLLONESHOT if hasattr(select, "epoll") else 0
# How often the main thread wakes with nothing to accept (heartbeat, idle connections),
# and how long a thread waits on the epoll before it looks whether the worker stops.
TICK_SECONDS = 1.0
# How long a worker with every thread busy waits for one to come free before it accepts
# a new connection anyway, leaving it meanwhile to a worker with a thread free: briefly
# while its threads come free now and then (it takes its turn), longer when none has
# for HELD_SECONDS (every thread held by slow requests: the connection would wait).
ACCEPT_PAUSE_SECONDS = 0.002
ACCEPT_WAIT_SECONDS = 0.25
HELD_SECONDS = 0.1
# A worker holding more than BALANCE_SLACK connections above the lightest other worker
# leaves a new connection to it (authsvc.connection_ledger): it waits until the lighter
# one's count moves, BALANCE_STEPS x BALANCE_STEP_SECONDS at most (10 ms: on a busy
# machine a 2 ms pause often ended before the lighter one's main thread ran); after
# BALANCE_MISSES such waits in a row in which the count did not move (stuck, or every
# thread of it busy), for TICK_SECONDS it accepts without waiting.
BALANCE_SLACK = 2
BALANCE_STEP_SECONDS = 0.0005
BALANCE_STEPS = 20
BALANCE_MISSES = 3
# How long a stopping worker still answers requests on kept-alive connections (gthread's).
STOP_KEEPALIVE_LINGER = 2.0


class _Connection(TConn):
    """gunicorn's connection, with whether a thread is answering it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sock.setblocking(True)  # threads read it blocking; epoll does not mind
        self.data_ready = True  # only a readable connection reaches a thread
        self.busy = False
        self.fresh = True  # accepted, and no thread has taken it yet
        self.set_timeout()  # the first request is due within keepalive too

    def read_ahead(self) -> bool:
        """Whether a request was read ahead of the socket (pipelining): no event comes."""
        unreader = getattr(self.parser, "unreader", None)  # HTTP/1 parsers only
        return unreader is not None and bool(unreader.buf.getvalue())


class _DateHeader:
    """gunicorn's ``util.http_date``, formatted once a second instead of once an answer.

    gunicorn's response calls it with no timestamp for every answer's ``Date`` header
    (``email.utils.formatdate``: 3% of a worker's GIL time under ``GET /me``,
    docs/performance.md, sixth pass). The header names whole seconds, so the text made
    for a second is the text for every answer in it. Installed by the worker; given a
    timestamp it formats that one, as gunicorn's does.
    """

    def __init__(self, http_date: Any) -> None:
        self._http_date = http_date
        self._second_text: tuple[int, str] = (-1, "")  # one tuple: swapped at once

    def __call__(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return str(self._http_date(timestamp))
        now = time.time()
        second, text = self._second_text
        if int(now) != second:
            text = str(self._http_date(now))
            self._second_text = (int(now), text)
        return text


class _SettledConfig:
    """gunicorn's config with each setting looked up once: a worker's never change.

    gunicorn's ``Config.__getattr__`` finds a setting and calls its getter on every
    read, and each request reads a dozen (limits, header rules, forwarded IPs, ...):
    3% of a worker's GIL time under ``GET /me`` (docs/performance.md, sixth pass). A
    worker's settings are fixed when it starts (a reload starts new workers), so the
    first value read is kept, as an attribute of this object.
    """

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cfg, name)
        setattr(self, name, value)
        return value


class EpollThreadWorker(ThreadWorker):
    """gunicorn's gthread worker without its main-thread hop (see the module docstring)."""

    # Made in the master with its first worker, before the fork: shared by them all.
    ledger: ConnectionLedger | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ledger()  # in the master, before the fork

    def init_process(self) -> None:
        """Set up the epoll; no thread pool (the worker's threads are its own)."""
        self.cfg = _SettledConfig(self.cfg)  # type: ignore[assignment]
        if not isinstance(gunicorn_util.http_date, _DateHeader):
            gunicorn_util.http_date = _DateHeader(gunicorn_util.http_date)
        self.epoll = select.epoll()
        self.connections: dict[int, _Connection] = {}
        self.lock = threading.Lock()  # connections, their busy flags, the epoll's set
        # Threads answering a request, and connections accepted that no thread has taken
        # yet: each will take one (gthread hands a new connection to its pool at once).
        self.answering = 0
        self.unanswered = 0
        self.thread_free = threading.Event()  # set when a thread comes free
        # When a thread last came free, or the last one became busy: a worker whose
        # threads are all answering and have been since HELD_SECONDS counts as held.
        self.moved_at = 0.0
        self.stopped = False  # the threads' signal to return
        # This worker's slot in the ledger (claimed once it accepts), the other workers'
        # slots (looked up again when the ledger's generation moves, and each tick), and
        # the balance's back-off (BALANCE_MISSES).
        self.slot = -1
        self.lighter: list[int] = []
        self.lighter_generation = -1
        self.missed = 0
        self.balance_off_until = 0.0
        super(ThreadWorker, self).init_process()  # base.Worker's: signals, app, run()

    def handle_exit(self, sig: Any, frame: Any) -> None:
        """SIGTERM: stop gracefully (see the module docstring)."""
        self.alive = False

    def handle_quit(self, sig: Any, frame: Any) -> None:
        """SIGQUIT / SIGINT: stop now (gunicorn's base worker; there is no pool to stop)."""
        super(ThreadWorker, self).handle_quit(sig, frame)

    def run(self) -> None:
        """Start the threads; accept, keep the heartbeat and close idle connections."""
        threads = [
            threading.Thread(target=self._serve, name=f"http-{n}", daemon=True)
            for n in range(self.cfg.threads)
        ]
        for thread in threads:
            thread.start()
        listening = select.poll()
        for listener in self.sockets:
            listener.setblocking(False)
            listening.register(listener, select.POLLIN)
        by_fd = {listener.fileno(): listener for listener in self.sockets}
        ledger = self._ledger()
        self.slot = ledger.claim(self.age)
        next_tick = 0.0
        while self.alive:  # False after SIGTERM, or max_requests (set by a thread)
            now = time.monotonic()
            if now >= next_tick:
                self.notify()
                if not self.is_parent_alive():
                    self.alive = False
                self._close_idle(now)
                self.lighter_generation = -1  # and look for killed workers' slots
                next_tick = now + TICK_SECONDS
            if len(self.connections) >= self.worker_connections:
                time.sleep(0.01)  # until one closes
                continue
            for fd, _event in listening.poll(TICK_SECONDS * 1000):
                self._wait_for_a_free_thread()
                self._leave_to_a_lighter_worker(ledger)
                self._accept(by_fd[fd])
        self._stop(threads)

    def _wait_for_a_free_thread(self) -> None:
        """With every thread busy, wait a while for one to come free (see above).

        Held means every thread answering, none free for HELD_SECONDS; connections that
        were accepted and have sent nothing yet count as busy, but never as held, so a
        crowd of silent clients slows no accept past ACCEPT_PAUSE_SECONDS.
        """
        self.thread_free.clear()
        if self.answering + self.unanswered >= self.cfg.threads:
            held = (
                self.answering >= self.cfg.threads
                and time.monotonic() - self.moved_at > HELD_SECONDS
            )
            self.thread_free.wait(ACCEPT_WAIT_SECONDS if held else ACCEPT_PAUSE_SECONDS)

    def _leave_to_a_lighter_worker(self, ledger: ConnectionLedger) -> None:
        """Holding over BALANCE_SLACK connections more than another worker, let it accept.

        Both main threads wake for the connection; the lighter one accepts it while this
        one waits, and this one's accept then finds nothing, or the next connection of a
        burst (see connection_ledger).
        """
        if ledger.generation != self.lighter_generation:
            self.lighter_generation = ledger.generation
            self.lighter = ledger.others(self.slot)
        if not self.lighter or time.monotonic() < self.balance_off_until:
            return
        fewest = ledger.fewest(self.lighter)
        if fewest is None or len(self.connections) <= fewest + BALANCE_SLACK:
            return
        for _step in range(BALANCE_STEPS):
            time.sleep(BALANCE_STEP_SECONDS)
            if ledger.fewest(self.lighter) != fewest:
                self.missed = 0
                return
        self.missed += 1
        if self.missed >= BALANCE_MISSES:  # it is not accepting: stop waiting on it
            self.missed = 0
            self.balance_off_until = time.monotonic() + TICK_SECONDS

    def _ledger(self) -> ConnectionLedger:
        """The server's ledger (a worker made outside gunicorn's master makes its own)."""
        if EpollThreadWorker.ledger is None:
            EpollThreadWorker.ledger = ConnectionLedger()
        return EpollThreadWorker.ledger

    def _held_connections_changed(self) -> None:
        """Tell the other workers how many connections this one holds (lock held)."""
        if self.slot >= 0:
            self._ledger().record(self.slot, len(self.connections))

    def _start_answering(self) -> None:
        """One more thread answering (lock held)."""
        self.answering += 1
        if self.answering == self.cfg.threads:
            self.moved_at = time.monotonic()

    def _stop(self, threads: list[threading.Thread]) -> None:
        """Linger for kept-alive connections, let the threads finish, close the rest."""
        with self.lock:
            if self.slot >= 0:
                self._ledger().release(self.slot)
                self.slot = -1
        linger_until = time.monotonic() + STOP_KEEPALIVE_LINGER
        while self.connections and time.monotonic() < linger_until:
            self.notify()
            time.sleep(0.05)
        self.stopped = True
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for thread in threads:  # each finishes the request it is answering
            self.notify()
            thread.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            left = list(self.connections.values())
            self.connections.clear()
        for connection in left:
            connection.close()
        for listener in self.sockets:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except OSError:  # another worker took it (EAGAIN), or the client left
            return
        connection = _Connection(self.cfg, sock, address, listener.getsockname())
        with self.lock:
            self.connections[sock.fileno()] = connection
            self.unanswered += 1
            self._held_connections_changed()
            self.epoll.register(sock.fileno(), _ARMED)

    def _close_idle(self, now: float) -> None:
        """Shut down connections idle past ``keepalive`` (see the module docstring)."""
        with self.lock:
            for connection in self.connections.values():
                if not connection.busy and (connection.timeout or now) < now:
                    connection.busy = True  # its end of stream goes to a thread
                    with contextlib.suppress(OSError):
                        connection.sock.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        """One thread: take a readable connection from the epoll, answer it, again."""
        while not self.stopped:
            try:
                events = self.epoll.poll(TICK_SECONDS, 1)
            except InterruptedError:
                continue
            for fd, _event in events:
                try:
                    self._answer(fd)
                except Exception:  # never lose one of the worker's threads
                    self.log.exception("Error in worker thread")

    def _answer(self, fd: int) -> None:
        """Answer the connection's request(s); arm it again, or close it."""
        with self.lock:
            connection = self.connections.get(fd)
            if connection is None:
                return
            connection.busy = True
            if connection.fresh:
                connection.fresh = False
                self.unanswered -= 1
            self._start_answering()
        keep = closing = False
        try:
            keep = self.handle(connection) is True
            while keep and connection.read_ahead():
                keep = self.handle(connection) is True
        finally:
            with self.lock:
                self.answering -= 1
                self.moved_at = time.monotonic()
                if not self.thread_free.is_set():
                    self.thread_free.set()
                closing = not keep or self.stopped
                if closing:
                    self.connections.pop(fd, None)
                    self._held_connections_changed()
                    with contextlib.suppress(OSError):
                        self.epoll.unregister(fd)
                else:
                    connection.set_timeout()
                    connection.busy = False
                    self.epoll.modify(fd, _ARMED)
        if closing:
            connection.close(graceful=True)


# The name gunicorn_conf used before; configs that name it get this worker.
BalancedThreadWorker = EpollThreadWorker
