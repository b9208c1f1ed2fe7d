"""Where the client SDK keeps its tokens: the :class:`TokenSet` and the token stores.

Re-exported by :mod:`authsvc.client`; import them from there.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FileTokenStore", "MemoryTokenStore", "TokenSet", "TokenStore"]

log = logging.getLogger("authsvc.client")


@dataclass(frozen=True)
class TokenSet:
    """A token pair and when its access token expires, in this device's clock (epoch s)."""

    # Kept out of repr(): a TokenSet printed into a log must not carry its tokens.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    obtained_at: float
    session_id: str | None = None
    # What the server granted (RFC 6749 section 5.1), None from an older server.
    scope: str | None = None
    # "DPoP" once the session is bound to a key (RFC 9449): the scheme of Authorization.
    token_type: str = "Bearer"  # noqa: S105 - a scheme name
    # The private JWK of the key a generated-key client (dpop=True) binds the session to:
    # it lives and dies with the tokens it binds, in the same 0600 file.
    dpop_jwk: dict[str, str] | None = field(default=None, repr=False)

    @classmethod
    def from_response(
        cls,
        data: dict[str, Any],
        now: float | None = None,
        *,
        dpop_jwk: dict[str, str] | None = None,
    ) -> TokenSet:
        """Build from a login/refresh answer's ``data``; ``expires_in`` counts from ``now``."""
        now = time.time() if now is None else now
        scope = data.get("scope")
        token_type = data.get("token_type")
        return cls(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            access_expires_at=now + float(data["expires_in"]),
            obtained_at=now,
            session_id=data.get("session_id"),
            scope=scope if isinstance(scope, str) else None,
            token_type="DPoP" if str(token_type).lower() == "dpop" else "Bearer",
            dpop_jwk=dpop_jwk,
        )

    @property
    def bound(self) -> bool:
        """True when the session is DPoP-bound: every use needs a proof by its key."""
        return self.token_type == "DPoP"  # noqa: S105 - a scheme name

    def refresh_at(self, margin: float) -> float:
        """When to refresh: ``margin`` s before expiry, at most half the token's life early.

        The cap keeps a margin larger than a short access-token lifetime from turning
        every call into a refresh.
        """
        lifetime = max(self.access_expires_at - self.obtained_at, 0.0)
        return self.access_expires_at - min(margin, lifetime / 2)

    def to_json(self) -> str:
        """The JSON a :class:`FileTokenStore` writes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        """Parse :meth:`to_json` output; ValueError or TypeError when it is not one."""
        return cls(**json.loads(text))


class TokenStore(Protocol):
    """Where a client keeps its tokens between calls (and, if persistent, between runs)."""

    def load(self) -> TokenSet | None:
        """The saved tokens, or None."""

    def save(self, tokens: TokenSet) -> None:
        """Replace the saved tokens."""

    def clear(self) -> None:
        """Forget the saved tokens."""


class MemoryTokenStore:
    """Tokens in memory only: the session ends with the process."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens

    def load(self) -> TokenSet | None:
        """The saved tokens, or None."""
        return self._tokens

    def save(self, tokens: TokenSet) -> None:
        """Replace the saved tokens."""
        self._tokens = tokens

    def clear(self) -> None:
        """Forget the saved tokens."""
        self._tokens = None


class FileTokenStore:
    """Tokens in a JSON file, mode 0600, replaced atomically: a device keeps its session.

    A crash or power loss mid-write leaves either the old or the new file, never a
    torn one, so the refresh token survives reboots.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> TokenSet | None:
        """The saved tokens; None when there is no file or it cannot be read as tokens."""
        try:
            return TokenSet.from_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            log.warning("ignoring unreadable token file %s: log in again", self.path)
            return None

    def save(self, tokens: TokenSet) -> None:
        """Write to a 0600 temporary file in the same directory, fsync, then os.replace."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 whatever the umask; the same directory
        # keeps os.replace a rename within one file system, hence atomic.
        fd, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(tokens.to_json())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    def clear(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # The rename itself is only durable once the directory entry reaches the disk.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
