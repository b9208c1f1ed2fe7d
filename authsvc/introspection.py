"""Token introspection (RFC 7662) and revocation (RFC 7009) for resource servers.

Unlike JWKS verification, these read the revocation store, so a logged-out token
is inactive at once. Callers are resource servers holding configured client
credentials.
"""

from __future__ import annotations

import hmac
from typing import Any

from authsvc.clients import DEFAULT_CLIENT_ID, token_scope
from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.store import AccessStatus, Store
from authsvc.tokens import ACCESS, REFRESH, Claims, denylist_ttl_ms, verify

_HINTS = {"access_token": ACCESS, "refresh_token": REFRESH}
_INACTIVE: dict[str, Any] = {"active": False}


class TokenInspector:
    """Answers "is this token live?" and "revoke this token" for trusted clients."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._clients = settings.token_client_secrets

    def authenticate_client(self, client_id: str | None, secret: str | None) -> str:
        """The client id when the HTTP Basic credentials match; else ``invalid_client``."""
        expected = self._clients.get(client_id or "")
        # Compare even for an unknown id, so the answer time does not tell ids apart.
        matches = hmac.compare_digest((expected or "\0unknown").encode(), (secret or "").encode())
        if expected is None or not matches:
            raise AuthError("invalid_client")
        return client_id or ""

    def _claims(self, token: str, hint: str | None) -> Claims | None:
        first = _HINTS.get(hint or "", ACCESS)
        for kind in (first, REFRESH if first == ACCESS else ACCESS):
            try:
                return verify(token, kind)
            except AuthError:
                continue
        return None

    def introspect(self, token: str, hint: str | None = None) -> dict[str, Any]:
        """RFC 7662: the claims of a live token, or only ``active: false`` (no reason)."""
        claims = self._claims(token, hint)
        if claims is None:
            return dict(_INACTIVE)
        jkt = claims.jkt
        if claims.token_type == ACCESS:
            status, username = self.store.check_access(
                claims.subject, claims.session_id, claims.jti, jkt=jkt
            )
            if status is not AccessStatus.OK:
                return dict(_INACTIVE)
        else:
            # Active exactly when /refresh would hand the token a pair: the current one,
            # or the previous one where the convergence rule allows (bound: with a proof
            # by the session's key, at any time; bearer: within the grace window).
            owner = self.store.current_refresh_owner(
                claims.subject,
                claims.session_id,
                claims.jti,
                idle_ms=self.settings.session_idle_timeout * 1000,
                grace_ms=self.settings.refresh_grace_seconds * 1000,
            )
            if owner is None or owner[1] != jkt:
                return dict(_INACTIVE)
            username = owner[0]
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "access_token" if claims.token_type == ACCESS else "refresh_token",
            "sub": claims.subject,
            "username": username,
            "sid": claims.session_id,
            "jti": claims.jti,
            "roles": list(claims.roles),
            # A token from before clients counts as the default client's.
            "client_id": claims.client_id or DEFAULT_CLIENT_ID,
            "azp": claims.client_id or DEFAULT_CLIENT_ID,
            "scope": token_scope(claims.scope, claims.roles),
            "iat": claims.issued_at,
            "nbf": claims.issued_at,
            "exp": claims.expires_at,
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
        }
        if jkt:
            # RFC 9449 section 6.2: the key every use of the token must prove.
            answer["cnf"] = {"jkt": jkt}
        return answer

    def revoke(self, token: str, hint: str | None = None, *, client_id: str = "") -> None:
        """RFC 7009: a refresh token ends its session, an access token is denylisted.

        Unknown, invalid or expired tokens are silently accepted (nothing to revoke).
        """
        claims = self._claims(token, hint)
        if claims is None:
            return
        if claims.token_type == REFRESH:
            self.store.end_session(claims.subject, claims.session_id)
            emit(
                "session_revoked",
                user_id=claims.subject,
                session_id=claims.session_id,
                reason="token_revoke",
                client_id=client_id,
            )
            return
        self.store.deny_access_token(
            claims.subject,
            claims.jti,
            ttl_ms=denylist_ttl_ms(claims.expires_at, self.settings.jwt_leeway),
        )
        emit(
            "token_revoked",
            user_id=claims.subject,
            session_id=claims.session_id,
            client_id=client_id,
        )
