"""``POST /oauth/device_authorization``: a device asks for its codes (RFC 8628 section 3.1).

Plain JSON and RFC 6749 errors like every ``/oauth/*`` path; the device then polls
``/oauth/token`` with the device-code grant (:func:`poll`, called by the token view).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from authsvc.api.forms import load_form
from authsvc.auth import request_client, request_proof
from authsvc.device_flow import DEVICE_CODE_GRANT, DeviceFlow
from authsvc.oauth_errors import OAuthError
from authsvc.oauth_metadata import GRANT_TYPES, extend_metadata, issuer_base_url
from authsvc.oauth_schemas import device_authorization_request_schema
from authsvc.tokens import TokenPair

bp = Blueprint("oauth_device", __name__, url_prefix="/oauth")
DEVICE_AUTHORIZATION_PATH = "/oauth/device_authorization"
VERIFICATION_PATH = "/device"


def device_flow() -> DeviceFlow:
    """The app's :class:`DeviceFlow`."""
    return current_app.extensions["authsvc_device"]


def advertise(app: Flask) -> None:
    """List the endpoint and the grant in the RFC 8414 metadata."""
    extend_metadata(
        app,
        lambda base: {
            "device_authorization_endpoint": base + DEVICE_AUTHORIZATION_PATH,
            "grant_types_supported": [*GRANT_TYPES, DEVICE_CODE_GRANT],
        },
    )


@bp.post("/device_authorization")
def device_authorization() -> Response:
    """Codes for a device (RFC 8628 section 3.2).

    A secret `device_code` the device keeps, and a short `user_code` its owner enters
    at `verification_uri`. The client (`client_id`, a public client: no secret) must allow the grant
    `device_code`. A `DPoP` proof binds the session the device will get to its key.
    """
    body = load_form(device_authorization_request_schema)
    flow = device_flow()
    base = issuer_base_url(flow.settings.jwt_issuer) or request.url_root.rstrip("/")
    authorization = flow.authorize(
        body["client_id"],
        body["scope"],
        request_client(body["device_name"]),
        verification_uri=base + VERIFICATION_PATH,
        proof=request_proof(token_endpoint=True),
    )
    response = jsonify(authorization.as_dict())
    response.headers["Cache-Control"] = "no-store"
    return response


def poll(body: dict[str, Any]) -> TokenPair:
    """The device-code grant on the token endpoint (RFC 8628 section 3.4)."""
    if body["device_code"] is None or body["client_id"] is None:
        raise OAuthError("invalid_request", "device_code and client_id are required")
    return device_flow().poll(
        body["device_code"],
        body["client_id"],
        request_client(),
        proof=request_proof(token_endpoint=True),
    )
