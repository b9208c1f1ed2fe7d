"""marshmallow schemas of the answers: the ``data`` of each envelope, and the envelopes.

They document the answers in the OpenAPI document (:mod:`authsvc.openapi`); the views
build their dicts themselves. The request schemas are in :mod:`authsvc.schemas`.
"""

from __future__ import annotations

import functools

from marshmallow import Schema, fields, validate

from authsvc.clients import (
    DPOP_MODES,
    GRANTS,
    TRANSPORTS,
)
from authsvc.errors import STATUS_BY_SLUG
from authsvc.schemas import StrictSchema

# -- Response schemas ---------------------------------------------------------------
# They document the answers in the OpenAPI document (authsvc.openapi); the views build
# their dicts themselves. They are strict too (additionalProperties: false), so a field
# added to an answer without being documented here fails the schemathesis test.


class TokenPairSchema(StrictSchema):
    """``data`` of login and refresh."""

    access_token = fields.String(required=True)
    refresh_token = fields.String(
        metadata={"description": "Absent with the cookie transport (it is in a cookie)."}
    )
    token_type = fields.String(
        required=True,
        validate=validate.OneOf(["Bearer", "DPoP"]),
        metadata={
            "description": "`DPoP` when the login carried a DPoP proof (RFC 9449): present the "
            "access token as `Authorization: DPoP <token>` with a fresh proof each time."
        },
    )
    expires_in = fields.Integer(required=True, validate=validate.Range(min=0))
    refresh_expires_in = fields.Integer(required=True, validate=validate.Range(min=0))
    session_id = fields.String(required=True)
    scope = fields.String(
        required=True, metadata={"description": "The scopes granted, space-separated."}
    )


class PrincipalSchema(StrictSchema):
    """``data`` of ``GET /me``."""

    user_id = fields.String(required=True)
    username = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    session_id = fields.String(required=True)
    client_id = fields.String(required=True)
    scope = fields.String(required=True)
    bound = fields.Boolean(
        required=True, metadata={"description": "The session is bound to a device key (DPoP)."}
    )
    cnf = fields.Nested(
        lambda: ConfirmationSchema(),
        required=True,
        allow_none=True,
        metadata={"description": "The key's RFC 7638 thumbprint (null: a bearer session)."},
    )


class SessionSchema(StrictSchema):
    """One live session (device) of the user; times are Unix seconds."""

    session_id = fields.String(required=True)
    device_id = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    created = fields.Integer(required=True)
    last_refresh = fields.Integer(required=True)
    expires = fields.Integer(required=True)
    client_id = fields.String(required=True, metadata={"description": "The client logged in."})
    bound = fields.Boolean(
        required=True, metadata={"description": "Bound to a device key (DPoP, RFC 9449)."}
    )
    current = fields.Boolean(
        required=True, metadata={"description": "The session of the token presented."}
    )


class SessionListSchema(StrictSchema):
    """``data`` of ``GET /sessions``."""

    sessions = fields.List(fields.Nested(SessionSchema), required=True)


class UserSummarySchema(StrictSchema):
    """One account, as listed to an administrator."""

    user_id = fields.String(required=True)
    username = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    disabled = fields.Boolean(required=True)


class UserPageSchema(StrictSchema):
    """``data`` of ``GET /api/v1/admin/users``: one page, in username order."""

    users = fields.List(fields.Nested(UserSummarySchema), required=True)
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
    )


class UserDetailSchema(UserSummarySchema):
    """``data`` of ``GET /api/v1/admin/users/<username>``: the account and its live sessions."""

    sessions = fields.List(fields.Nested(SessionSchema), required=True)


class ClientSchema(StrictSchema):
    """``data`` of ``GET /api/v1/admin/clients/<client_id>``: a client's settings."""

    client_id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    transports = fields.List(fields.String(validate=validate.OneOf(TRANSPORTS)), required=True)
    grants = fields.List(fields.String(validate=validate.OneOf(GRANTS)), required=True)
    access_ttl = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: the service's."}
    )
    refresh_ttl = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: the service's."}
    )
    builtin = fields.Boolean(
        required=True,
        metadata={"description": "The built-in `default` client: shown, never changed."},
    )
    dpop = fields.String(required=True, validate=validate.OneOf(DPOP_MODES))


class ClientListSchema(StrictSchema):
    """``data`` of ``GET /api/v1/admin/clients``: the built-in client first, then by id."""

    clients = fields.List(fields.Nested(ClientSchema), required=True)


ROW_ERRORS = ("validation_failed", "username_taken")


class RowResultSchema(StrictSchema):
    """What happened to one row of a bulk creation."""

    index = fields.Integer(required=True, metadata={"description": "The row's position (0-based)."})
    status = fields.String(required=True, validate=validate.OneOf(["created", "error"]))
    username = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The normalised username; null when the row had none usable."},
    )
    user_id = fields.String(metadata={"description": "With created."})
    error = fields.String(
        validate=validate.OneOf(ROW_ERRORS), metadata={"description": "With error."}
    )
    field_errors = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "With validation_failed: the messages per invalid field."},
    )


class BulkCreateResultSchema(StrictSchema):
    """``data`` of ``POST /api/v1/admin/users``: one result per row, in order."""

    created = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    results = fields.List(fields.Nested(RowResultSchema), required=True)


class KeysStatusSchema(StrictSchema):
    """Whether the signing keys are current (readiness probe)."""

    status = fields.String(
        required=True,
        validate=validate.OneOf(["ok", "stale"]),
        metadata={
            "description": "stale: the key directory or the Redis key ring cannot be "
            "(re)loaded, or is refused (a rollback); the last good keys still sign and "
            "verify (the instance stays ready)."
        },
    )
    error = fields.String(
        metadata={
            "description": "With stale: the kind of failure (e.g. KeyRecordError, "
            "KeyRingRollbackError, ConnectionError)."
        }
    )
    since = fields.Integer(metadata={"description": "With stale: Unix time of the first failure."})


class ProbeSchema(StrictSchema):
    """``data`` of the liveness and readiness probes."""

    status = fields.String(required=True, validate=validate.OneOf(["up", "ready"]))
    keys = fields.Nested(KeysStatusSchema, metadata={"description": "Readiness only."})


class ConfirmationSchema(StrictSchema):
    """``cnf`` (RFC 7800): the RFC 7638 thumbprint of the key a DPoP-bound token needs."""

    jkt = fields.String(required=True)


class IntrospectionSchema(StrictSchema):
    """``data`` of introspection (RFC 7662): only ``active: false`` unless the token is live."""

    active = fields.Boolean(required=True)
    token_type = fields.String(validate=validate.OneOf(["access_token", "refresh_token"]))
    sub = fields.String()
    username = fields.String()
    sid = fields.String()
    jti = fields.String()
    roles = fields.List(fields.String())
    client_id = fields.String()
    azp = fields.String()
    scope = fields.String()
    iat = fields.Integer()
    nbf = fields.Integer()
    exp = fields.Integer()
    iss = fields.String()
    aud = fields.String()
    cnf = fields.Nested(
        lambda: ConfirmationSchema(),
        metadata={"description": "A DPoP-bound token: the key every use must prove (RFC 9449)."},
    )


class JwkSchema(StrictSchema):
    """A public signing key (RFC 7517): RSA (n, e), EC (crv, x, y) or OKP (crv, x)."""

    kty = fields.String(required=True, validate=validate.OneOf(["RSA", "EC", "OKP"]))
    kid = fields.String(required=True)
    alg = fields.String(required=True)
    use = fields.String(required=True, validate=validate.Equal("sig"))
    key_ops = fields.List(fields.String())
    n = fields.String()
    e = fields.String()
    crv = fields.String()
    x = fields.String()
    y = fields.String()


class JwkSetSchema(StrictSchema):
    """``/.well-known/jwks.json`` (plain RFC 7517, not in the envelope)."""

    keys = fields.List(fields.Nested(JwkSchema), required=True)


class ErrorSchema(StrictSchema):
    """``data`` of every error: a stable slug to branch on, and the invalid fields."""

    error = fields.String(required=True, validate=validate.OneOf(list(STATUS_BY_SLUG)))
    field_errors = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "With validation_failed: the messages per invalid field."},
    )


class _EnvelopeSchema(StrictSchema):
    code = fields.Integer(
        required=True,
        metadata={"description": "The HTTP status, also when HTTP itself answers 200 (always200)."},
    )
    msg = fields.String(
        required=True,
        metadata={"description": "For people, in the Accept-Language language; never branch on it"},
    )


class ErrorEnvelopeSchema(_EnvelopeSchema):
    """Every error answer."""

    data = fields.Nested(ErrorSchema, required=True)


@functools.cache
def envelope(data: type[Schema] | None) -> type[Schema]:
    """The success envelope ``{code: 200, msg, data}`` around ``data`` (``null`` when None).

    Cached, so each data schema has exactly one envelope class (one OpenAPI component).
    """
    name = data.__name__.removesuffix("Schema") if data else "Empty"
    data_field = (
        fields.Nested(data, required=True)
        if data
        else fields.Raw(required=True, allow_none=True, validate=validate.Equal(None))
    )
    attributes = {
        "__doc__": f"The success envelope of {name}.",
        "__module__": __name__,
        "code": fields.Integer(required=True, validate=validate.Equal(200)),
        "data": data_field,
    }
    return type(f"{name}EnvelopeSchema", (_EnvelopeSchema,), attributes)
