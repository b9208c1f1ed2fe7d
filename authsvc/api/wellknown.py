"""``/.well-known/jwks.json``: the public keys resource servers verify access tokens with."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from authsvc.keys import KeyRing

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")

# Long enough to spare the service, short enough that a rotated-in key is seen well
# before tokens signed by it are common (verifiers refetch on an unknown kid anyway).
JWKS_MAX_AGE_SECONDS = 300


@bp.get("/jwks.json")
def jwks() -> Response:
    """The JWK Set (RFC 7517), plain JSON as verifiers expect, not the envelope.

    Public keys only: with an HMAC algorithm the set is empty, the secret never leaves.
    """
    keyring: KeyRing = current_app.extensions["authsvc_keys"]
    response = jsonify(keyring.jwks())
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response
