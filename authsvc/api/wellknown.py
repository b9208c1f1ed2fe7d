"""``/.well-known/``: the JWKS and the authorization-server metadata (RFC 8414).

Resource servers verify access tokens with the JWKS; OAuth libraries discover the
endpoints from the metadata.

``/.well-known/openid-configuration`` is not served (404): this is not an OpenID
provider (no ID token, no authorization or userinfo endpoint; see
:mod:`authsvc.oauth_metadata`).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from authsvc.keys import KeyRing
from authsvc.oauth_metadata import authorization_server_metadata, issuer_base_url

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


@bp.get("/oauth-authorization-server")
def oauth_metadata() -> Response:
    """Authorization-server metadata (RFC 8414), plain JSON, cached like the JWKS.

    `issuer` is `AUTHSVC_JWT_ISSUER` (the tokens' `iss`); the endpoints are under it
    when it is an http(s) URL, else under the URL this request reached.
    """
    service = current_app.extensions["authsvc"]
    configured = issuer_base_url(service.settings.jwt_issuer)
    base = configured or request.url_root.rstrip("/")
    response = jsonify(
        authorization_server_metadata(current_app, service.settings, service.clients, base)
    )
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    if configured is None:
        # Built from the request's host and scheme: a shared cache must keep them apart.
        response.headers["Vary"] = "Host, X-Forwarded-Proto"
    return response
