"""The last good Redis key ring of this host: never backwards, and kept on disk across restarts.

A worker opens the ring in Redis through :class:`LastGoodRing`. Each good read moves a
high-water mark (the newest manifest seen) and, when the ring changed, rewrites a
snapshot file in the instance folder (0600, written then renamed): the ring's sealed
records and manifest exactly as Redis held them. Nothing in it is readable without
the KEK, and nothing in it is trusted without the KEK either (it is opened like the
ring in Redis).

The snapshot serves twice. A worker that boots while the ring in Redis is bad (a
record failing authentication, a rollback) or while Redis does not answer starts with
the snapshot's keys and reports them stale, instead of failing to boot and taking
gunicorn's master down with it. And its manifest is the high-water mark a restarted
worker starts from, so a ring rolled back while the host was down is still refused.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from authsvc.keys.model import KeyRingError, SigningKey
from authsvc.keys.redis_source import RedisKeys
from authsvc.keys.sealing import Manifest
from authsvc.store.keyring import SealedRing

log = logging.getLogger("authsvc.keys")

SNAPSHOT_NAME = "keyring-snapshot.json"


def snapshot_path(instance_path: str) -> Path:
    """Where a host keeps its snapshot: ``AUTHSVC_INSTANCE_PATH`` (default ``./instance``)."""
    folder = Path(instance_path).resolve() if instance_path else Path.cwd() / "instance"
    return folder / SNAPSHOT_NAME


class LastGoodRing:
    """A key source over :class:`RedisKeys` that refuses to go backwards and remembers.

    Used by :class:`authsvc.keys.KeyRing` only (the CLI talks to Redis directly).
    """

    def __init__(self, keys: RedisKeys, path: Path | None) -> None:
        self._keys = keys
        self.path = path
        self.algorithm = keys.algorithm
        self._saved: SealedRing | None = None
        self._floor: Manifest | None = None
        self._write_failed = False
        snapshot = self._read()
        if snapshot is not None:
            try:
                self._floor = keys.open(snapshot).manifest
                self._saved = snapshot
            except KeyRingError as error:  # another deployment's, or damaged: not ours
                log.warning("ignoring the key snapshot %s: %s", path, error)

    def describe(self) -> str:
        """The Redis hash holding the records."""
        return self._keys.describe()

    def version(self) -> str:
        """The ring's change counter: one GET."""
        return self._keys.version()

    @property
    def generation(self) -> int | None:
        """The newest generation this host has seen (None: none yet)."""
        return self._floor.generation if self._floor else None

    def records(self) -> list[SigningKey]:
        """The ring in Redis, refused if it is older than the newest seen; saved when new."""
        sealed = self._keys.read()
        opened = self._keys.open(sealed, floor=self._floor)
        self._floor = opened.manifest
        if sealed != self._saved:
            self._save(sealed)
        return opened.keys

    def last_good(self) -> list[SigningKey] | None:
        """The keys of the snapshot (None when this host never saved a good ring)."""
        if self._saved is None:
            return None
        return self._keys.open(self._saved).keys

    def _read(self) -> SealedRing | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
            records = {str(kid): str(record) for kid, record in data["records"].items()}
            return SealedRing(records, str(data["manifest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("ignoring the key snapshot %s: unreadable (%s)", self.path, error)
            return None

    def _save(self, sealed: SealedRing) -> None:
        self._saved = sealed
        if self.path is None:
            return
        text = json.dumps({"v": 1, "records": sealed.records, "manifest": sealed.manifest})
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            # Rename: another worker (or a restart) never reads a half-written file.
            os.replace(temporary, self.path)
            self._write_failed = False
        except OSError as error:
            temporary.unlink(missing_ok=True)
            if not self._write_failed:  # one line per run of failures, not one per reload
                log.warning(
                    "cannot write the key snapshot %s (%s): a worker restarted while the "
                    "key ring in Redis is bad or unreachable will not start",
                    self.path,
                    error,
                )
            self._write_failed = True
