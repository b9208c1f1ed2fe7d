"""Token introspection (RFC 7662) and revocation (RFC 7009) for resource servers.

Unlike JWKS verification, these read the revocation store, so a logged-out token
is inactive at once. Callers authenticate with HTTP Basic (or, on ``/oauth/*``, the
form's ``client_id`` / ``client_secret``): resource servers configured in
``AUTHSVC_TOKEN_CLIENTS`` may introspect and revoke any token; registered confidential
clients (:mod:`authsvc.client_credentials`) may introspect any token and revoke their
own (``azp``), as RFC 7009 section 2.1 asks. Both the enveloped ``/api/v1/token/*`` and
the plain ``/oauth/*`` endpoints call this module.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authsvc.clients import DEFAULT_CLIENT_ID, token_scope
from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.store import AccessStatus, Store
from authsvc.tokens import ACCESS, CLIENT_CREDENTIALS, REFRESH, Claims, denylist_ttl_ms, verify

if TYPE_CHECKING:
    from authsvc.client_credentials import ClientCredentials

_HINTS = {"access_token": ACCESS, "refresh_token": REFRESH}
_INACTIVE: dict[str, Any] = {"active": False}


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of introspection or revocation."""

    client_id: str
    # A resource server of AUTHSVC_TOKEN_CLIENTS (any token) or a registered client (its own).
    trusted: bool


class TokenInspector:
    """Answers "is this token live?" and "revoke this token" for authenticated clients."""

    def __init__(
        self, settings: Settings, store: Store, credentials: ClientCredentials | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.credentials = credentials
        self._clients = settings.token_client_secrets

    def authenticate_client(self, client_id: str | None, secret: str | None) -> str:
        """The client id when the credentials match; else ``invalid_client``."""
        return self.authenticate(client_id, secret).client_id

    def authenticate(self, client_id: str | None, secret: str | None) -> Caller:
        """The caller: a configured resource server or a registered confidential client.

        ``invalid_client`` when the credentials match neither.
        """
        expected = self._clients.get(client_id or "")
        # Compare even for an unknown id, so the answer time does not tell ids apart.
        matches = hmac.compare_digest((expected or "\0unknown").encode(), (secret or "").encode())
        if expected is not None and matches:
            return Caller(client_id or "", trusted=True)
        if expected is None and self.credentials is not None and client_id and secret:
            return Caller(self.credentials.authenticate(client_id, secret).id, trusted=False)
        raise AuthError("invalid_client")

    def _claims(self, token: str, hint: str | None) -> Claims | None:
        first = _HINTS.get(hint or "", ACCESS)
        for kind in (first, REFRESH if first == ACCESS else ACCESS):
            try:
                return verify(token, kind, machine=self.credentials is not None)
            except AuthError:
                continue
        return None

    def introspect(self, token: str, hint: str | None = None) -> dict[str, Any]:
        """RFC 7662: the claims of a live token, or only ``active: false`` (no reason)."""
        claims = self._claims(token, hint)
        if claims is None:
            return dict(_INACTIVE)
        if claims.grant == CLIENT_CREDENTIALS and self.credentials is not None:
            return self.credentials.introspect(claims) or dict(_INACTIVE)
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

    def revoke(
        self,
        token: str,
        hint: str | None = None,
        *,
        client_id: str = "",
        caller: Caller | None = None,
    ) -> None:
        """RFC 7009: a refresh token ends its session, an access token is denylisted.

        Unknown, invalid or expired tokens are silently accepted (nothing to revoke). A
        registered client (``caller`` not trusted) may revoke only tokens issued to it
        (``azp``): another's is ``forbidden`` (``unauthorized_client`` on ``/oauth``).
        """
        if caller is not None:
            client_id = caller.client_id
        claims = self._claims(token, hint)
        if claims is None:
            return
        foreign = (claims.client_id or DEFAULT_CLIENT_ID) != (caller and caller.client_id)
        if caller is not None and not caller.trusted and foreign:
            raise AuthError("forbidden")
        if claims.grant == CLIENT_CREDENTIALS and self.credentials is not None:
            self.credentials.revoke(claims)
            emit("token_revoked", client_id=client_id, subject_client_id=claims.subject)
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
