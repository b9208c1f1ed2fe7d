"""marshmallow schemas of the request bodies (unknown fields refused).

The answers' schemas (for the OpenAPI document) are in :mod:`authsvc.response_schemas`.
"""

from __future__ import annotations

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


class StrictSchema(Schema):
    """A schema that refuses unknown fields (requests) and documents none (answers)."""

    class Meta:
        """marshmallow options: RAISE on an unknown field."""

        unknown = RAISE


def _password(min_length: int = 1) -> Text:
    return Text(
        required=True,
        forbidden=NUL,
        validate=validate.Length(min=min_length, max=MAX_PASSWORD_LENGTH),
    )


class LoginSchema(StrictSchema):
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


class RefreshSchema(StrictSchema):
    """``POST /refresh`` (the JSON form of ``GET /refresh``)."""

    refresh_token = Text(required=True, validate=validate.Length(min=1, max=4096))
    scope = Text(
        validate=validate.Length(min=1, max=2048),
        load_default=None,
        metadata={"description": "Narrow the session's scope to these (never widen it)."},
    )


class CookieRefreshSchema(StrictSchema):
    """``POST /refresh`` by cookie with a body: only a narrowing ``scope``."""

    scope = Text(
        required=True,
        validate=validate.Length(min=1, max=2048),
        metadata={"description": "Narrow the session's scope to these (never widen it)."},
    )


class PasswordChangeSchema(StrictSchema):
    """``POST /password``."""

    old_password = _password()
    new_password = _password(MIN_NEW_PASSWORD_LENGTH)


class TokenOperationSchema(StrictSchema):
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


class NewUserSchema(StrictSchema):
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


class BulkCreateSchema(StrictSchema):
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


class PasswordResetSchema(StrictSchema):
    """``POST /api/v1/admin/users/<username>/password``."""

    password = _password(MIN_NEW_PASSWORD_LENGTH)


class UserQuerySchema(StrictSchema):
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


class NewClientSchema(StrictSchema):
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


class ClientUpdateSchema(StrictSchema):
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
