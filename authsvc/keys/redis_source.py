"""The key ring in Redis (``AUTHSVC_JWT_KEY_STORE=redis``): generate, rotate, prune, open.

Every record is sealed by :class:`~authsvc.keys.sealing.KeyCipher`; the manifest binds
the ring as a whole. Every change reads the ring and its version, then writes in one
script that refuses if the version moved meanwhile (two operators rotating at once),
so the manifest always describes exactly the records beside it. Activation times come
from the TIME of the Redis node holding the ring, never from the clock of the host
running the command, and the change script checks them against that same clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from authsvc.config import Settings
from authsvc.keys.directory import KeyDirectory
from authsvc.keys.model import (
    KeyRingError,
    Rotated,
    SigningKey,
    expired,
    key_from_pem,
    new_kid,
    new_pem,
    ring_at,
    still_waiting,
)
from authsvc.keys.sealing import (
    KeyCipher,
    KeyRecordError,
    KeyRingRollbackError,
    Manifest,
)
from authsvc.store import RedisClient
from authsvc.store.keyring import ChangeResult, ChangeStatus, KeyRecords, SealedRing

# A change that lost a race (version moved) or a second boundary (clock) is retried.
_ATTEMPTS = 3


@dataclass(frozen=True)
class OpenedRing:
    """A ring whose manifest and records all authenticated and agree with each other."""

    keys: list[SigningKey]
    manifest: Manifest


def check_not_older(manifest: Manifest, floor: Manifest | None) -> None:
    """Refuse ``manifest`` if it is older than ``floor``, the newest one seen.

    Each generation is sealed once, so the same generation with other keys cannot be
    genuine either.
    """
    if floor is None:
        return
    if manifest.generation < floor.generation or (
        manifest.generation == floor.generation and manifest.keys != floor.keys
    ):
        raise KeyRingRollbackError(
            f"the key ring in Redis is generation {manifest.generation}, but this host has "
            f"seen generation {floor.generation}: an older ring restored (a backup?) is "
            "refused; after a deliberate restore run "
            f"`authsvc keys reseal --above {floor.generation}`"
        )


def _as_int(version: str) -> int:
    try:
        return int(version)
    except ValueError:  # anyone with Redis write access can SET it: not ours to trust
        return 0


class RedisKeys:
    """The key ring in Redis. Used by the CLI (changes) and by workers (read and open)."""

    def __init__(self, records: KeyRecords, cipher: KeyCipher, algorithm: str) -> None:
        self._store = records
        self._cipher = cipher
        self.algorithm = algorithm

    def describe(self) -> str:
        """The Redis hash holding the records."""
        return f"Redis ({self._store.records_key})"

    def version(self) -> str:
        """The ring's change counter: one GET."""
        return self._store.version()

    def read(self) -> SealedRing:
        """The records and the manifest, still sealed (one HGETALL)."""
        return self._store.read()

    def server_time(self) -> float:
        """The clock of the Redis node holding the ring (TIME)."""
        return self._store.server_time()

    def open(self, sealed: SealedRing, *, floor: Manifest | None = None) -> OpenedRing:
        """Authenticate the manifest and every record, and check they agree.

        Raises on any doubt: a record that fails authentication, a record the manifest
        does not list (an old or pruned genuine record put back), one whose activation
        time differs from the manifest's, a listed record that is missing, or a
        manifest older than ``floor``.
        """
        if not sealed.records and sealed.manifest is None:
            raise KeyRingError("no signing key in Redis: run `authsvc keys generate` first")
        if sealed.manifest is None:
            raise KeyRecordError(
                "the key ring in Redis has no manifest (written by an older authsvc, or "
                "deleted): check `authsvc keys list --unsealed`, then `authsvc keys reseal`"
            )
        manifest = self._cipher.open_manifest(sealed.manifest)
        check_not_older(manifest, floor)
        keys = self._open_records(sealed.records)
        for key in keys:
            listed = manifest.keys.get(key.kid)
            if listed is None:
                raise KeyRingRollbackError(
                    f"key {key.kid} is not in the ring's manifest (generation "
                    f"{manifest.generation}): an old or pruned record put back is refused"
                )
            if listed != key.activates_at:
                raise KeyRingRollbackError(
                    f"key {key.kid} activates at {key.activates_at}, its manifest says "
                    f"{listed}: refused"
                )
        missing = sorted(manifest.keys.keys() - sealed.records.keys())
        if missing:
            raise KeyRecordError(f"key {', '.join(missing)} of the ring's manifest is missing")
        if not keys:
            raise KeyRingError("no signing key in Redis: run `authsvc keys generate` first")
        return OpenedRing(keys, manifest)

    def _open_records(self, records: dict[str, str]) -> list[SigningKey]:
        return [self._cipher.open(kid, records[kid], self.algorithm) for kid in sorted(records)]

    def records(self) -> list[SigningKey]:
        """Every key, decrypted, authenticated and checked against the manifest."""
        return self.open(self.read()).keys

    def last_good(self) -> list[SigningKey] | None:
        """None: the bare Redis ring keeps no snapshot (see :class:`LastGoodRing`)."""
        return None

    def _current(self) -> tuple[str, OpenedRing | None]:
        """The version, then the ring it describes (None: an empty ring)."""
        version = self._store.version()
        sealed = self._store.read()
        if not sealed.records and sealed.manifest is None:
            return version, None
        return version, self.open(sealed)

    def _seal(self, pem: bytes, kid: str, activates_at: int, created: int) -> str:
        key = key_from_pem(pem, self.algorithm, kid, kid)
        return self._cipher.seal(replace(key, activates_at=activates_at), created=created)

    def _commit(
        self,
        version: str,
        current: Manifest | None,
        *,
        add: dict[str, tuple[str, int]] | None = None,
        remove: list[str] | tuple[str, ...] = (),
        activates_at: int | None = None,
        delay: int = 0,
        above: int = 0,
    ) -> ChangeResult:
        """Write the change with a new manifest one generation above everything seen."""
        listed = dict(current.keys) if current else {}
        for kid in remove:
            listed.pop(kid, None)
        listed.update({kid: at for kid, (_, at) in (add or {}).items()})
        generation = max(_as_int(version), current.generation if current else 0, above) + 1
        return self._store.change(
            expected_version=version,
            generation=generation,
            manifest=self._cipher.seal_manifest(Manifest(generation, listed)),
            add={kid: record for kid, (record, _) in (add or {}).items()},
            remove=remove,
            activates_at=activates_at,
            delay=delay,
        )

    def generate(self) -> str:
        """The first key of an empty ring; it signs at once."""
        pem = new_pem(self.algorithm)
        for _ in range(_ATTEMPTS):
            version, current = self._current()
            if current is not None or self._store.all():
                raise KeyRingError(
                    "the key ring in Redis has keys already: use `authsvc keys rotate`"
                )
            now = self.server_time()
            kid = new_kid(now)
            record = self._seal(pem, kid, int(now), int(now))
            if self._commit(version, None, add={kid: (record, int(now))}).status is ChangeStatus.OK:
                return kid
        raise _kept_changing()

    def rotate(self, *, keep_seconds: int, delay: int, immediate: bool = False) -> Rotated:
        """Publish a new key that signs ``delay`` seconds after Redis's TIME; prune expired keys.

        ``immediate`` (``keys rotate --now``): it signs at once, and a key already
        waiting for its turn does not block it (it still takes over at its time).
        """
        delay = 0 if immediate else max(delay, 0)
        pem = new_pem(self.algorithm)  # first: a 3072-bit RSA key takes a while
        for _ in range(_ATTEMPTS):
            version, current = self._current()
            if current is None:
                raise KeyRingError("no signing key in Redis: run `authsvc keys generate` first")
            now = self.server_time()
            state = ring_at(current.keys, now, keep_seconds)
            pending = state.pending()
            if pending and not immediate:
                raise still_waiting(pending[0].kid, pending[0].activates_at)
            # Strictly after the signer's time, so even a rotation in the same second wins;
            # --now from this very second, a delay from the next whole second.
            start = math.floor(now) if immediate else math.ceil(now)
            activates_at = max(start + delay, state.active.activates_at + 1)
            kid = new_kid(now)
            record = self._seal(pem, kid, activates_at, int(now))
            pruned = expired(current.keys, state)
            result = self._commit(
                version,
                current.manifest,
                add={kid: (record, activates_at)},
                remove=pruned,
                activates_at=activates_at,
                delay=delay,
            )
            if result.status is ChangeStatus.OK:
                return Rotated(kid, activates_at, pruned, tuple(k.kid for k in pending))
        raise _kept_changing()

    def prune(self, *, keep_seconds: int) -> list[str]:
        """Delete keys whose last token has expired; returns their kids."""
        for _ in range(_ATTEMPTS):
            version, current = self._current()
            if current is None:
                return []
            pruned = expired(current.keys, ring_at(current.keys, self.server_time(), keep_seconds))
            if not pruned:
                return []
            result = self._commit(version, current.manifest, remove=pruned)
            if result.status is ChangeStatus.OK:
                return pruned
        raise _kept_changing()

    def import_from(self, directory: KeyDirectory, *, keep_seconds: int) -> list[str]:
        """Copy a key directory's live keys (same kids, same times) into an empty ring."""
        version, current = self._current()
        if current is not None or self._store.all():
            raise KeyRingError("the key ring in Redis has keys already: import into an empty one")
        now = self.server_time()
        state = ring_at(directory.records(), now, keep_seconds)
        records = {
            key.kid: (self._cipher.seal(key, created=int(now)), key.activates_at)
            for key in state.verifying
        }
        if self._commit(version, None, add=records).status is not ChangeStatus.OK:
            raise _kept_changing()
        return list(records)

    def unsealed(self) -> tuple[list[SigningKey], dict[str, str]]:
        """Every record that authenticates on its own, whatever the manifest says.

        And why each other one does not (kid -> reason): to inspect a refused ring.
        """
        keys: list[SigningKey] = []
        refused: dict[str, str] = {}
        for kid, record in sorted(self._store.read().records.items()):
            try:
                keys.append(self._cipher.open(kid, record, self.algorithm))
            except KeyRingError as error:
                refused[kid] = str(error)
        return keys, refused

    def reseal(self, *, above: int = 0) -> Manifest:
        """Bless the records as they are now with a new manifest (generation > ``above``).

        For a ring written before manifests, or after a deliberate restore from a
        backup. Every record must still authenticate; whatever else the ring holds
        (an old genuine record put back) is blessed too: check ``keys list`` first.
        """
        for _ in range(_ATTEMPTS):
            version = self._store.version()
            sealed = self._store.read()
            keys = self._open_records(sealed.records)
            if not keys:
                raise KeyRingError("no signing key in Redis: run `authsvc keys generate` first")
            current = None
            if sealed.manifest is not None:
                current = self._cipher.open_manifest(sealed.manifest)
            add = {key.kid: (sealed.records[key.kid], key.activates_at) for key in keys}
            stale = [kid for kid in (current.keys if current else {}) if kid not in add]
            result = self._commit(version, current, add=add, remove=stale, above=above)
            if result.status is ChangeStatus.OK:
                return Manifest(result.value, {kid: at for kid, (_, at) in add.items()})
        raise _kept_changing()


def _kept_changing() -> KeyRingError:
    return KeyRingError(
        "the key ring in Redis kept changing meanwhile (another `authsvc keys` command?), "
        "or its clock jumped: nothing was written; try again"
    )


def redis_key_source(settings: Settings, client: RedisClient) -> RedisKeys | None:
    """The key ring in Redis when ``AUTHSVC_JWT_KEY_STORE=redis``, else None."""
    if settings.jwt_key_store != "redis":
        return None
    return RedisKeys(
        KeyRecords(client, prefix=settings.redis_key_prefix),
        KeyCipher(settings.key_encryption_key),
        settings.jwt_algorithm,
    )
