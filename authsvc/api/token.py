"""``/api/v1/token``: introspection (RFC 7662) and revocation (RFC 7009) for resource servers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from authsvc.errors import ok
from authsvc.introspection import TokenInspector
from authsvc.schemas import token_operation_schema

bp = Blueprint("token", __name__, url_prefix="/api/v1/token")


def _inspector() -> TokenInspector:
    return current_app.extensions["authsvc_introspection"]


def _authenticated_client() -> str:
    try:
        credentials = request.authorization
    except ValueError:
        # Werkzeug's Basic parser raises on non-ASCII base64 (a header byte >= 0x80).
        credentials = None
    username = credentials.username if credentials and credentials.type == "basic" else None
    password = credentials.password if credentials and credentials.type == "basic" else None
    return _inspector().authenticate_client(username, password)


def _token_request() -> dict[str, Any]:
    # RFC 7662/7009 clients send a form; JSON is accepted too, like the rest of the API.
    if request.mimetype == "application/x-www-form-urlencoded":
        return token_operation_schema.load(request.form.to_dict())
    return token_operation_schema.load(request.get_json())


@bp.post("/introspect")
def introspect() -> Response:
    """Is this token live? ``data.active`` with its claims, or only ``active: false``."""
    _authenticated_client()
    body = _token_request()
    return ok(_inspector().introspect(body["token"], body["token_type_hint"]))


@bp.post("/revoke")
def revoke() -> Response:
    """Revoke a token (a refresh token ends its session); 200 even for an unknown token."""
    client_id = _authenticated_client()
    body = _token_request()
    _inspector().revoke(body["token"], body["token_type_hint"], client_id=client_id)
    return ok(None)
