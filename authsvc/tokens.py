"""Minting and verifying the JWTs, strictly (RFC 8725), once each per request.

Every claim is set explicitly, so the same identifiers always mint the same token:
that is how a refresh retried within the grace window gets back the pair it lost.
:class:`TokenSigner` writes the bytes flask-jwt-extended wrote (whose settings stay
configured for the app); :class:`TokenVerifier` parses a token once and checks its
signature with PyJWT's algorithm for the configured key ring. Both need an app context.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt
import orjson
from flask import Flask, current_app, g, has_request_context
from flask_jwt_extended import JWTManager

from authsvc.config import Settings
from authsvc.errors import AuthError
from authsvc.keys import KeyRing, SigningKey

ACCESS = "access"
REFRESH = "refresh"
# RFC 9068 explicit typing, so an access token cannot pass for another JWT kind.
ACCESS_TYP = "at+jwt"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "type", "roles")
# A machine token (grant_type=client_credentials, authsvc/client_credentials.py) has no
# user, session or roles: its ``sub`` is the client, its ``gty`` says so.
CLIENT_CREDENTIALS = "client_credentials"
MACHINE_REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "type", "azp")
MAX_TOKEN_LENGTH = 4096
VERIFIER_EXTENSION = "authsvc_token_verifier"
SIGNER_EXTENSION = "authsvc_token_signer"
_HMAC_DIGESTS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
# Headers remembered by a verifier (a key ring holds a few keys, each one header).
MAX_KNOWN_HEADERS = 64
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
    scope: str = ""
    # The RFC 7638 thumbprint of the key the session is bound to (DPoP); None: bearer.
    jkt: str | None = None

    def as_dict(self, *, include_refresh_token: bool = True) -> dict[str, Any]:
        """The login/refresh response ``data``; cookie transport leaves the refresh token out."""
        data: dict[str, Any] = {"access_token": self.access_token}
        if include_refresh_token:
            data["refresh_token"] = self.refresh_token
        data.update(
            # RFC 6750 or RFC 9449 section 5: the scheme to present the access token with.
            token_type="DPoP" if self.jkt else "Bearer",
            expires_in=self.access_expires_in,
            refresh_expires_in=self.refresh_expires_in,
            session_id=self.session_id,
            scope=self.scope,
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
    # None in a token minted before clients existed (no azp / scope claim).
    client_id: str | None = None
    scope: str | None = None
    # cnf.jkt (RFC 9449 section 6.1): the key every use must prove; None: a bearer token.
    jkt: str | None = None
    # CLIENT_CREDENTIALS for a machine token (subject = the client, no session); else None.
    grant: str | None = None


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
    app.extensions[VERIFIER_EXTENSION] = TokenVerifier(settings, keyring)
    app.extensions[SIGNER_EXTENSION] = TokenSigner(settings, keyring)
    return manager


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenSigner:
    """Signs tokens exactly as flask-jwt-extended did (same claims, header, bytes), faster.

    flask-jwt-extended re-read its config, ran its callbacks and had PyJWT prepare the
    key on every token (for HMAC a JSON parse of the secret, for RSA a PEM load); here
    each kid's key is prepared once and the JSON is encoded by orjson.
    """

    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._keyring = keyring
        self._implementation = jwt.get_algorithm_by_name(settings.jwt_algorithm)
        self._prepared: dict[str, tuple[SigningKey, Any]] = {}

    def active_key(self) -> tuple[SigningKey, Any]:
        """The key that signs now and PyJWT's prepared form of it."""
        active = self._keyring.active
        cached = self._prepared.get(active.kid)
        if cached is None or cached[0] is not active:
            cached = (active, self._implementation.prepare_key(active.signing_key))
            self._prepared[active.kid] = cached
        return cached

    def sign(self, key: tuple[SigningKey, Any], claims: dict[str, Any], *, typ: str = "JWT") -> str:
        """A compact JWS of ``claims`` under ``key`` (from :meth:`active_key`)."""
        signing_key, prepared = key
        # Header keys sorted, as PyJWT writes them.
        header = {"alg": self.algorithm, "kid": signing_key.kid, "typ": typ}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
        signature = self._implementation.sign(signing_input.encode("ascii"), prepared)
        return f"{signing_input}.{_b64(signature)}"

    def claims(
        self, token_type: str, user_id: str, jti: str, issued_at: int, expires_at: int
    ) -> dict[str, Any]:
        """The registered claims, in flask-jwt-extended's order (sid, roles, azp, scope follow)."""
        return {
            "fresh": False,
            "iat": issued_at,
            "jti": jti,
            "type": token_type,
            "sub": user_id,
            "nbf": issued_at,
            "aud": self.audience,
            "iss": self.issuer,
            "exp": expires_at,
        }


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
    client_id: str,
    scope: str,
    now: int | None = None,
    jkt: str | None = None,
) -> TokenPair:
    """Sign an access token and a refresh token from explicit identifiers and times.

    The refresh token expires with the session (absolute lifetime); the access token
    after ``access_ttl`` but never after the session. ``expires_in`` values count from
    ``now`` (default: ``issued_at``; a replayed pair passes the current time). Both
    carry ``azp`` (``client_id``) and ``scope`` (space-separated), and with ``jkt``
    (a DPoP-bound session) ``cnf: {"jkt": ...}``.
    """
    signer: TokenSigner = current_app.extensions[SIGNER_EXTENSION]
    # One key for both tokens, so a rotation picked up meanwhile cannot split a pair.
    key = signer.active_key()
    access_exp = min(issued_at + access_ttl, session_expires_at)
    roles_list = list(roles)
    access_claims = signer.claims(ACCESS, user_id, access_jti, issued_at, access_exp)
    common: dict[str, Any] = {
        "sid": session_id,
        "roles": roles_list,
        "azp": client_id,
        "scope": scope,
    }
    if jkt:
        common["cnf"] = {"jkt": jkt}
    access = signer.sign(key, {**access_claims, **common}, typ=ACCESS_TYP)
    csrf = csrf_token_for(refresh_jti)
    refresh_claims = signer.claims(REFRESH, user_id, refresh_jti, issued_at, session_expires_at)
    refresh = signer.sign(key, {**refresh_claims, **common, "csrf": csrf})
    now = issued_at if now is None else now
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        access_expires_in=max(access_exp - now, 0),
        refresh_expires_in=max(session_expires_at - now, 0),
        session_id=session_id,
        csrf_token=csrf,
        scope=scope,
        jkt=jkt or None,
    )


def mint_client_token(*, client_id: str, jti: str, issued_at: int, ttl: int, scope: str) -> str:
    """Sign a client-credentials access token (RFC 9068 shape): ``sub`` = ``azp`` = client.

    No session, roles or refresh token: ``gty`` marks it, so the user API refuses it.
    """
    signer: TokenSigner = current_app.extensions[SIGNER_EXTENSION]
    claims = signer.claims(ACCESS, client_id, jti, issued_at, issued_at + ttl)
    extra = {"azp": client_id, "client_id": client_id, "scope": scope, "gty": CLIENT_CREDENTIALS}
    return signer.sign(signer.active_key(), {**claims, **extra}, typ=ACCESS_TYP)


def denylist_ttl_ms(expires_at: int, leeway: int) -> int:
    """How long a revoked access token must stay denylisted: until it expires, leeway included."""
    return max(expires_at - int(time.time()) + leeway, 1) * 1000


def csrf_token_for(refresh_jti: str) -> str:
    """The double-submit CSRF value bound to a refresh token.

    Derived from the (secret, random) jti, so a replayed pair carries the same value,
    and one-way, so the readable CSRF cookie does not reveal the jti.
    """
    return hashlib.sha256(f"authsvc-csrf:{refresh_jti}".encode()).hexdigest()[:32]


def verify(
    token: str, expected_type: str, *, csrf_value: str | None = None, machine: bool = False
) -> Claims:
    """Verify ``token`` with the current app's :class:`TokenVerifier`; raise AuthError.

    A machine token (client credentials) passes only with ``machine=True``: the user
    API has no user to give it, so it is ``wrong_token_type`` there by default.
    """
    verifier: TokenVerifier = current_app.extensions[VERIFIER_EXTENSION]
    return verifier.verify(token, expected_type, csrf_value=csrf_value, machine=machine)


def _segment(segment: str) -> bytes:
    """Decode one base64url segment already matched by ``_COMPACT_JWS`` (alphabet checked).

    Canonical only, as PyJWT insists: an encoding whose unused trailing bits are set
    would let one token have several spellings.
    """
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64 length")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode("ascii"):
        raise ValueError("non-canonical base64")
    return raw


def _confirmation(payload: dict[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a signed payload; a ``cnf`` of another shape is an invalid token."""
    if "cnf" not in payload:
        return None
    cnf = payload["cnf"]
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not 0 < len(jkt) <= 64:
        raise AuthError("token_invalid")
    return jkt


def _numeric_date(value: Any) -> float:
    """A NumericDate claim (RFC 7519 section 2): a finite JSON number, never a string or bool."""
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError("NumericDate claims must be JSON numbers")
    return value


class TokenVerifier:
    """Checks a token once per request: one parse, one signature check, every claim.

    PyJWT's algorithm objects check the signature (with keys from the key ring, prepared
    once per kid); the parsing and the claim checks are done here so each happens once
    (flask-jwt-extended's ``decode_token`` decoded a token three times) and so the
    checks are exactly RFC 8725's: the one configured algorithm, the token's own kid,
    iss and aud, exp/nbf/iat as JSON numbers within the leeway, every required claim
    in the signed payload, ``typ`` for access tokens, and the double-submit CSRF value.
    """

    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self._keyring = keyring
        self._implementation = jwt.get_algorithm_by_name(settings.jwt_algorithm)
        # HS256/384/512: one C call (hmac.digest) where PyJWT builds an HMAC object.
        self._hmac_digest = _HMAC_DIGESTS.get(settings.jwt_algorithm)
        # Header segment -> its header, for headers that came with a valid signature:
        # every token signed with one key has the same header.
        self._headers: dict[str, dict[str, Any]] = {}
        # kid -> (the key ring's key object, PyJWT's prepared key): preparing an HMAC
        # key is costly, and the key ring hands out a new object after a reload.
        self._prepared: dict[str, tuple[Any, Any]] = {}

    def _key(self, kid: Any) -> Any:
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("kid must be a string")
        raw = self._keyring.verifying_key(kid)
        cached = self._prepared.get(kid)
        if cached is None or cached[0] is not raw:
            cached = (raw, self._implementation.prepare_key(raw))
            self._prepared[kid] = cached
        return cached[1]

    def verify(
        self,
        token: str,
        expected_type: str,
        *,
        csrf_value: str | None = None,
        machine: bool = False,
    ) -> Claims:
        """The claims of ``token`` if it is a valid token of ``expected_type``; else AuthError.

        With ``csrf_value`` (cookie transport) the token's ``csrf`` claim must match it.
        A machine token (``gty`` client_credentials) is accepted only with ``machine``.
        """
        if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.match(token):
            raise AuthError("token_invalid")
        try:
            payload, header = self._signed_parts(token)
        except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError) as error:
            raise AuthError("token_invalid") from error
        self._check_times(payload)
        if "gty" in payload:
            return self._machine_claims(payload, header, expected_type, machine=machine)
        if any(name not in payload for name in REQUIRED_CLAIMS):
            raise AuthError("token_invalid")
        if payload["iss"] != self.issuer or not self._audience_matches(payload["aud"]):
            raise AuthError("token_invalid")
        token_type = payload["type"]
        if token_type not in (ACCESS, REFRESH):
            raise AuthError("token_invalid")
        if token_type != expected_type:
            raise AuthError("wrong_token_type")
        if expected_type == ACCESS and header.get("typ") != ACCESS_TYP:
            raise AuthError("token_invalid")
        if csrf_value:
            self._check_csrf(payload, csrf_value)
        subject, session_id, jti, roles = (
            payload["sub"],
            payload["sid"],
            payload["jti"],
            payload["roles"],
        )
        # Optional: tokens minted before clients existed carry neither.
        client_id, scope = payload.get("azp"), payload.get("scope")
        jkt = _confirmation(payload)
        if not (
            isinstance(subject, str)
            and isinstance(session_id, str)
            and isinstance(jti, str)
            and isinstance(roles, list)
            and all(isinstance(r, str) for r in roles)
            and subject
            and session_id
            and jti
            and (client_id is None or (isinstance(client_id, str) and client_id))
            and (scope is None or isinstance(scope, str))
        ):
            raise AuthError("token_invalid")
        return Claims(
            subject=subject,
            session_id=session_id,
            jti=jti,
            token_type=token_type,
            roles=tuple(roles),
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
            client_id=client_id,
            scope=scope,
            jkt=jkt,
        )

    def _machine_claims(
        self, payload: dict[str, Any], header: dict[str, Any], expected_type: str, *, machine: bool
    ) -> Claims:
        """The claims of a client-credentials token: an access token of a client, no session."""
        if payload["gty"] != CLIENT_CREDENTIALS or any(
            name not in payload for name in MACHINE_REQUIRED_CLAIMS
        ):
            raise AuthError("token_invalid")
        if payload["iss"] != self.issuer or not self._audience_matches(payload["aud"]):
            raise AuthError("token_invalid")
        if payload["type"] != ACCESS or header.get("typ") != ACCESS_TYP:
            raise AuthError("token_invalid")
        if expected_type != ACCESS or not machine:
            raise AuthError("wrong_token_type")
        subject, jti, scope = payload["sub"], payload["jti"], payload.get("scope", "")
        if not (
            isinstance(subject, str)
            and subject
            and payload["azp"] == subject
            and isinstance(jti, str)
            and jti
            and isinstance(scope, str)
        ):
            raise AuthError("token_invalid")
        return Claims(
            subject=subject,
            session_id="",
            jti=jti,
            token_type=ACCESS,
            roles=(),
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
            client_id=subject,
            scope=scope,
            grant=CLIENT_CREDENTIALS,
        )

    def _signed_parts(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        header_segment, payload_segment, signature_segment = token.split(".")
        header = self._headers.get(header_segment)
        known = header is not None
        if header is None:
            header = self._accepted_header(header_segment)
        key = self._key(header.get("kid"))
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
        if not self._signature_matches(signing_input, key, _segment(signature_segment)):
            raise ValueError("bad signature")
        if not known:
            if len(self._headers) >= MAX_KNOWN_HEADERS:
                self._headers.clear()
            self._headers[header_segment] = header
        # Only a signed payload is parsed.
        payload = orjson.loads(_segment(payload_segment))
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
        return payload, header

    def _signature_matches(self, signing_input: bytes, key: Any, signature: bytes) -> bool:
        """The one signature check of a token (counted by tests/test_hot_path.py)."""
        if self._hmac_digest is not None:
            expected = hmac.digest(key, signing_input, self._hmac_digest)
            return hmac.compare_digest(expected, signature)
        return bool(self._implementation.verify(signing_input, key, signature))

    def _accepted_header(self, header_segment: str) -> dict[str, Any]:
        header = orjson.loads(_segment(header_segment))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        # The allowlist is exactly the configured algorithm: no `none`, no HS384 under an
        # HS256 key, no HMAC under an RSA public key (RFC 8725 section 3.1). Header
        # extensions (crit, b64) are never issued here, so a token naming one is refused.
        if header.get("alg") != self.algorithm or "crit" in header or "b64" in header:
            raise ValueError("algorithm or header not accepted")
        return header

    def _check_times(self, payload: dict[str, Any]) -> None:
        now = time.time()
        try:
            expires = _numeric_date(payload["exp"]) if "exp" in payload else None
            not_before = _numeric_date(payload["nbf"]) if "nbf" in payload else None
            issued = _numeric_date(payload["iat"]) if "iat" in payload else None
        except ValueError as error:
            raise AuthError("token_invalid") from error
        if expires is not None and expires <= now - self.leeway:
            raise AuthError("token_expired")
        if (not_before is not None and not_before > now + self.leeway) or (
            issued is not None and issued > now + self.leeway
        ):
            raise AuthError("token_invalid")

    def _audience_matches(self, audience: Any) -> bool:
        if isinstance(audience, str):
            return audience == self.audience
        return isinstance(audience, list) and self.audience in audience

    @staticmethod
    def _check_csrf(payload: dict[str, Any], csrf_value: str) -> None:
        claim = payload.get("csrf")
        if not isinstance(claim, str):
            raise AuthError("token_invalid")
        if not hmac.compare_digest(claim.encode(), csrf_value.encode()):
            raise AuthError("csrf_failed")
