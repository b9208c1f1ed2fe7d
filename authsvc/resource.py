"""For resource servers: verify a DPoP-bound access token offline, from the JWKS.

A service that receives ``Authorization: DPoP <token>`` and a ``DPoP`` proof can check
both without calling authsvc (RFC 9449 section 7)::

    from authsvc.resource import DPoPResource, ResourceError

    resource = DPoPResource(jwks=fetch_jwks, issuer="authsvc", audience="authsvc")
    try:
        claims = resource.verify(
            authorization=request.headers.get("Authorization"),
            proof=request.headers.get("DPoP"),
            method=request.method,
            url=request.base_url,  # as the client saw it (scheme, host, path)
        )
    except ResourceError as error:
        return 401, {"WWW-Authenticate": error.challenge}

It checks the token's signature with the key its ``kid`` names in the JWKS (RS256,
ES256 or EdDSA), ``iss``, ``aud``, ``exp``/``nbf``, ``typ: at+jwt`` and ``type: access``;
then the proof (:mod:`authsvc.dpop`: signature, ``htm``, ``htu``, ``iat``, ``ath``) and
that the proof's key is the token's ``cnf.jkt``. A proof's ``jti`` is remembered in a
bounded in-process :class:`ReplayCache` (several processes: subclass it over a shared
store). What it cannot see offline: a logout or revocation before the token expires.
Use introspection (``/api/v1/token/introspect``) where that matters.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from authsvc.dpop import ALGORITHMS as PROOF_ALGORITHMS
from authsvc.dpop import ProofError, verify_proof

ACCESS_TYP = "at+jwt"
TOKEN_ALGORITHMS = ("RS256", "ES256", "EdDSA")
Jwks = Mapping[str, Any]


class ResourceError(ValueError):
    """A refused request; ``error`` is the RFC 9449 / RFC 6750 error code."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(f"{error}: {reason}")
        self.error = error
        self.reason = reason

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value to answer with (RFC 9449 section 7.1)."""
        return f'DPoP algs="{" ".join(PROOF_ALGORITHMS)}", error="{self.error}"'


class ReplayCache:
    """Proof ids seen in the last ``window`` seconds, in this process; bounded in size."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def first_use(self, replay_id: str, until: float, now: float) -> bool:
        """True the first time ``replay_id`` is seen (remembered until ``until``)."""
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now or len(self._seen) >= self._max
            ):
                self._seen.popitem(last=False)
            if replay_id in self._seen:
                return False
            self._seen[replay_id] = until
            return True


class DPoPResource:
    """Verifies DPoP-bound access tokens of one authsvc issuer, offline."""

    def __init__(
        self,
        *,
        jwks: Jwks | Callable[[], Jwks],
        issuer: str,
        audience: str,
        leeway: int = 30,
        proof_window: int = 60,
        replay: ReplayCache | None = None,
    ) -> None:
        self._jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.window = proof_window
        self.replay = ReplayCache() if replay is None else replay

    def _key(self, kid: Any) -> Any:
        jwks = self._jwks() if callable(self._jwks) else self._jwks
        for entry in jwks.get("keys", []):
            if isinstance(entry, dict) and entry.get("kid") == kid:
                return jwt.PyJWK(entry).key
        raise ResourceError("invalid_token", "unknown kid")

    def verify_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid, DPoP-bound access token; else ResourceError."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != ACCESS_TYP or header.get("alg") not in TOKEN_ALGORITHMS:
                raise ResourceError("invalid_token", "not an access token")
            claims = jwt.decode(
                token,
                self._key(header.get("kid")),
                algorithms=[header["alg"]],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "jti", "cnf"]},
            )
        except jwt.PyJWTError as error:
            raise ResourceError("invalid_token", type(error).__name__) from None
        cnf = claims.get("cnf")
        if claims.get("type") != "access" or not isinstance(cnf, dict):
            raise ResourceError("invalid_token", "not a DPoP-bound access token")
        if not isinstance(cnf.get("jkt"), str):
            raise ResourceError("invalid_token", "cnf without jkt")
        return claims

    def verify(
        self,
        *,
        authorization: str | None,
        proof: str | None,
        method: str,
        url: str,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Check ``Authorization: DPoP <token>`` and its ``DPoP`` proof; the token's claims."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "dpop" or not token.strip():
            raise ResourceError("invalid_token", "the DPoP scheme is required")
        token = token.strip()
        claims = self.verify_token(token)
        if not proof:
            raise ResourceError("invalid_dpop_proof", "missing")
        now = time.time() if now is None else now
        try:
            checked = verify_proof(
                proof, method=method, url=url, now=now, window=self.window, access_token=token
            )
        except ProofError as error:
            raise ResourceError("invalid_dpop_proof", error.reason) from None
        if checked.jkt != claims["cnf"]["jkt"]:
            raise ResourceError("invalid_dpop_proof", "key_mismatch")
        if self.replay is not None and not self.replay.first_use(
            checked.replay_id(), checked.iat + self.window + 1, now
        ):
            raise ResourceError("invalid_dpop_proof", "replay")
        return claims
