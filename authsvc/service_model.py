"""The values the service's flows take and give: clients, principals, actors, usernames.

Shared by every flow module (:mod:`authsvc.service_login`, :mod:`authsvc.service_tokens`,
:mod:`authsvc.service_accounts`) and re-exported by :mod:`authsvc.service`.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

from authsvc.clients import DEFAULT_CLIENT_ID
from authsvc.passwords import MAX_PASSWORD_LENGTH

MAX_USER_AGENT_LENGTH = 256
# Usernames are stored as ASCII after NFKC + case folding, so a look-alike spelled
# with other scripts or widths can never be registered next to an existing account.
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,63}$")
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def normalize_username(username: str) -> str:
    """NFKC-normalise and case-fold, so fullwidth ``DEMO`` and ``Demo`` both mean ``demo``."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def check_password_length(password: str) -> None:
    """Raise ValueError for an empty password or one longer than the hasher takes."""
    if not 1 <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be 1 to {MAX_PASSWORD_LENGTH} characters")


def new_id() -> str:
    """A random, URL-safe identifier (session ids, token ids)."""
    return secrets.token_urlsafe(16)


class InvalidUsername(ValueError):
    """A username that is not 1-64 characters of the allowed set after normalisation."""


class UsernameTaken(ValueError):
    """A username that another account already has."""


@dataclass(frozen=True)
class Actor:
    """Who performs an administrative action, named in its audit line."""

    via: str  # "cli" (the authsvc command) or "api" (/api/v1/admin)
    admin_user_id: str | None = None  # the acting admin, over the API

    def fields(self) -> dict[str, str | None]:
        """The audit fields: ``actor`` and ``admin_user_id``."""
        return {"actor": self.via, "admin_user_id": self.admin_user_id}


CLI = Actor("cli")


@dataclass(frozen=True)
class Client:
    """What the caller's HTTP request says about the device."""

    ip: str
    user_agent: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class Principal:
    """The owner of a verified, unrevoked access token."""

    user_id: str
    username: str
    roles: tuple[str, ...]
    session_id: str
    token_id: str
    expires_at: int
    client_id: str = DEFAULT_CLIENT_ID
    scopes: frozenset[str] = frozenset()
    jkt: str | None = None  # the session's key (DPoP); None: a bearer session
