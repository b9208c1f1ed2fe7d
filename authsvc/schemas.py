"""marshmallow schemas for every request body; unknown fields are refused."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from authsvc.passwords import MAX_PASSWORD_LENGTH

# OWASP Authentication Cheat Sheet: at least 8 characters for new passwords, and a
# maximum high enough for passphrases but low enough to bound hashing work.
MIN_NEW_PASSWORD_LENGTH = 8


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def _password(min_length: int = 1) -> fields.String:
    return fields.String(
        required=True, validate=validate.Length(min=min_length, max=MAX_PASSWORD_LENGTH)
    )


class LoginSchema(_StrictSchema):
    """``POST /login``."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=128))
    password = _password()
    device_id = fields.String(validate=validate.Length(min=1, max=128), load_default=None)
    # "cookie": the refresh token goes only into an HttpOnly cookie (browser front-ends).
    transport = fields.String(validate=validate.OneOf(["body", "cookie"]), load_default="body")


class RefreshSchema(_StrictSchema):
    """``POST /refresh`` (the JSON form of ``GET /refresh``)."""

    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class PasswordChangeSchema(_StrictSchema):
    """``POST /password``."""

    old_password = _password()
    new_password = _password(MIN_NEW_PASSWORD_LENGTH)


class TokenOperationSchema(_StrictSchema):
    """``POST /api/v1/token/introspect`` (RFC 7662) and ``/revoke`` (RFC 7009)."""

    token = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    token_type_hint = fields.String(
        validate=validate.OneOf(["access_token", "refresh_token"]), load_default=None
    )


login_schema = LoginSchema()
refresh_schema = RefreshSchema()
password_change_schema = PasswordChangeSchema()
token_operation_schema = TokenOperationSchema()
