"""Confidential clients: their secrets, and the client-credentials grant (RFC 6749 4.4).

A registered client becomes *confidential* when it is given a secret (``authsvc client
secret ID``, ``POST /api/v1/admin/clients/<id>/secret``). The secret is 256 random bits,
shown once and stored only as HMAC-SHA256 keyed by the client id: a slow hash
(argon2id) protects guessable passwords, and a generated 256-bit secret cannot be
guessed from its hash whatever the hash costs, so a fast one keeps the token endpoint
cheap (no argon2 lever for a flood of bad secrets). Keying by the client id binds a
hash to its client. Rotating the secret keeps the previous one valid for an overlap
(default :data:`DEFAULT_OVERLAP_SECONDS`), so a fleet of workers can pick up the new one.

A confidential client gets machine tokens with ``grant_type=client_credentials``: an
access token whose ``sub`` and ``azp`` are the client, with the scopes it allows
(narrowed by ``scope``), no refresh token and no session. Attempts are throttled like
logins (per client and per network, the same buckets and limits). A machine token is
checked in one round trip (:class:`~authsvc.store.client_secrets.ClientSecretStore`): revoked by
its jti, dead when the client is deleted or made public, its scope cut to what the
client still allows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from authsvc.attempts import LoginAttempts
from authsvc.clients import (
    ClientRegistry,
    InvalidClient,
    check_requested,
    format_scope,
    parse_scope,
)
from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.networks import login_network
from authsvc.store import RegisteredClient, Store
from authsvc.store.client_secrets import ClientSecretStore, MachineTokenStatus, SecretState
from authsvc.tokens import Claims, denylist_ttl_ms, mint_client_token

# A rotated-out secret keeps working this long unless told otherwise (Keycloak's
# "rotated secret expiration" plays the same part): a day to roll the new one out.
DEFAULT_OVERLAP_SECONDS = 24 * 3600
MAX_OVERLAP_SECONDS = 30 * 24 * 3600
_SECRET_BYTES = 32
_DUMMY_CLIENT = "\0unknown"
# The throttle's account-side name for a client: never a valid username (no colon).
_THROTTLE_PREFIX = "client:"


def hash_secret(client_id: str, secret: str) -> str:
    """The stored form of ``secret``: HMAC-SHA256 keyed by the client id, hex."""
    digest = hmac.new(client_id.encode(), secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "hs256:" + digest.hexdigest()


@dataclass(frozen=True)
class IssuedSecret:
    """A new client secret, shown once, and until when (Unix s) the previous one works."""

    client_id: str
    secret: str
    previous_valid_until: int | None

    def as_dict(self) -> dict[str, Any]:
        """The admin API's answer (RFC 7591 names: ``client_secret_expires_at`` 0 = never)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.secret,
            "client_secret_expires_at": 0,
            "previous_secret_valid_until": self.previous_valid_until,
        }


@dataclass(frozen=True)
class MachineToken:
    """A client-credentials access token as the token endpoint answers it."""

    access_token: str
    expires_in: int
    scope: str

    def as_dict(self) -> dict[str, Any]:
        """RFC 6749 section 5.1 JSON: no refresh token (section 4.4.3)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class ClientCredentials:
    """Confidential clients: secrets, client authentication and machine tokens."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: ClientRegistry,
        attempts: LoginAttempts | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.secrets = ClientSecretStore(store)
        # The login throttle's (shared with AuthService: one hand-back queue per process).
        self.attempts = attempts or LoginAttempts(settings, store)

    # -- secrets (CLI, admin API) --------------------------------------------------
    def issue_secret(
        self, client_id: str, *, overlap_seconds: int = DEFAULT_OVERLAP_SECONDS
    ) -> IssuedSecret:
        """Give a registered client a new secret (making it confidential), shown once.

        The current secret, if any, stays valid ``overlap_seconds`` more (0: stops now).
        ValueError for the built-in client or a bad overlap, LookupError for no client.
        """
        if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
            raise InvalidClient(
                "overlap_seconds", f"the overlap must be 0 to {MAX_OVERLAP_SECONDS} s"
            )
        client = self.registry.get(client_id)
        self.registry._refuse_builtin(client.id)  # the registry's own rule
        _, before = self.secrets.client_and_secret(client.id)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        if not self.secrets.set_secret(
            client.id, hash_secret(client.id, secret), overlap_ms=overlap_seconds * 1000
        ):
            raise LookupError(f"no client {client_id!r}")
        overlapping = before.confidential and overlap_seconds > 0
        until = int(time.time()) + overlap_seconds if overlapping else None
        return IssuedSecret(client.id, secret, until)

    def remove_secret(self, client_id: str) -> None:
        """Make a client public again: its secrets go and its machine tokens die."""
        client = self.registry.get(client_id)
        self.registry._refuse_builtin(client.id)  # the registry's own rule
        self.secrets.clear_secret(client.id)

    def is_confidential(self, client_id: str) -> bool:
        """Whether ``client_id`` is a registered client with a secret."""
        return self.secrets.client_and_secret(client_id)[1].confidential

    # -- authentication ----------------------------------------------------------------
    def authenticate(self, client_id: str, secret: str) -> RegisteredClient:
        """The confidential client whose current (or overlapping) secret this is.

        ``invalid_client`` otherwise, after the same work for an unknown id.
        """
        return self._authenticate(client_id, secret)[0]

    def _authenticate(self, client_id: str, secret: str) -> tuple[RegisteredClient, SecretState]:
        client, state = (
            self.secrets.client_and_secret(client_id)
            if self.registry.is_valid_id(client_id)
            else (None, SecretState())
        )
        presented = hash_secret(client_id if client else _DUMMY_CLIENT, secret)
        if client is None or not _matches(presented, state, self.store.clock()):
            raise AuthError("invalid_client")
        return client, state

    # -- the client-credentials grant -------------------------------------------------------
    def grant(self, client_id: str, secret: str, scope: str | None, ip: str) -> MachineToken:
        """A machine token for an authenticated confidential client (throttled like logins)."""
        if not self.registry.is_valid_id(client_id):
            raise AuthError("invalid_client")
        network = login_network(ip, self.settings.login_ipv6_prefix)
        attempt = self.attempts.new(_THROTTLE_PREFIX + client_id, network)
        with self.attempts.handed_back_if_cut_off(attempt):
            self.attempts.begin(attempt, ip, flow="client_credentials", lookup=False)
            try:
                client, state = self._authenticate(client_id, secret)
            except AuthError:
                emit("client_auth_failed", client_id=client_id, ip=ip)
                raise
            self.attempts.settle(attempt)
        wanted = check_requested(None if scope is None else parse_scope(scope), client)
        issued_at = int(time.time())
        ttl = self.registry.lifetimes(client)[0]
        jti = f"{state.epoch}.{secrets.token_urlsafe(16)}"
        granted = format_scope(wanted)
        token = mint_client_token(
            client_id=client.id, jti=jti, issued_at=issued_at, ttl=ttl, scope=granted
        )
        emit("client_token_issued", client_id=client.id, ip=ip)
        return MachineToken(token, ttl, granted)

    # -- introspection and revocation of machine tokens ------------------------------------
    def introspect(self, claims: Claims) -> dict[str, Any] | None:
        """RFC 7662 fields of a live machine token, or None when it is not live."""
        status, allowed = self.secrets.check_token(claims.subject, claims.jti)
        if status is not MachineTokenStatus.OK:
            return None
        return {
            "active": True,
            "token_type": "access_token",
            "sub": claims.subject,
            "jti": claims.jti,
            "client_id": claims.subject,
            "azp": claims.subject,
            # What the client still allows: a scope taken from it since is gone.
            "scope": format_scope(set((claims.scope or "").split()) & allowed),
            "iat": claims.issued_at,
            "nbf": claims.issued_at,
            "exp": claims.expires_at,
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
        }

    def revoke(self, claims: Claims) -> None:
        """Denylist one machine token by its jti until it expires."""
        self.secrets.deny_token(
            claims.subject,
            claims.jti,
            ttl_ms=denylist_ttl_ms(claims.expires_at, self.settings.jwt_leeway),
        )


def _matches(presented: str, state: SecretState, now_ms: int) -> bool:
    # Both comparisons always run, so the answer time does not tell which secret matched.
    current = hmac.compare_digest(presented, state.current or "-")
    previous = hmac.compare_digest(presented, state.previous or "-")
    return bool(state.current) and (
        current or (bool(state.previous) and previous and now_ms < state.previous_until_ms)
    )
