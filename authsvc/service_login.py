"""The login flow: check a password, then open a session and mint its first pair."""

from __future__ import annotations

from collections.abc import Callable

from authsvc.binding import refuse
from authsvc.clients import (
    DEFAULT_CLIENT,
    check_requested,
    format_scope,
    granted_scopes,
    parse_scope,
    token_scope,
)
from authsvc.dpop import Proof
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.service_core import ServiceCore
from authsvc.service_model import MAX_USER_AGENT_LENGTH, Client, new_id, normalize_username
from authsvc.store import RegisteredClient, User
from authsvc.tokens import TokenPair, mint_pair


class LoginFlows(ServiceCore):
    """Logins and new sessions (the password grant and the other grants that open one)."""

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
        sid, refresh_jti, access_jti = new_id(), new_id(), new_id()
        issued_at = self._now()
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
