"""The user's side of the device flow (RFC 8628): the ``/device`` page and its API.

``/device`` is the verification URI a device shows; ``/api/v1/device`` lets the page
(or an app that approves in-app) look a code up and allow or deny it, with the user's
access token. The device's own side (codes, polling) is on the OAuth paths
(:mod:`authsvc.api.oauth_device`).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request, send_from_directory

from authsvc.api.account import WEB_ROOT, page_security_headers
from authsvc.auth import current_principal, request_client, require_access, require_admin
from authsvc.device_flow import DeviceFlow, display_user_code
from authsvc.device_schemas import user_code_schema
from authsvc.errors import ok
from authsvc.store.devices import DeviceRequest

page_bp = Blueprint("device_page", __name__)
bp = Blueprint("device", __name__, url_prefix="/api/v1/device")
admin_bp = Blueprint("device_admin", __name__, url_prefix="/api/v1/admin")
page_bp.after_request(page_security_headers)


def device_flow() -> DeviceFlow:
    """The app's :class:`DeviceFlow`."""
    return current_app.extensions["authsvc_device"]


@page_bp.get("/device")
def page() -> Response:
    """The approval page (plain HTML on the browser SDK, the account page's CSP)."""
    return send_from_directory(WEB_ROOT, "device.html")


def _request_data(device: DeviceRequest) -> dict[str, object]:
    client = device_flow().clients.resolve(device.client_id)
    return {
        "user_code": display_user_code(device.user_code),
        "client_id": device.client_id,
        "client_name": client.name,
        "scope": device.scope,
        "device_name": device.device_name or None,
        "ip": device.ip,
        "user_agent": device.user_agent or None,
        "bound": device.bound,
        "expires_at": device.expires_ms // 1000,
    }


@admin_bp.get("/device-codes")
@require_admin
def pending_codes() -> Response:
    """Device codes awaiting a decision (for support): user code, client, scope, IP.

    At most 100, soonest to expire first; never the device code.
    """
    return ok({"device_codes": [_request_data(device) for device in device_flow().pending()]})


@bp.get("")
@require_access
def describe() -> Response:
    """What the code asks for: client, scopes, and the device's IP and user agent."""
    code = user_code_schema.load(request.args)["user_code"]
    device = device_flow().describe(code, current_principal(), request_client())
    return ok(_request_data(device))


@bp.post("/approve")
@require_access
def approve() -> Response:
    """Allow the device: it gets a session of this user at its next poll."""
    code = user_code_schema.load(request.get_json())["user_code"]
    flow = device_flow()
    device = flow.decide(code, current_principal(), request_client(), approve=True)
    return ok({**_request_data(device), "status": "approved"})


@bp.post("/deny")
@require_access
def deny() -> Response:
    """Refuse the device: its next poll gets ``access_denied``."""
    code = user_code_schema.load(request.get_json())["user_code"]
    flow = device_flow()
    device = flow.decide(code, current_principal(), request_client(), approve=False)
    return ok({**_request_data(device), "status": "denied"})
