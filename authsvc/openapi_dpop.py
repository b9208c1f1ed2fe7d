"""The DPoP (RFC 9449) parts of the OpenAPI document: the header, its answers, its slugs.

Kept beside :mod:`authsvc.openapi`, which applies them to the operations whose
credentials or entry say ``dpop="token"`` (login, refresh: refusals are 400, the token
endpoint's status) or ``dpop="resource"`` (protected operations: 401 with a DPoP
challenge).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from authsvc.errors import STATUS_BY_SLUG

TOKEN, RESOURCE = "token", "resource"
DPOP_SLUGS = ("invalid_dpop_proof", "use_dpop_nonce")
TOKEN_ENDPOINT_STATUS = 400


def dpop_errors(dpop: str) -> tuple[str, ...]:
    """The slugs an operation answers because it reads a ``DPoP`` header."""
    return DPOP_SLUGS if dpop else ()


def status_of(slug: str, dpop: str) -> int:
    """The HTTP status ``slug`` is answered with on an operation of kind ``dpop``."""
    if dpop == TOKEN and slug in DPOP_SLUGS:
        return TOKEN_ENDPOINT_STATUS
    return STATUS_BY_SLUG[slug]


def add_dpop_components(spec: APISpec) -> None:
    """The ``DPoP`` request header and the ``DPoP-Nonce`` response header."""
    spec.components.parameter(
        "DPoP",
        "header",
        {
            "name": "DPoP",
            "description": (
                "A DPoP proof (RFC 9449): a JWS with header `typ: dpop+jwt`, `alg` "
                "(`ES256`, `EdDSA`, `RS256`) and the public `jwk`, and claims `jti`, `htm`, "
                "`htu`, `iat` (and `ath` at resources, `nonce` when the server asks for "
                "one). At login it binds the new session to the key (`token_type: DPoP`); "
                "a bound session needs a fresh proof by that key on every refresh and "
                "request, with the access token as `Authorization: DPoP <access_token>`."
            ),
            "schema": {"type": "string"},
        },
    )
    spec.components.header(
        "DPoP-Nonce",
        {
            "description": "RFC 9449 section 8: the nonce to put in the next proof.",
            "schema": {"type": "string"},
        },
    )


def nonce_header(slugs: list[str]) -> dict[str, Any]:
    """The extra response headers of an error response holding ``slugs``."""
    return {"DPoP-Nonce": "DPoP-Nonce"} if "use_dpop_nonce" in slugs else {}
