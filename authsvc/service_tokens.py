"""The token flows: refresh rotation, access checks on protected requests, logout."""

from __future__ import annotations

from authsvc.binding import refuse, require_key
from authsvc.clients import (
    DEFAULT_CLIENT_ID,
    format_scope,
    grace_scope_fits,
    parse_scope,
    token_scope,
)
from authsvc.dpop import Proof
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.oauth_errors import OAuthError
from authsvc.outcomes import ACCESS_FAILURES, PROOF_REFUSALS, REFRESH_EVENTS, REFRESH_FAILURES
from authsvc.service_core import ServiceCore
from authsvc.service_model import Client, Principal, new_id
from authsvc.store import AccessStatus, Rotation, RotationStatus
from authsvc.tokens import ACCESS, REFRESH, TokenPair, denylist_ttl_ms, mint_pair, verify


class TokenFlows(ServiceCore):
    """Rotating a refresh token, checking an access token, ending sessions by token."""

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
            new_refresh_jti=new_id(),
            new_access_jti=new_id(),
            issued_at=self._now(),
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
            now=self._now(),
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
