"""Minting and verifying the JWTs through flask-jwt-extended, configured strictly (RFC 8725).

Every claim is set explicitly, so the same identifiers always mint the same token:
that is how a refresh retried within the grace window gets back the pair it lost.
Needs an app context (flask-jwt-extended reads its settings from the app).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
from flask import Flask, g, has_request_context
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
)
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException

from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.keys import KeyRing, SigningKey

ACCESS = "access"
REFRESH = "refresh"
# RFC 9068 explicit typing, so an access token cannot pass for another JWT kind.
ACCESS_TYP = "at+jwt"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "type", "roles")
MAX_TOKEN_LENGTH = 4096
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class TokenPair:
    """An access + refresh token pair as handed to a client."""

    # Kept out of repr(): a pair printed into a log must not carry its tokens.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_in: int
    refresh_expires_in: int
    session_id: str
    csrf_token: str = field(repr=False)

    def as_dict(self, *, include_refresh_token: bool = True) -> dict[str, Any]:
        """The login/refresh response ``data``; cookie transport leaves the refresh token out."""
        data: dict[str, Any] = {"access_token": self.access_token}
        if include_refresh_token:
            data["refresh_token"] = self.refresh_token
        data.update(
            token_type="Bearer",  # noqa: S106 - the RFC 6750 scheme, not a secret
            expires_in=self.access_expires_in,
            refresh_expires_in=self.refresh_expires_in,
            session_id=self.session_id,
        )
        return data


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    subject: str
    session_id: str
    jti: str
    token_type: str
    roles: tuple[str, ...]
    issued_at: int
    expires_at: int


def configure_jwt(app: Flask, settings: Settings, keyring: KeyRing) -> JWTManager:
    """Set flask-jwt-extended up for exactly one algorithm, issuer and audience.

    Keys come from ``keyring``: every token names its key in the ``kid`` header, and
    verification uses exactly that key (an unknown kid is an invalid token).
    """
    app.config.update(
        JWT_SECRET_KEY=settings.jwt_secret or None,
        JWT_ALGORITHM=settings.jwt_algorithm,
        # The allowlist is exactly the configured algorithm: no `none`, no HS384
        # accepted under an HS256 key, no HMAC under an RSA public key (RFC 8725 3.1).
        JWT_DECODE_ALGORITHMS=[settings.jwt_algorithm],
        JWT_ENCODE_ISSUER=settings.jwt_issuer,
        JWT_DECODE_ISSUER=settings.jwt_issuer,
        JWT_ENCODE_AUDIENCE=settings.jwt_audience,
        JWT_DECODE_AUDIENCE=settings.jwt_audience,
        JWT_DECODE_LEEWAY=settings.jwt_leeway,
        JWT_ENCODE_NBF=True,
        JWT_IDENTITY_CLAIM="sub",
        JWT_TOKEN_LOCATION=["headers"],
        # No random csrf claim: minting must be deterministic for grace-window replays
        # (the refresh token's csrf claim is derived from its jti instead).
        JWT_COOKIE_CSRF_PROTECT=False,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.access_token_ttl),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings.refresh_token_ttl),
    )
    manager = JWTManager(app)

    def signing_key() -> SigningKey:
        # One key per request, so a token's kid and its signature always agree even if
        # another thread picks up a rotation meanwhile (gthread workers).
        if has_request_context():
            return g.setdefault("authsvc_signing_key", keyring.active)
        return keyring.active

    manager.encode_key_loader(lambda _identity: signing_key().signing_key)
    manager.additional_headers_loader(lambda _identity: {"kid": signing_key().kid})
    manager.decode_key_loader(lambda header, _payload: keyring.verifying_key(header.get("kid")))
    return manager


def mint_pair(
    *,
    user_id: str,
    session_id: str,
    roles: tuple[str, ...],
    refresh_jti: str,
    access_jti: str,
    issued_at: int,
    session_expires_at: int,
    access_ttl: int,
    now: int | None = None,
) -> TokenPair:
    """Sign an access token and a refresh token from explicit identifiers and times.

    The refresh token expires with the session (absolute lifetime); the access token
    after ``access_ttl`` but never after the session. ``expires_in`` values count from
    ``now`` (default: ``issued_at``; a replayed pair passes the current time).
    """
    access_exp = min(issued_at + access_ttl, session_expires_at)
    common = {"iat": issued_at, "nbf": issued_at, "sid": session_id, "roles": list(roles)}
    access = create_access_token(
        identity=user_id,
        additional_claims={**common, "jti": access_jti, "exp": access_exp},
        additional_headers={"typ": ACCESS_TYP},
    )
    csrf = csrf_token_for(refresh_jti)
    refresh = create_refresh_token(
        identity=user_id,
        additional_claims={**common, "jti": refresh_jti, "exp": session_expires_at, "csrf": csrf},
    )
    now = issued_at if now is None else now
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        access_expires_in=max(access_exp - now, 0),
        refresh_expires_in=max(session_expires_at - now, 0),
        session_id=session_id,
        csrf_token=csrf,
    )


def denylist_ttl_ms(expires_at: int, leeway: int) -> int:
    """How long a revoked access token must stay denylisted: until it expires, leeway included."""
    return max(expires_at - int(time.time()) + leeway, 1) * 1000


def csrf_token_for(refresh_jti: str) -> str:
    """The double-submit CSRF value bound to a refresh token.

    Derived from the (secret, random) jti, so a replayed pair carries the same value,
    and one-way, so the readable CSRF cookie does not reveal the jti.
    """
    return hashlib.sha256(f"authsvc-csrf:{refresh_jti}".encode()).hexdigest()[:32]


def verify(token: str, expected_type: str, *, csrf_value: str | None = None) -> Claims:
    """Check signature, algorithm, iss, aud, times, required claims and type; raise AuthError.

    With ``csrf_value`` (cookie transport), flask-jwt-extended's double-submit check
    also compares it with the token's ``csrf`` claim.
    """
    if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.match(token):
        raise AuthError("token_invalid")
    try:
        payload = decode_token(token, csrf_value=csrf_value)
    except CSRFError as error:
        raise AuthError("csrf_failed") from error
    except jwt.ExpiredSignatureError as error:
        raise AuthError("token_expired") from error
    except (jwt.InvalidTokenError, JWTExtendedException, ValueError, TypeError) as error:
        raise AuthError("token_invalid") from error
    # flask-jwt-extended fills in a missing `type` ("access") and `jti`, so presence
    # is checked on the claims as signed, not on its decoded copy.
    signed = jwt.decode_complete(token, options={"verify_signature": False})
    if any(name not in signed["payload"] for name in REQUIRED_CLAIMS):
        raise AuthError("token_invalid")
    if payload["type"] not in (ACCESS, REFRESH):
        raise AuthError("token_invalid")
    if payload["type"] != expected_type:
        raise AuthError("wrong_token_type")
    if expected_type == ACCESS and signed["header"].get("typ") != ACCESS_TYP:
        raise AuthError("token_invalid")
    roles = payload["roles"]
    if not (
        isinstance(payload["sub"], str)
        and isinstance(payload["sid"], str)
        and isinstance(payload["jti"], str)
        and isinstance(roles, list)
        and all(isinstance(r, str) for r in roles)
        and payload["sub"]
        and payload["sid"]
        and payload["jti"]
    ):
        raise AuthError("token_invalid")
    return Claims(
        subject=payload["sub"],
        session_id=payload["sid"],
        jti=payload["jti"],
        token_type=payload["type"],
        roles=tuple(roles),
        issued_at=int(payload["iat"]),
        expires_at=int(payload["exp"]),
    )
