"""The on-disk key ring (``AUTHSVC_JWT_KEY_DIR``): PEM files and a ``keyring.json`` manifest."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from authsvc.keys.model import (
    KeyRingError,
    Rotated,
    SigningKey,
    load_pem,
    new_kid,
    new_pem,
    still_waiting,
)

MANIFEST = "keyring.json"


class KeyDirectory:
    """The on-disk key ring: generate, rotate, prune, read. Used by the CLI and KeyRing.

    ``keyring.json``: ``{"active": kid, "retired": {kid: retired_at}, "scheduled":
    {kid: activates_at}}``. A scheduled key whose time has come is the signer on read;
    the next write (rotate, prune) records it as active and retires its predecessor.
    """

    def __init__(self, path: Path, algorithm: str) -> None:
        self.path = path
        self.algorithm = algorithm

    def describe(self) -> str:
        """The directory's path."""
        return str(self.path)

    def _manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            return {"active": None, "retired": {}}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        # Write then rename: a worker never reads a half-written manifest.
        temporary = self.path / f".{MANIFEST}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(manifest, indent=2))
        os.replace(temporary, self.path / MANIFEST)

    def _write_key(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        kid = new_kid()
        fd = os.open(self.path / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(new_pem(self.algorithm))
        return kid

    def generate(self, *, activate: bool) -> str:
        """Create a new key; it signs from now on when ``activate`` (or when none does)."""
        kid = self._write_key()
        manifest = self._settled(self._manifest(), int(time.time()))
        if activate or not manifest.get("active"):
            self._activate(manifest, kid, int(time.time()))
        self._write_manifest(manifest)
        return kid

    def rotate(self, *, keep_seconds: int, delay: int = 0) -> Rotated:
        """Publish a new key that signs ``delay`` seconds from now; prune expired keys.

        With ``delay`` 0 it signs at once (one host, or a test). Refuses while another
        rotated-in key is still waiting for its turn.
        """
        now = int(time.time())
        manifest = self._settled(self._manifest(), now)
        for waiting, at in manifest.get("scheduled", {}).items():
            raise still_waiting(waiting, at)
        kid = self._write_key()
        if delay <= 0:
            self._activate(manifest, kid, now)
        else:
            manifest.setdefault("scheduled", {})[kid] = now + delay
        self._write_manifest(manifest)
        return Rotated(kid, now + max(delay, 0), self.prune(keep_seconds=keep_seconds))

    def _settled(self, manifest: dict[str, Any], now: int) -> dict[str, Any]:
        scheduled = manifest.get("scheduled", {})
        for kid, at in sorted(scheduled.items(), key=lambda item: item[1]):
            if at <= now:
                self._activate(manifest, kid, at)
                del scheduled[kid]
        return manifest

    def _activate(self, manifest: dict[str, Any], kid: str, at: int) -> None:
        previous = manifest.get("active")
        if previous and previous != kid:
            manifest.setdefault("retired", {})[previous] = at
        manifest["active"] = kid

    def prune(self, *, keep_seconds: int) -> list[str]:
        """Delete retired keys whose last token has expired; returns their kids."""
        now = int(time.time())
        before = self._manifest()
        manifest = self._settled(json.loads(json.dumps(before)), now)
        expired = [
            kid
            for kid, retired_at in manifest.get("retired", {}).items()
            if retired_at + keep_seconds < now
        ]
        for kid in expired:
            del manifest["retired"][kid]
            (self.path / f"{kid}.pem").unlink(missing_ok=True)
        if manifest != before:
            self._write_manifest(manifest)
        return expired

    def records(self) -> list[SigningKey]:
        """Every key with its activation time, rebuilt from the manifest.

        Retirements form a chain: a key activated when its predecessor retired. A
        retired key whose file is gone is skipped (pruned by hand); a missing active
        or scheduled key is an error.
        """
        manifest = self._manifest()
        active_kid = manifest.get("active")
        if not active_kid:
            raise KeyRingError(f"no signing key in {self.path}: run `authsvc keys generate` first")
        keys: list[SigningKey] = []
        activated = 0
        retired = manifest.get("retired", {})
        for kid, retired_at in sorted(retired.items(), key=lambda item: (item[1], item[0])):
            if (self.path / f"{kid}.pem").exists():
                keys.append(self._key(kid, activated))
            activated = retired_at
        keys.append(self._key(active_kid, activated))
        keys.extend(self._key(kid, at) for kid, at in manifest.get("scheduled", {}).items())
        return keys

    def _key(self, kid: str, activates_at: int) -> SigningKey:
        key = load_pem(self.path / f"{kid}.pem", self.algorithm, kid, None)
        return replace(key, activates_at=int(activates_at))

    def version(self) -> float:
        """The manifest's mtime: every change rewrites it."""
        return self.mtime()

    def mtime(self) -> float:
        """The manifest's modification time (0 when absent)."""
        try:
            return (self.path / MANIFEST).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def last_good(self) -> list[SigningKey] | None:
        """None: a key directory keeps no snapshot (its files are the only copy)."""
        return None
