"""The signing-key ring's Redis keys: sealed records by kid, a manifest, a version counter.

``P:{keyring}:keys``     hash   kid -> record (JSON, its private key encrypted: authsvc.keys),
                                plus the field ``#manifest`` (every kid and its activation
                                time, sealed: the ring as a whole)
``P:{keyring}:version``  string the ring's generation, moved by every change; workers GET
                                it once a second and reread the hash only when it moved

Both keys share the hash tag ``{keyring}`` (one cluster slot), and every change is one
script. No TTL: a key lives until ``authsvc keys rotate`` prunes it, like a user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from authsvc.store.base import RedisClient, Script, _text
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import _script

MANIFEST_FIELD = "#manifest"  # never a kid: kids are made of digits, letters and '-'

_CHANGE_KEYRING_LUA = _script("change_keyring")
_KEYRING_TIME_LUA = _script("keyring_time")


@dataclass(frozen=True)
class SealedRing:
    """The ring as read from Redis in one HGETALL: still sealed, not yet trusted."""

    records: dict[str, str]  # kid -> sealed record
    manifest: str | None  # the sealed manifest (None: a ring written before manifests)


class ChangeStatus(Enum):
    """What the change script decided."""

    OK = "ok"
    MOVED = "moved"  # another change landed since the read: nothing written
    CLOCK = "clock"  # the activation time is not where the server's clock puts it


@dataclass(frozen=True)
class ChangeResult:
    """The change script's answer: the status and the version (or the server's time)."""

    status: ChangeStatus
    value: int


class KeyRecords:
    """Reads and changes the key ring in Redis; knows nothing of keys or crypto."""

    def __init__(self, client: RedisClient, *, prefix: str = "authsvc") -> None:
        self.redis = client
        layout = KeyLayout(prefix)
        self.records_key = layout.keyring_records()
        self.version_key = layout.keyring_version()
        self._change = Script(client, _CHANGE_KEYRING_LUA)
        self._time = Script(client, _KEYRING_TIME_LUA)

    def version(self) -> str:
        """The change counter ("0" before the first key): one GET."""
        return _text(self.redis.get(self.version_key) or "0")

    def read(self) -> SealedRing:
        """Every record and the manifest, in one HGETALL (so they belong together).

        Read after :meth:`version`: a change landing in between shows as a newer
        version on the next check, which rereads.
        """
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self.records_key).items()}
        manifest = raw.pop(MANIFEST_FIELD, None)
        return SealedRing(raw, manifest)

    def all(self) -> dict[str, str]:
        """Every key record by kid (the manifest left out)."""
        return self.read().records

    def server_time(self) -> float:
        """TIME of the node holding the ring: the clock activation times are taken from."""
        seconds, micros = self._time(keys=[self.version_key])
        return int(seconds) + int(micros) / 1_000_000

    def change(
        self,
        *,
        expected_version: str,
        generation: int,
        manifest: str,
        add: dict[str, str] | None = None,
        remove: list[str] | tuple[str, ...] = (),
        activates_at: int | None = None,
        delay: int = 0,
    ) -> ChangeResult:
        """Add and delete records, store ``manifest`` and set the version to ``generation``.

        Atomically, and only if the version is still ``expected_version`` (else MOVED).
        With ``activates_at`` (a new key), only if it lies within ``delay`` to
        ``delay + 5`` seconds after the server's TIME (else CLOCK, with that time).
        """
        pairs = [item for kid, record in (add or {}).items() for item in (kid, record)]
        args = [
            expected_version,
            generation,
            "" if activates_at is None else activates_at,
            delay,
            manifest,
            *remove,
            "--",
            *pairs,
        ]
        status, value = self._change(keys=[self.records_key, self.version_key], args=args)
        return ChangeResult(ChangeStatus(_text(status)), int(_text(value)))
