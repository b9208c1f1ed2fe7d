"""Sessions bound to a device key (DPoP, RFC 9449): the service's policy over proofs.

:mod:`authsvc.dpop` says whether one proof is valid; this module applies the settings
(the ``iat`` window, stateless server nonces), turns a refused proof into the
``invalid_dpop_proof`` / ``use_dpop_nonce`` envelope (401 at a resource, 400 at login and
refresh, as RFC 9449 sections 5 and 7 say), counts each refusal by reason, and decides
whether a token may be used with the proof that came with it. No request objects here:
:mod:`authsvc.auth` reads the headers.
"""

from __future__ import annotations

import math
import secrets
import time

from authsvc.config import Settings
from authsvc.dpop import NonceSource, Proof, ProofError, verify_proof
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.store import ProofUse

# Every reason a proof can be refused for (the metric's label values).
REFUSAL_REASONS = (
    "malformed",
    "typ",
    "alg",
    "jwk",
    "signature",
    "claims",
    "htm",
    "htu",
    "iat",
    "ath",
    "nonce",
    "replay",
    "key_mismatch",
    "missing",
    "bearer_scheme",
    "several",
)
TOKEN_ENDPOINT_STATUS = 400


def refuse(
    reason: str, *, token_endpoint: bool, nonce: str | None = None, **fields: str | None
) -> AuthError:
    """The error for a refused proof, counted and audited (``dpop_refused``) under ``reason``.

    ``fields`` (user_id, session_id) name the session when the token was already verified:
    a bound token presented without its key is what a stolen token looks like.
    """
    emit("dpop_refused", reason=reason, **fields)
    status = TOKEN_ENDPOINT_STATUS if token_endpoint else None
    if reason == "nonce":
        return AuthError("use_dpop_nonce", status=status, headers={"DPoP-Nonce": nonce or ""})
    return AuthError("invalid_dpop_proof", status=status)


class ProofPolicy:
    """Checks the proofs of requests against the settings; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.window = settings.dpop_proof_window
        self.nonces = (
            NonceSource(settings.dpop_nonce_secret, settings.dpop_nonce_lifetime)
            if settings.dpop_nonce_secret
            else None
        )

    def nonce(self) -> str | None:
        """The nonce to announce in ``DPoP-Nonce`` (None when server nonces are off)."""
        return self.nonces.current(time.time()) if self.nonces else None

    def check(
        self,
        headers: list[str],
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        token_endpoint: bool = False,
    ) -> Proof | None:
        """The verified proof among ``headers`` (the ``DPoP`` values); None when there is none.

        More than one ``DPoP`` header is refused (RFC 9449 section 4.3, check 1).
        """
        if not headers:
            return None
        if len(headers) > 1:
            raise refuse("several", token_endpoint=token_endpoint)
        now = time.time()
        nonces = self.nonces
        try:
            return verify_proof(
                headers[0],
                method=method,
                url=url,
                now=now,
                window=self.window,
                access_token=access_token,
                nonce_ok=(lambda n: nonces.accepts(n, now)) if nonces else None,
            )
        except ProofError as error:
            raise refuse(error.reason, token_endpoint=token_endpoint, nonce=self.nonce()) from None

    def use(self, proof: Proof) -> ProofUse:
        """What the store remembers of ``proof``: until it could no longer be accepted."""
        remaining = proof.iat + self.window - time.time()
        return ProofUse(
            jkt=proof.jkt,
            replay_id=proof.replay_id(),
            ttl_ms=max(math.ceil(remaining * 1000), 0) + 1000,
            attempt=secrets.token_hex(8),
        )


def require_key(
    jkt: str | None, proof: Proof | None, *, token_endpoint: bool, **fields: str | None
) -> None:
    """A token bound to ``jkt`` needs a proof by that very key; a bearer token needs none."""
    if jkt is None:
        return
    if proof is None:
        raise refuse("missing", token_endpoint=token_endpoint, **fields)
    if proof.jkt != jkt:
        raise refuse("key_mismatch", token_endpoint=token_endpoint, **fields)
