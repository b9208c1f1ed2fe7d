"""Authorization-server metadata (RFC 8414), built per app and extensible by features.

The document lists what exists: the token endpoint's grants, the client
authentication methods, introspection, revocation, the JWKS. A feature that adds to
the OAuth surface (DPoP proofs, the device flow) registers a contributor with
:func:`extend_metadata` when the app is built, and its fields appear; nothing is
advertised before it is served::

    extend_metadata(app, lambda base: {"dpop_signing_alg_values_supported": ["ES256"]})
    extend_metadata(app, lambda base: {"device_authorization_endpoint": base + "/oauth/device"})

``/.well-known/openid-configuration`` is deliberately not served: authsvc issues no ID
tokens and has no authorization or userinfo endpoint, so an OpenID Connect relying
party that found the document would try a login it cannot complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from authsvc.clients import ClientRegistry
from authsvc.config import Settings
from authsvc.dpop import ALGORITHMS as DPOP_ALGORITHMS

# A contributor gets the base URL (no trailing slash) and returns fields to add.
MetadataContributor = Callable[[str], dict[str, Any]]
_EXTENSION = "authsvc_oauth_metadata"

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
INTROSPECTION_PATH = "/oauth/introspect"
REVOCATION_PATH = "/oauth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
GRANT_TYPES = ("refresh_token", "client_credentials")
# "none": a public client (a device) refreshing with only its client_id.
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
RESOURCE_SERVER_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def extend_metadata(app: Flask, contributor: MetadataContributor) -> None:
    """Add ``contributor``'s fields to ``app``'s metadata document (call at app build)."""
    app.extensions.setdefault(_EXTENSION, []).append(contributor)


def issuer_base_url(issuer: str) -> str | None:
    """The issuer as a base URL when it is an http(s) URL without query or fragment."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return None
    return issuer.rstrip("/")


def authorization_server_metadata(
    app: Flask, settings: Settings, registry: ClientRegistry, base_url: str
) -> dict[str, Any]:
    """The RFC 8414 document: endpoints under ``base_url``, then every feature's fields.

    ``scopes_supported`` is every scope a client (the built-in one included) may ask
    for. ``response_types_supported`` is required by the RFC and empty here: there is
    no authorization endpoint (no code or implicit flow), so no response type exists.
    """
    scopes = sorted({scope for client in registry.list() for scope in client.scopes})
    document: dict[str, Any] = {
        "issuer": settings.jwt_issuer,
        "token_endpoint": base_url + TOKEN_PATH,
        "jwks_uri": base_url + JWKS_PATH,
        "introspection_endpoint": base_url + INTROSPECTION_PATH,
        "revocation_endpoint": base_url + REVOCATION_PATH,
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(RESOURCE_SERVER_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(RESOURCE_SERVER_AUTH_METHODS),
        "scopes_supported": scopes,
        "service_documentation": base_url + "/docs",
        # RFC 9449 section 5.1: the token endpoint takes DPoP proofs by these algorithms.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }
    for contributor in app.extensions.get(_EXTENSION, []):
        document.update(contributor(base_url))
    return document
