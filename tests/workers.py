"""What each pytest-xdist worker owns, so the workers never step on each other.

The suite runs on several xdist workers (``-n`` in pyproject's addopts). Worker ``gwN``
of a run gets:

- its own Redis database: ``AUTHSVC_TEST_REDIS_URL``'s number minus N (15, 14, 13, ...
  for the default ``/15``), or, when that database does not exist, a redis-server of
  its own (conftest ``real_redis_url``);
- its own slice of the loopback ports 20000-29999 (cluster bus ports: +10000), so two
  workers never pick the same free port between the probe and the server's bind;
- its own folders: pytest's ``tmp_path_factory`` already gives each worker its own
  base folder (``popen-gwN``).

Which worker runs what is tests/scheduling.py's business.

Without xdist (``-n 0``, ``-p no:xdist``) the process counts as worker 0 of 1: the
configured database as it is, the whole port range.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HOST = "127.0.0.1"
# Below the kernel's ephemeral range (32768-60999 by default), so an outgoing
# connection never takes a port between our probe and the server's bind.
PORT_BASE = 20_000
PORT_SPAN = 10_000
BUS_OFFSET = 10_000  # a Redis Cluster node's bus port


def worker_index() -> int:
    """N of this xdist worker ``gwN``; 0 outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def worker_count() -> int:
    """How many xdist workers this run has; 1 outside xdist."""
    return max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)


def port_slice() -> range:
    """The loopback ports this worker may listen on (disjoint from every other worker's)."""
    count = worker_count()
    size = PORT_SPAN // count
    start = PORT_BASE + (worker_index() % count) * size
    return range(start, start + size)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


# The ports handed out lately by this process: a port asked for twice before either
# server binds (the six nodes of a Cluster are picked first, then started) is free both
# times, and two nodes then fight over it (seen: one node aborting on "Address already
# in use" and the whole Cluster fixture failing).
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=64)


def free_port(*, with_bus_port: bool = False) -> int:
    """A port of this worker's slice that nothing listens on now (and its bus port, +10000,
    when ``with_bus_port``), and not one of the last ports handed out here. Random within
    the slice: a port just closed by a previous test may still be in TIME_WAIT for a
    client, so handing out the same few is avoided."""
    ports = port_slice()
    for _ in range(10 * len(ports)):
        port = random.choice(ports)
        if port in _RECENT_PORTS:
            continue
        if _port_is_free(port) and (not with_bus_port or _port_is_free(port + BUS_OFFSET)):
            _RECENT_PORTS.append(port)
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def redis_url_for_worker(url: str, index: int | None = None) -> str | None:
    """``url`` with this worker's database number (the configured one minus N), or None
    when that would be below 0. ``redis://``/``rediss://`` carry it in the path,
    ``unix://`` in ``?db=``."""
    index = worker_index() if index is None else index
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        db = int(query.get("db", "0")) - index
        if db < 0:
            return None
        # Rebuilt by hand: urlunsplit would drop the empty host of unix:///path.
        return f"{url.split('?', 1)[0]}?{urlencode({**query, 'db': str(db)})}"
    path_db = parts.path.strip("/")
    db = (int(path_db) if path_db.isdigit() else 0) - index
    if db < 0:
        return None
    return urlunsplit(parts._replace(path=f"/{db}"))


def shared_folder(basetemp: Path) -> Path:
    """A folder every worker of this run sees: the parent of the workers' own base
    folders under xdist (as pytest-xdist's docs suggest), else the base folder itself."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


@contextlib.contextmanager
def run_lock(basetemp: Path, name: str) -> Iterator[None]:
    """An exclusive lock shared by the workers of this run (``flock`` on a file in
    :func:`shared_folder`): one worker at a time does a one-off job such as installing
    Chromium, the others wait and then find it done."""
    path = shared_folder(basetemp) / f"{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
