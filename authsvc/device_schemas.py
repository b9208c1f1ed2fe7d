"""marshmallow schemas of the device flow's user side (``/api/v1/device``) and its admin list."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from authsvc.schemas import Text


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class UserCodeSchema(_Strict):
    """``/api/v1/device``: the code a device shows its owner (RFC 8628 ``user_code``)."""

    user_code = Text(
        required=True,
        validate=validate.Length(min=1, max=32),
        metadata={"description": "As shown (`WDJB-MJHT`); case, dashes and spaces are ignored."},
    )


class DeviceRequestSchema(_Strict):
    """``data``: what a device code asks for, as the approving user sees it."""

    user_code = fields.String(required=True)
    client_id = fields.String(required=True)
    client_name = fields.String(required=True)
    scope = fields.String(required=True)
    device_name = fields.String(required=True, allow_none=True)
    ip = fields.String(
        required=True, metadata={"description": "The address the device asked from."}
    )
    user_agent = fields.String(required=True, allow_none=True)
    bound = fields.Boolean(
        required=True, metadata={"description": "The device's session will be DPoP-bound."}
    )
    expires_at = fields.Integer(required=True, metadata={"description": "Unix time."})


class DeviceDecisionSchema(DeviceRequestSchema):
    """``data`` of an approval or denial."""

    status = fields.String(required=True, validate=validate.OneOf(("approved", "denied")))


class DeviceCodeListSchema(_Strict):
    """``data`` of ``GET /api/v1/admin/device-codes``: codes awaiting a decision."""

    device_codes = fields.List(fields.Nested(DeviceRequestSchema), required=True)


user_code_schema = UserCodeSchema()
