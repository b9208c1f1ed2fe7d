"""``/openapi.json`` (the generated OpenAPI document) and ``/docs`` (Swagger UI rendering it)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, send_from_directory

from authsvc import docs_ui
from authsvc.openapi import build_spec

bp = Blueprint("docs", __name__)

_CACHE_KEY = "authsvc.openapi"

# Scripts only from this origin as files (the bundle and docs.js): no inline script,
# no eval. Swagger UI sets element styles from its scripts (CSSOM, which CSP does not
# restrict) and ships no inline <style>, so style-src needs no 'unsafe-inline' either;
# its CSS draws its icons as data: images. The "Try it out" calls go to this origin
# only (connect-src), and nothing may frame the page or submit a native form.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)


def openapi_document(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document, built on first use (the routes are fixed by then)."""
    if _CACHE_KEY not in app.extensions:
        app.extensions[_CACHE_KEY] = build_spec(app)
    return app.extensions[_CACHE_KEY]


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this service (not in the envelope)."""
    # Deliberately the bare document, not {code, msg, data}: OpenAPI tooling (code
    # generators, schemathesis, API gateways) expects the document itself at this URL.
    return jsonify(openapi_document(current_app))


def _locked_down(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/docs")
def page() -> Response:
    """Interactive API documentation (Swagger UI, served from this origin)."""
    return _locked_down(send_from_directory(docs_ui.ROOT, docs_ui.PAGE))


@bp.get("/docs/<asset>")
def asset(asset: str) -> Response:
    """The scripts, styles and icon of the documentation page."""
    root = docs_ui.ASSETS.get(asset)
    if root is None:
        abort(404)
    return _locked_down(send_from_directory(root, asset))
