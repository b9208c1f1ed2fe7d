"""marshmallow schemas: request bodies (unknown fields refused) and answers (for OpenAPI)."""

from __future__ import annotations

import functools
import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, utils, validate

from authsvc.clients import (
    DEFAULT_SCOPES,
    DPOP_MODES,
    GRANTS,
    MAX_NAME_LENGTH,
    MAX_SCOPES,
    TRANSPORTS,
)
from authsvc.errors import STATUS_BY_SLUG
from authsvc.passwords import MAX_PASSWORD_LENGTH

# OWASP Authentication Cheat Sheet: at least 8 characters for new passwords, and a
# maximum high enough for passphrases but low enough to bound hashing work.
MIN_NEW_PASSWORD_LENGTH = 8


# Control characters (C0, DEL, C1) have no business in a name, a device id or a token:
# they break log lines, terminals and the account page.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
# Passwords may hold any text but NUL: firmware written in C would cut the password
# there and hash something else than the server checks.
NUL = re.compile("\x00")


class Text(fields.String):
    r"""A string that is Unicode text: it encodes to UTF-8 and holds no forbidden character.

    JSON may carry a lone UTF-16 surrogate (``"\ud800"``); Python decodes it into a
    string that neither the Redis client nor argon2 can encode, so it is refused here,
    before anything stores or hashes it. ``forbidden`` (default: every control
    character) names the characters refused besides.
    """

    default_error_messages = {  # noqa: RUF012 - marshmallow merges this class attribute
        "not_text": "Not valid text: no lone surrogates or control characters.",
    }

    def __init__(self, *, forbidden: re.Pattern[str] = CONTROL_CHARACTERS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forbidden = forbidden

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise self.make_error("not_text") from error
        if self.forbidden.search(text):
            raise self.make_error("not_text")
        return text


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def _password(min_length: int = 1) -> Text:
    return Text(
        required=True,
        forbidden=NUL,
        validate=validate.Length(min=min_length, max=MAX_PASSWORD_LENGTH),
    )


class LoginSchema(_StrictSchema):
    """``POST /login``."""

    username = Text(required=True, validate=validate.Length(min=1, max=128))
    password = _password()
    device_id = Text(validate=validate.Length(min=1, max=128), load_default=None)
    # "cookie": the refresh token goes only into an HttpOnly cookie (browser front-ends).
    transport = Text(validate=validate.OneOf(["body", "cookie"]), load_default="body")
    client_id = Text(
        validate=validate.Length(min=1, max=128),
        load_default=None,
        metadata={"description": "A registered client; absent: the built-in `default` client."},
    )
    scope = Text(
        validate=validate.Length(min=1, max=2048),
        load_default=None,
        metadata={"description": "Space-separated scopes (RFC 6749); absent: all the client's."},
    )


class RefreshSchema(_StrictSchema):
    """``POST /refresh`` (the JSON form of ``GET /refresh``)."""

    refresh_token = Text(required=True, validate=validate.Length(min=1, max=4096))
    scope = Text(
        validate=validate.Length(min=1, max=2048),
        load_default=None,
        metadata={"description": "Narrow the session's scope to these (never widen it)."},
    )


class CookieRefreshSchema(_StrictSchema):
    """``POST /refresh`` by cookie with a body: only a narrowing ``scope``."""

    scope = Text(
        required=True,
        validate=validate.Length(min=1, max=2048),
        metadata={"description": "Narrow the session's scope to these (never widen it)."},
    )


class PasswordChangeSchema(_StrictSchema):
    """``POST /password``."""

    old_password = _password()
    new_password = _password(MIN_NEW_PASSWORD_LENGTH)


class TokenOperationSchema(_StrictSchema):
    """``POST /api/v1/token/introspect`` (RFC 7662) and ``/revoke`` (RFC 7009)."""

    token = Text(required=True, validate=validate.Length(min=1, max=4096))
    token_type_hint = Text(
        validate=validate.OneOf(["access_token", "refresh_token"]), load_default=None
    )


# -- administration (/api/v1/admin) -------------------------------------------------
# At most this many rows per bulk request: each row is one argon2id hash (tens of ms
# at the OWASP floor), so a full request takes seconds, well inside proxy timeouts.
MAX_BULK_ROWS = 100
MAX_PAGE_LIMIT = 200
DEFAULT_PAGE_LIMIT = 50
# Roles are stored comma-joined and shown on the CLI tab-separated: no separators.
ROLE = validate.Regexp(
    r"^[a-z0-9][a-z0-9_.:-]{0,31}$", error="1-32 characters of a-z 0-9 _ . : - (lowercase)."
)
MAX_ROLES = 8


class NewUserSchema(_StrictSchema):
    """One row of ``POST /api/v1/admin/users``."""

    username = Text(required=True, validate=validate.Length(min=1, max=128))
    password = _password(MIN_NEW_PASSWORD_LENGTH)
    roles = fields.List(
        Text(validate=ROLE), load_default=list, validate=validate.Length(max=MAX_ROLES)
    )


class _Rows(fields.List):
    """A list documented as a list of ``inner`` but loaded as it is.

    The service checks each row on its own, so one bad row never refuses the others.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not utils.is_collection(value):
            raise self.make_error("invalid")
        return list(value)


class BulkCreateSchema(_StrictSchema):
    """``POST /api/v1/admin/users``."""

    users = _Rows(
        fields.Nested(NewUserSchema),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "maxItems": MAX_BULK_ROWS,
            "description": f"At most {MAX_BULK_ROWS} rows (more: 413 `too_many_rows`); each "
            "row is checked on its own and answered in `data.results`.",
        },
    )


class PasswordResetSchema(_StrictSchema):
    """``POST /api/v1/admin/users/<username>/password``."""

    password = _password(MIN_NEW_PASSWORD_LENGTH)


class UserQuerySchema(_StrictSchema):
    """The query of ``GET /api/v1/admin/users``."""

    q = Text(
        validate=validate.Length(max=64),
        load_default="",
        metadata={"description": "Only usernames starting with this prefix."},
    )
    cursor = Text(
        validate=validate.Length(min=1, max=256),
        load_default=None,
        metadata={"description": "`data.next_cursor` of the previous page (opaque)."},
    )
    limit = fields.Integer(
        validate=validate.Range(min=1, max=MAX_PAGE_LIMIT),
        load_default=DEFAULT_PAGE_LIMIT,
        metadata={"description": f"Users per page (default {DEFAULT_PAGE_LIMIT})."},
    )


# -- registered clients (/api/v1/admin/clients) ---------------------------------------
# The shapes only: ids, scope tokens and lifetimes are checked by the ClientRegistry
# (the CLI's rules), whose refusals name the field as validation_failed does.
class _FlatList(fields.List):
    """A list whose item errors are reported as one list of messages, ``item <n>: ...``.

    Every field of ``data.fields`` is a list of strings (the error schema's promise);
    marshmallow's own List would answer a dict keyed by item index.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            raise ValidationError(
                [
                    f"item {index}: {message}"
                    for index, messages in error.messages.items()
                    for message in messages
                ]
            ) from error


def _client_scopes(**kwargs: Any) -> fields.List:
    return _FlatList(
        Text(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(max=MAX_SCOPES),
        metadata={"description": "The scopes its logins may ask for (RFC 6749 scope-tokens)."},
        **kwargs,
    )


def _client_transports(**kwargs: Any) -> fields.List:
    return _FlatList(
        Text(validate=validate.OneOf(TRANSPORTS)),
        validate=validate.Length(min=1, max=len(TRANSPORTS)),
        metadata={"description": "How its logins may carry the refresh token."},
        **kwargs,
    )


def _client_grants(**kwargs: Any) -> fields.List:
    return _FlatList(
        Text(validate=validate.OneOf(GRANTS)),
        validate=validate.Length(max=len(GRANTS)),
        metadata={"description": "Grants beyond the password login it may use (device_code)."},
        **kwargs,
    )


def _client_ttl(what: str, **kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1),
        metadata={
            "description": f"{what} lifetime in seconds, at most the service's; "
            "null: the service's."
        },
        **kwargs,
    )


def _client_dpop(**kwargs: Any) -> fields.String:
    return Text(
        validate=validate.OneOf(DPOP_MODES),
        metadata={
            "description": "`required`: every login must send a DPoP proof (RFC 9449) and "
            "gets a device-bound session; `optional`: a login with a proof is bound."
        },
        **kwargs,
    )


class NewClientSchema(_StrictSchema):
    """``POST /api/v1/admin/clients``."""

    client_id = Text(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "1-64 characters of a-z 0-9 . _ - (`default` is reserved)."},
    )
    name = Text(required=True, validate=validate.Length(min=1, max=MAX_NAME_LENGTH))
    scopes = _client_scopes(load_default=lambda: list(DEFAULT_SCOPES))
    transports = _client_transports(load_default=lambda: list(TRANSPORTS))
    grants = _client_grants(load_default=list)
    access_ttl = _client_ttl("Access-token", load_default=None)
    refresh_ttl = _client_ttl("Refresh-token (session)", load_default=None)
    dpop = _client_dpop(load_default="optional")


class ClientUpdateSchema(_StrictSchema):
    """``PATCH /api/v1/admin/clients/<client_id>``: the fields sent change, the others stay."""

    name = Text(validate=validate.Length(min=1, max=MAX_NAME_LENGTH))
    scopes = _client_scopes()
    transports = _client_transports()
    grants = _client_grants()
    access_ttl = _client_ttl("Access-token")
    refresh_ttl = _client_ttl("Refresh-token (session)")
    dpop = _client_dpop()


login_schema = LoginSchema()
refresh_schema = RefreshSchema()
cookie_refresh_schema = CookieRefreshSchema()
password_change_schema = PasswordChangeSchema()
token_operation_schema = TokenOperationSchema()
new_user_schema = NewUserSchema()
bulk_create_schema = BulkCreateSchema()
password_reset_schema = PasswordResetSchema()
user_query_schema = UserQuerySchema()
new_client_schema = NewClientSchema()
client_update_schema = ClientUpdateSchema()


# -- Response schemas ---------------------------------------------------------------
# They document the answers in the OpenAPI document (authsvc.openapi); the views build
# their dicts themselves. They are strict too (additionalProperties: false), so a field
# added to an answer without being documented here fails the schemathesis test.


class TokenPairSchema(_StrictSchema):
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


class PrincipalSchema(_StrictSchema):
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


class SessionSchema(_StrictSchema):
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


class SessionListSchema(_StrictSchema):
    """``data`` of ``GET /sessions``."""

    sessions = fields.List(fields.Nested(SessionSchema), required=True)


class UserSummarySchema(_StrictSchema):
    """One account, as listed to an administrator."""

    user_id = fields.String(required=True)
    username = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)
    disabled = fields.Boolean(required=True)


class UserPageSchema(_StrictSchema):
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


class ClientSchema(_StrictSchema):
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


class ClientListSchema(_StrictSchema):
    """``data`` of ``GET /api/v1/admin/clients``: the built-in client first, then by id."""

    clients = fields.List(fields.Nested(ClientSchema), required=True)


ROW_ERRORS = ("validation_failed", "username_taken")


class RowResultSchema(_StrictSchema):
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


class BulkCreateResultSchema(_StrictSchema):
    """``data`` of ``POST /api/v1/admin/users``: one result per row, in order."""

    created = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    results = fields.List(fields.Nested(RowResultSchema), required=True)


class KeysStatusSchema(_StrictSchema):
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


class ProbeSchema(_StrictSchema):
    """``data`` of the liveness and readiness probes."""

    status = fields.String(required=True, validate=validate.OneOf(["up", "ready"]))
    keys = fields.Nested(KeysStatusSchema, metadata={"description": "Readiness only."})


class ConfirmationSchema(_StrictSchema):
    """``cnf`` (RFC 7800): the RFC 7638 thumbprint of the key a DPoP-bound token needs."""

    jkt = fields.String(required=True)


class IntrospectionSchema(_StrictSchema):
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


class JwkSchema(_StrictSchema):
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


class JwkSetSchema(_StrictSchema):
    """``/.well-known/jwks.json`` (plain RFC 7517, not in the envelope)."""

    keys = fields.List(fields.Nested(JwkSchema), required=True)


class ErrorSchema(_StrictSchema):
    """``data`` of every error: a stable slug to branch on, and the invalid fields."""

    error = fields.String(required=True, validate=validate.OneOf(list(STATUS_BY_SLUG)))
    field_errors = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "With validation_failed: the messages per invalid field."},
    )


class _EnvelopeSchema(_StrictSchema):
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
