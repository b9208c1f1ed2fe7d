"""marshmallow schemas of the plain OAuth endpoints (``/oauth/*``, RFC 6749/7662/7009/8414).

Request forms ignore parameters they do not know (RFC 6749 section 3.2: "MUST
ignore unrecognized request parameters"); answers are strict, like the envelope's, so
the OpenAPI document and the schemathesis run hold them to what is served.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from authsvc.client_credentials import DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS
from authsvc.schemas import Text
from authsvc.tokens import MAX_TOKEN_LENGTH

_SECRET = validate.Length(min=1, max=256)
_CLIENT_ID = validate.Length(min=1, max=128)
_SCOPE = validate.Length(min=1, max=2048)


class _Form(Schema):
    class Meta:
        unknown = EXCLUDE


class _Answer(Schema):
    class Meta:
        unknown = RAISE


class ClientAuthForm(_Form):
    """``client_secret_post`` (RFC 6749 section 2.3.1), or a public client's ``client_id``."""

    client_id = Text(validate=_CLIENT_ID, load_default=None)
    client_secret = Text(validate=_SECRET, load_default=None)


class OAuthTokenRequestSchema(ClientAuthForm):
    """``POST /oauth/token``: a refresh_token or client_credentials grant (form-encoded)."""

    grant_type = Text(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "enum": [
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code",
            ]
        },
    )
    refresh_token = Text(validate=validate.Length(min=1, max=MAX_TOKEN_LENGTH), load_default=None)
    scope = Text(validate=_SCOPE, load_default=None)
    device_code = Text(validate=validate.Length(min=1, max=128), load_default=None)


class DeviceAuthorizationRequestSchema(_Form):
    """``POST /oauth/device_authorization`` (RFC 8628 section 3.1, form-encoded)."""

    client_id = Text(required=True, validate=_CLIENT_ID)
    scope = Text(validate=_SCOPE, load_default=None)
    device_name = Text(
        validate=validate.Length(min=1, max=128),
        load_default=None,
        metadata={"description": "Shown to the approving user and in the sessions list."},
    )


class DeviceAuthorizationSchema(_Answer):
    """The RFC 8628 section 3.2 answer."""

    device_code = fields.String(required=True)
    user_code = fields.String(required=True)
    verification_uri = fields.String(required=True)
    verification_uri_complete = fields.String(required=True)
    expires_in = fields.Integer(required=True, validate=validate.Range(min=1))
    interval = fields.Integer(required=True, validate=validate.Range(min=1))


class OAuthTokenOperationSchema(ClientAuthForm):
    """``POST /oauth/introspect`` (RFC 7662) and ``/oauth/revoke`` (RFC 7009)."""

    token = Text(required=True, validate=validate.Length(min=1, max=MAX_TOKEN_LENGTH))
    token_type_hint = Text(validate=validate.Length(max=64), load_default=None)


class OAuthTokenSchema(_Answer):
    """A token answer (RFC 6749 section 5.1); a machine token has no refresh token."""

    access_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.Equal("Bearer"))
    expires_in = fields.Integer(required=True, validate=validate.Range(min=0))
    scope = fields.String(required=True)
    refresh_token = fields.String()
    refresh_expires_in = fields.Integer(validate=validate.Range(min=0))
    session_id = fields.String()


class OAuthErrorSchema(_Answer):
    """An error (RFC 6749 section 5.2): ``error`` to branch on, the slug as description."""

    error = fields.String(required=True)
    error_description = fields.String(required=True)


class AuthorizationServerMetadataSchema(Schema):
    """The RFC 8414 document (features such as DPoP may add fields: not strict)."""

    issuer = fields.String(required=True)
    token_endpoint = fields.String(required=True)
    jwks_uri = fields.String(required=True)
    introspection_endpoint = fields.String(required=True)
    revocation_endpoint = fields.String(required=True)
    grant_types_supported = fields.List(fields.String(), required=True)
    response_types_supported = fields.List(fields.String(), required=True)
    token_endpoint_auth_methods_supported = fields.List(fields.String(), required=True)
    introspection_endpoint_auth_methods_supported = fields.List(fields.String(), required=True)
    revocation_endpoint_auth_methods_supported = fields.List(fields.String(), required=True)
    scopes_supported = fields.List(fields.String(), required=True)
    service_documentation = fields.String(required=True)
    device_authorization_endpoint = fields.String(
        metadata={"description": "RFC 8628: where a device asks for its codes."}
    )
    dpop_signing_alg_values_supported = fields.List(fields.String(), required=True)


class ClientSecretRequestSchema(_Answer):
    """``POST /api/v1/admin/clients/<id>/secret`` (the body is optional)."""

    overlap_seconds = fields.Integer(
        load_default=DEFAULT_OVERLAP_SECONDS,
        strict=True,
        validate=validate.Range(min=0, max=MAX_OVERLAP_SECONDS),
        metadata={"description": "How long the previous secret stays valid (s)."},
    )


class ClientSecretSchema(_Answer):
    """``data`` of a secret issued to a client: shown this once."""

    client_id = fields.String(required=True)
    client_secret = fields.String(required=True)
    client_secret_expires_at = fields.Integer(
        required=True, metadata={"description": "0: the secret does not expire (RFC 7591)."}
    )
    previous_secret_valid_until = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Unix time until which the previous secret works; null: none."},
    )


oauth_token_request_schema = OAuthTokenRequestSchema()
oauth_token_operation_schema = OAuthTokenOperationSchema()
device_authorization_request_schema = DeviceAuthorizationRequestSchema()
client_secret_request_schema = ClientSecretRequestSchema()
