"""The OpenAPI pieces of the device flow (RFC 8628): its OAuth endpoint and the user's API.

:mod:`authsvc.openapi` adds :func:`device_docs` to its documents and these examples to
its example tables.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from authsvc.device_schemas import (
    DeviceCodeListSchema,
    DeviceDecisionSchema,
    DeviceRequestSchema,
    UserCodeSchema,
)
from authsvc.oauth_schemas import DeviceAuthorizationRequestSchema, DeviceAuthorizationSchema
from authsvc.openapi_model import FORM, Credentials, Doc

_ORIGIN = "https://auth.example.com"
_USER_CODE = "WDJB-MJHT"
_REQUEST: dict[str, Any] = {
    "user_code": _USER_CODE,
    "client_id": "tv-box",
    "client_name": "TV box",
    "scope": "profile",
    "device_name": "living-room",
    "ip": "198.51.100.7",
    "user_agent": "tvbox-fw/3.2",
    "bound": True,
    "expires_at": 1767226200,
}

# What the device-flow codes mean on /oauth/token (RFC 8628 section 3.5).
DEVICE_ERROR_TEXT = {
    "authorization_pending": "The user has not decided yet: poll again after `interval`.",
    "slow_down": "Polled sooner than `interval`: it grows by 5 s (Retry-After says the new one).",
    "access_denied": "The user denied the device.",
    "expired_token": "The device code expired (or never existed): start again.",
}

DEVICE_REQUEST_EXAMPLES: dict[type[Schema], dict[str, Any]] = {
    DeviceAuthorizationRequestSchema: {
        "client_id": "tv-box",
        "scope": "profile",
        "device_name": "living-room",
    },
    UserCodeSchema: {"user_code": _USER_CODE},
}
DEVICE_DATA_EXAMPLES: dict[type[Schema], Any] = {
    DeviceAuthorizationSchema: {
        "device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
        "user_code": _USER_CODE,
        "verification_uri": f"{_ORIGIN}/device",
        "verification_uri_complete": f"{_ORIGIN}/device?user_code={_USER_CODE}",
        "expires_in": 600,
        "interval": 5,
    },
    DeviceRequestSchema: _REQUEST,
    DeviceDecisionSchema: {**_REQUEST, "status": "approved"},
    DeviceCodeListSchema: {"device_codes": [_REQUEST]},
}


def device_docs(access: Credentials, admin: Credentials, outage: str) -> dict[str, Doc]:
    """The device flow's endpoints, with the app's access-token and admin credentials."""
    decision = Doc(
        DeviceDecisionSchema,
        UserCodeSchema,
        credentials=access,
        errors=("device_code_unknown", "device_code_used", "too_many_attempts", outage),
    )
    return {
        "oauth_device.device_authorization": Doc(
            DeviceAuthorizationSchema,
            DeviceAuthorizationRequestSchema,
            request_media_types=(FORM,),
            errors=("unknown_client", "invalid_scope", outage),
            enveloped=False,
            oauth=True,
            oauth_errors=("unauthorized_client",),
            dpop="token",  # a proof binds the device's session to come
        ),
        "device_page.page": Doc(media_types=("text/html",), enveloped=False),
        "device.describe": Doc(
            DeviceRequestSchema,
            query=UserCodeSchema,
            credentials=access,
            errors=(
                "validation_failed",
                "device_code_unknown",
                "device_code_used",
                "too_many_attempts",
                outage,
            ),
        ),
        "device.approve": decision,
        "device.deny": decision,
        "device_admin.pending_codes": Doc(DeviceCodeListSchema, credentials=admin),
    }
