"""The authentication flows: login, refresh, access checks, logout, sessions, accounts.

Built on :mod:`authsvc.store` (Redis) and :mod:`authsvc.tokens` (JWT); raises
:class:`~authsvc.errors.AuthError` with a stable slug. No request objects here:
the views pass in what they read from HTTP.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from authsvc.attempts import LoginAttempts
from authsvc.binding import ProofPolicy, refuse, require_key
from authsvc.clients import (
    DEFAULT_CLIENT,
    DEFAULT_CLIENT_ID,
    ClientRegistry,
    check_requested,
    format_scope,
    grace_scope_fits,
    granted_scopes,
    parse_scope,
    token_scope,
)
from authsvc.config import Settings
from authsvc.dpop import Proof
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.networks import login_network
from authsvc.oauth_errors import OAuthError
from authsvc.outcomes import ACCESS_FAILURES, PROOF_REFUSALS, REFRESH_EVENTS, REFRESH_FAILURES
from authsvc.passwords import MAX_PASSWORD_LENGTH, Passwords
from authsvc.store import (
    AccessStatus,
    RegisteredClient,
    RevocationStatus,
    Rotation,
    RotationStatus,
    Store,
    User,
)
from authsvc.store.login import Attempt
from authsvc.tokens import ACCESS, REFRESH, TokenPair, denylist_ttl_ms, mint_pair, verify

MAX_USER_AGENT_LENGTH = 256
# Usernames are stored as ASCII after NFKC + case folding, so a look-alike spelled
# with other scripts or widths can never be registered next to an existing account.
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,63}$")
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def normalize_username(username: str) -> str:
    """NFKC-normalise and case-fold, so fullwidth ``DEMO`` and ``Demo`` both mean ``demo``."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def _check_password_length(password: str) -> None:
    if not 1 <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be 1 to {MAX_PASSWORD_LENGTH} characters")


def _new_id() -> str:
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


class AuthService:
    """Every flow of the service over one store, one hasher and one set of settings."""

    def __init__(self, settings: Settings, store: Store, passwords: Passwords) -> None:
        self.settings = settings
        self.store = store
        self.passwords = passwords
        self.clients = ClientRegistry(settings, store)
        self.proofs = ProofPolicy(settings)
        self.attempts = LoginAttempts(settings, store)

    # -- login ------------------------------------------------------------------
    def login(
        self,
        username: str,
        password: str,
        client: Client,
        *,
        client_id: str | None = None,
        scope: str | None = None,
        transport: str = "body",
        proof: Proof | None = None,
    ) -> TokenPair:
        """Check credentials (throttled, constant-time for unknown users) and open a session.

        ``client_id`` names the registered client logging in (None: the default one),
        ``scope`` the scopes asked for (RFC 6749, space-separated; None: all the
        client's). Client mistakes (``unknown_client``, ``invalid_scope``,
        ``transport_not_allowed``, ``dpop_required``) are answered before the password is
        checked, so they cost no hashing and count against no throttle. With a verified
        DPoP ``proof`` the session is bound to its key (RFC 9449).
        """
        registered = self.clients.resolve(client_id)
        if transport not in registered.transports:
            raise AuthError("transport_not_allowed")
        if proof is None and registered.dpop == "required":
            raise AuthError("dpop_required")
        wanted = check_requested(None if scope is None else parse_scope(scope), registered)
        checked_from_ms = self.store.clock()
        attempt = self._attempt(normalize_username(username), client)
        with self.attempts.handed_back_if_cut_off(attempt):
            user = self.attempts.begin(attempt, client.ip)
            # Unknown users are verified against a dummy hash: the same time either way.
            hashed = user.password_hash if user else None
            if not self.passwords.verify(hashed, password) or not user:
                emit("login_failed", ip=client.ip, reason="invalid_credentials")
                raise AuthError("invalid_credentials")
            if user.disabled:
                emit("login_failed", user_id=user.id, ip=client.ip, reason="account_disabled")
                raise AuthError("account_disabled")
            upgrade = self.passwords.needs_rehash(user.password_hash)
            new_hash = self.passwords.hash(password) if upgrade else None
            pair = self.open_session(
                user,
                client,
                auth_ms=checked_from_ms,
                registered=registered,
                scope=format_scope(wanted & granted_scopes(user.roles)),
                # Settle the attempt, upgrade the hash, open the session: one script.
                create=self.attempts.finisher(attempt, user.password_hash, new_hash),
                proof=proof,
            )
        emit("login_succeeded", user_id=user.id, session_id=pair.session_id, ip=client.ip)
        return pair

    def _attempt(self, name: str, client: Client) -> Attempt:
        return self.attempts.new(name, login_network(client.ip, self.settings.login_ipv6_prefix))

    def open_session(
        self,
        user: User,
        client: Client,
        *,
        auth_ms: int,
        registered: RegisteredClient = DEFAULT_CLIENT,
        scope: str | None = None,
        create: Callable[..., bool] | None = None,
        proof: Proof | None = None,
    ) -> TokenPair:
        """Open a session for ``registered``; ``scope`` None: the default client's rule.

        ``create`` records it (default :meth:`Store.create_session`, same arguments);
        with ``proof`` the session is bound to the proof's key.
        """
        if scope is None:
            scope = token_scope(None, user.roles)
        sid, refresh_jti, access_jti = _new_id(), _new_id(), _new_id()
        issued_at = int(time.time())
        access_ttl, refresh_ttl = self.clients.lifetimes(registered)
        expires_at = issued_at + refresh_ttl
        pair = mint_pair(
            user_id=user.id,
            session_id=sid,
            roles=user.roles,
            refresh_jti=refresh_jti,
            access_jti=access_jti,
            issued_at=issued_at,
            session_expires_at=expires_at,
            access_ttl=access_ttl,
            client_id=registered.id,
            scope=scope,
            jkt=proof.jkt if proof else None,
        )
        user_agent = (client.user_agent or "")[:MAX_USER_AGENT_LENGTH] or None
        created = (create or self.store.create_session)(
            user.id,
            sid,
            refresh_jti=refresh_jti,
            access_jti=access_jti,
            issued_at=issued_at,
            expires_ms=expires_at * 1000,
            device_id=client.device_id,
            user_agent=user_agent,
            ip=client.ip,
            auth_ms=auth_ms,
            client_id=registered.id,
            scope=scope,
            access_ttl=access_ttl,
            transports=registered.transports,
            proof=self.proofs.use(proof) if proof else None,
        )
        if not created:
            raise refuse("replay", token_endpoint=True)
        return pair

    # -- refresh ----------------------------------------------------------------
    def refresh(
        self,
        refresh_token: str,
        client: Client,
        *,
        csrf_value: str | None = None,
        scope: str | None = None,
        transport: str = "body",
        client_id: str | None = None,
        proof: Proof | None = None,
    ) -> TokenPair:
        """Rotate a refresh token: a new pair, the already-issued pair, or a revoked family.

        The previous refresh token gets the pair already issued, so a reply lost to a
        timeout converges on retry instead of ending the session: in a session bound to
        a key (DPoP) at any time, with a fresh ``proof`` by that key; in a bearer session
        only within the grace window (after it, a replay ends the family: RFC 9700).
        A bound refresh token without a proof by its key changes nothing.

        ``csrf_value`` is given for cookie transport and must match the token's claim.
        ``transport`` is how the token came (``body``: JSON or Bearer; ``cookie``): one the
        session's client does not allow is ``transport_not_allowed``, and nothing changes.
        ``scope`` narrows the session's scope (RFC 6749 section 6): a scope it does not
        hold is ``invalid_scope``, and the refresh token stays usable; so is one narrower
        than the pair a previous token would get again (see ``grace_scope_fits``). The
        pair keeps the session's client (``azp``) and access-token lifetime. ``client_id``
        (the OAuth token endpoint's client) must be the token's ``azp``, else
        ``invalid_grant`` (RFC 6749 section 6), checked before anything rotates.
        """
        try:
            claims = verify(refresh_token, REFRESH, csrf_value=csrf_value)
        except AuthError as error:
            emit("refresh_expired" if error.slug == "token_expired" else "refresh_invalid")
            raise
        if client_id is not None and client_id != (claims.client_id or DEFAULT_CLIENT_ID):
            emit("refresh_invalid", user_id=claims.subject, session_id=claims.session_id)
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        # Checked before Redis: a thief holding only the token changes nothing.
        require_key(
            claims.jkt,
            proof,
            token_endpoint=True,
            user_id=claims.subject,
            session_id=claims.session_id,
        )
        narrowed = ""
        if scope is not None:
            # Checked against the token's own claim first (no round trip wasted); the
            # rotate script checks again against the session, atomically.
            wanted = parse_scope(scope)
            if not wanted <= set(token_scope(claims.scope, claims.roles).split()):
                raise AuthError("invalid_scope")
            narrowed = format_scope(wanted)
        rotation = self.store.rotate(
            claims.subject,
            claims.session_id,
            claims.jti,
            new_refresh_jti=_new_id(),
            new_access_jti=_new_id(),
            issued_at=int(time.time()),
            grace_ms=self.settings.refresh_grace_seconds * 1000,
            idle_ms=self.settings.session_idle_timeout * 1000,
            scope=narrowed,
            transport=transport,
            # A proof with a bearer token binds nothing: the session stays bearer.
            proof=self.proofs.use(proof) if proof and claims.jkt else None,
        )
        if rotation.status is RotationStatus.GRACE and not grace_scope_fits(
            narrowed, rotation.pair
        ):
            # The pair is already minted: it cannot be narrowed without rotating.
            rotation = Rotation(RotationStatus.INVALID_SCOPE)
        emit(
            REFRESH_EVENTS[rotation.status],
            user_id=claims.subject,
            session_id=claims.session_id,
            ip=client.ip,
        )
        if rotation.status in PROOF_REFUSALS:
            raise refuse(
                PROOF_REFUSALS[rotation.status],
                token_endpoint=True,
                user_id=claims.subject,
                session_id=claims.session_id,
            )
        if rotation.pair is None:
            raise AuthError(REFRESH_FAILURES[rotation.status])
        pair = rotation.pair
        return mint_pair(
            user_id=claims.subject,
            session_id=claims.session_id,
            roles=pair.roles,
            refresh_jti=pair.refresh_jti,
            access_jti=pair.access_jti,
            issued_at=pair.issued_at,
            session_expires_at=pair.session_expires_ms // 1000,
            # The session's, never above the service's (which may have been lowered).
            access_ttl=min(
                pair.access_ttl or self.settings.access_token_ttl, self.settings.access_token_ttl
            ),
            client_id=pair.client_id or DEFAULT_CLIENT_ID,
            scope=token_scope(pair.scope, pair.roles),
            now=int(time.time()),
            jkt=pair.jkt,
        )

    # -- protected requests -----------------------------------------------------
    def authenticate(
        self, access_token: str, *, scheme: str = "bearer", proof: Proof | None = None
    ) -> Principal:
        """Verify an access token and check it is not revoked, in one Redis round trip.

        A bound token (``cnf.jkt``) must come with the ``DPoP`` scheme and a ``proof``
        by its key (remembered, so it cannot be replayed); an unbound one with ``Bearer``.
        """
        claims = verify(access_token, ACCESS)
        if (claims.jkt is None) != (scheme == "bearer"):
            if claims.jkt is not None:
                emit("dpop_refused", reason="bearer_scheme")
            raise AuthError("token_invalid")
        require_key(claims.jkt, proof, token_endpoint=False)
        status, username = self.store.check_access(
            claims.subject,
            claims.session_id,
            claims.jti,
            proof=self.proofs.use(proof) if proof and claims.jkt else None,
        )
        if status in PROOF_REFUSALS:
            raise refuse(PROOF_REFUSALS[status], token_endpoint=False)
        if status is not AccessStatus.OK:
            raise AuthError(ACCESS_FAILURES[status])
        return Principal(
            user_id=claims.subject,
            username=username or "",
            roles=claims.roles,
            session_id=claims.session_id,
            token_id=claims.jti,
            expires_at=claims.expires_at,
            client_id=claims.client_id or DEFAULT_CLIENT_ID,
            scopes=frozenset(token_scope(claims.scope, claims.roles).split()),
            jkt=claims.jkt,
        )

    def logout(self, principal: Principal) -> None:
        """End the caller's session and denylist its access token until it expires."""
        self.store.end_session(
            principal.user_id,
            principal.session_id,
            deny_jti=principal.token_id,
            deny_ttl_ms=denylist_ttl_ms(principal.expires_at, self.settings.jwt_leeway),
        )
        emit(
            "session_revoked",
            user_id=principal.user_id,
            session_id=principal.session_id,
            reason="logout",
        )

    def logout_by_refresh_token(
        self, refresh_token: str, csrf_value: str, *, proof: Proof | None = None
    ) -> None:
        """End the session a (cookie) refresh token belongs to; the CSRF value must match.

        A bound session also needs a ``proof`` by its key: a copied cookie ends nothing.
        """
        claims = verify(refresh_token, REFRESH, csrf_value=csrf_value)
        require_key(claims.jkt, proof, token_endpoint=False)
        self.store.end_session(claims.subject, claims.session_id)
        emit(
            "session_revoked",
            user_id=claims.subject,
            session_id=claims.session_id,
            reason="logout",
        )

    def logout_all(self, principal: Principal) -> None:
        """End every session of the user and every access token issued before now: O(1)."""
        self.store.end_all_sessions(principal.user_id)
        emit("logout_all", user_id=principal.user_id)

    def users(self) -> list[User]:
        """Every account (admin listing)."""
        return self.store.list_users()

    def redis_ready(self) -> bool:
        """True when Redis answers (a Redis error propagates as an outage)."""
        return self.store.ping()

    def list_sessions(self, principal: Principal) -> list[dict[str, object]]:
        """The caller's live sessions, the current one flagged."""
        return self.sessions_of(principal.user_id, current_session_id=principal.session_id)

    def sessions_of(
        self, user_id: str, *, current_session_id: str | None = None
    ) -> list[dict[str, object]]:
        """The live sessions of ``user_id``, newest first; ``current_session_id`` flagged."""
        return [
            {
                "session_id": s.session_id,
                "device_id": s.device_id,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "created": s.created_ms // 1000,
                "last_refresh": s.last_refresh_ms // 1000,
                "expires": s.expires_ms // 1000,
                "client_id": s.client_id or DEFAULT_CLIENT_ID,
                "bound": s.bound,
                "current": s.session_id == current_session_id,
            }
            for s in self.store.list_sessions(
                user_id, idle_ms=self.settings.session_idle_timeout * 1000
            )
        ]

    def end_session(self, principal: Principal, session_id: str) -> None:
        """End one of the caller's own sessions; another user's id is simply not found."""
        if not _SESSION_ID_RE.match(session_id) or not self.store.end_session(
            principal.user_id, session_id
        ):
            raise AuthError("not_found")
        emit(
            "session_revoked",
            user_id=principal.user_id,
            session_id=session_id,
            reason="user_request",
        )

    def change_password(
        self, principal: Principal, old_password: str, new_password: str, client: Client
    ) -> None:
        """Change the password after checking the old one; end every other session.

        Wrong old passwords count against the same throttles as failed logins, so a
        stolen access token cannot be used to guess the password.
        """
        user = self.store.get_user(principal.user_id)
        if user is None:
            raise AuthError("session_revoked")
        attempt = self._attempt(user.username, client)
        with self.attempts.handed_back_if_cut_off(attempt):
            self.attempts.begin(attempt, client.ip, flow="password_change", lookup=False)
            if not self.passwords.verify(user.password_hash, old_password):
                emit("password_change_failed", user_id=user.id, ip=client.ip)
                raise AuthError(
                    "validation_failed",
                    fields={"old_password": ["The current password is wrong."]},
                )
            self.attempts.settle(attempt)
        # Compare-and-set against the hash just verified: an admin reset landing during
        # the (slow) check must not be silently overwritten.
        status = self.store.end_all_sessions(
            user.id,
            keep_sid=principal.session_id,
            new_password_hash=self.passwords.hash(new_password),
            verified_hash=user.password_hash,
        )
        if status is RevocationStatus.CHANGED:
            # A parallel login upgraded the hash of the same password: nothing changed,
            # and the same request succeeds when sent again.
            raise AuthError(
                "validation_failed",
                fields={"old_password": ["The password changed meanwhile; try again."]},
            )
        if status is not RevocationStatus.DONE:
            # REVOKED: an admin reset won and ended this session; GONE: user deleted.
            raise AuthError("session_revoked")
        emit("password_changed", user_id=user.id, ip=client.ip)

    # -- administration (CLI and /api/v1/admin) ------------------------------------
    def add_user(
        self,
        username: str,
        password: str,
        roles: tuple[str, ...] = (),
        *,
        actor: Actor = CLI,
    ) -> User:
        """Create an account; InvalidUsername or UsernameTaken (both ValueError) when it can't."""
        name = normalize_username(username)
        if not _USERNAME_RE.match(name):
            raise InvalidUsername(
                "username must be 1-64 characters of a-z 0-9 . _ @ + - "
                "(after NFKC normalisation and case folding)"
            )
        _check_password_length(password)
        uid = uuid.uuid4().hex
        if not self.store.create_user(uid, name, self.passwords.hash(password), roles):
            raise UsernameTaken(f"username {name!r} is taken")
        emit("user_created", user_id=uid, **actor.fields())
        user = self.store.get_user(uid)
        assert user is not None  # noqa: S101 - just written
        return user

    def find_user(self, username: str) -> User:
        """The account named ``username``; LookupError when there is none."""
        uid = self.store.find_user_id(normalize_username(username))
        user = self.store.get_user(uid) if uid else None
        if user is None:
            raise LookupError(f"no user {username!r}")
        return user

    def reset_password(self, username: str, password: str, *, actor: Actor = CLI) -> None:
        """Set a new password (admin) and end every session of the account."""
        _check_password_length(password)
        user = self.find_user(username)
        status = self.store.end_all_sessions(
            user.id, new_password_hash=self.passwords.hash(password)
        )
        if status is RevocationStatus.GONE:
            raise LookupError(f"no user {username!r}")
        emit("logout_all", user_id=user.id, reason="password_reset", **actor.fields())

    def end_sessions_of(self, username: str, *, actor: Actor = CLI) -> None:
        """End every session of the account (admin), O(1) like a logout-all."""
        user = self.find_user(username)
        if self.store.end_all_sessions(user.id) is RevocationStatus.GONE:
            raise LookupError(f"no user {username!r}")
        emit("logout_all", user_id=user.id, reason="admin_request", **actor.fields())

    def set_disabled(self, username: str, disabled: bool, *, actor: Actor = CLI) -> None:
        """Disable (ending every session) or re-enable an account."""
        user = self.find_user(username)
        if not self.store.set_disabled(user.id, disabled):
            raise LookupError(f"no user {username!r}")
        if disabled:
            emit("logout_all", user_id=user.id, reason="account_disabled", **actor.fields())
        else:
            emit("account_enabled", user_id=user.id, **actor.fields())

    def delete_user(self, username: str, *, actor: Actor = CLI) -> None:
        """Delete an account; its sessions end with it."""
        user = self.find_user(username)
        self.store.delete_user(user.id, user.username)
        emit("logout_all", user_id=user.id, reason="account_deleted", **actor.fields())
