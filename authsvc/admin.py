"""Account administration over HTTP: bulk creation, paged listing, one account's details.

The actions on one account (disable, enable, reset password, end sessions, delete)
are :class:`~authsvc.service.AuthService` methods shared with the ``authsvc user``
command; this module adds what only the admin API needs and names the acting admin in
every audit line. Registered clients (``/api/v1/admin/clients``) have a service of
their own, :class:`~authsvc.admin_clients.ClientAdminService`, reached as
:attr:`AdminService.clients`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any, TypeVar

from marshmallow import ValidationError

from authsvc.admin_clients import ClientAdminService
from authsvc.client_credentials import ClientCredentials
from authsvc.errors import AuthError, validation_messages
from authsvc.events import emit
from authsvc.schemas import MAX_BULK_ROWS, new_user_schema
from authsvc.service import (
    Actor,
    AuthService,
    InvalidUsername,
    Principal,
    UsernameTaken,
    normalize_username,
)

T = TypeVar("T")

# A cursor is the last index member of a page, base64url-encoded: "<username> <user id>".
_CURSOR_MEMBER = re.compile(r"^[a-z0-9._@+-]{1,64} [A-Za-z0-9_-]{1,64}$")


def api_actor(principal: Principal) -> Actor:
    """The acting admin of an API call, for the audit lines."""
    return Actor("api", admin_user_id=principal.user_id)


def encode_cursor(last: str | None) -> str | None:
    """The opaque ``next_cursor`` for the index member a page ended on."""
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=") if last else None


def decode_cursor(cursor: str | None) -> str | None:
    """The index member a cursor stands for; ``validation_failed`` on ``cursor`` if none."""
    if cursor is None:
        return None
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        member = ""
    if not _CURSOR_MEMBER.match(member):
        raise AuthError("validation_failed", fields={"cursor": ["Not a cursor of this listing."]})
    return member


class AdminService:
    """What the admin API does, over the app's :class:`AuthService`."""

    def __init__(self, auth: AuthService, credentials: ClientCredentials | None = None) -> None:
        self.auth = auth
        self.clients = ClientAdminService(auth.clients, credentials)

    def create_users(self, rows: list[Any], actor: Actor) -> dict[str, Any]:
        """Create one account per row, in order; a bad row is reported, never fatal.

        Rows are hashed one after the other in this request (argon2id is the cost:
        parallel hashing would only compete with logins for the same cores). More than
        :data:`MAX_BULK_ROWS` rows is ``too_many_rows`` and creates nothing. A Redis
        outage stops the request (503); rows created before it then answer
        ``username_taken`` when the request is sent again.
        """
        if len(rows) > MAX_BULK_ROWS:
            raise AuthError("too_many_rows")
        results = [self._create_row(index, row, actor) for index, row in enumerate(rows)]
        created = sum(result["status"] == "created" for result in results)
        emit("users_bulk_created", created=created, failed=len(results) - created, **actor.fields())
        return {"created": created, "failed": len(results) - created, "results": results}

    def _create_row(self, index: int, row: Any, actor: Actor) -> dict[str, Any]:
        try:
            fields = new_user_schema.load(row)
        except ValidationError as error:
            return _row_error(index, None, "validation_failed", validation_messages(error))
        username = normalize_username(fields["username"])
        try:
            user = self.auth.add_user(
                fields["username"], fields["password"], tuple(fields["roles"]), actor=actor
            )
        except InvalidUsername as error:
            return _row_error(index, None, "validation_failed", {"username": [str(error)]})
        except UsernameTaken:
            return _row_error(index, username, "username_taken")
        return {"index": index, "status": "created", "username": user.username, "user_id": user.id}

    def list_users(self, q: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """One page of accounts in username order, those starting with ``q`` only."""
        page = self.auth.store.user_page(
            prefix=normalize_username(q), after=decode_cursor(cursor), limit=limit
        )
        return {
            "users": [
                {
                    "user_id": u.id,
                    "username": u.username,
                    "roles": list(u.roles),
                    "disabled": u.disabled,
                }
                for u in page.users
            ],
            "next_cursor": encode_cursor(page.last),
        }

    def show_user(self, username: str, principal: Principal) -> dict[str, Any]:
        """The account and its live sessions (the caller's own session flagged current)."""
        user = _found(lambda: self.auth.find_user(username))
        return {
            "user_id": user.id,
            "username": user.username,
            "roles": list(user.roles),
            "disabled": user.disabled,
            "sessions": self.auth.sessions_of(user.id, current_session_id=principal.session_id),
        }

    def set_disabled(self, username: str, disabled: bool, actor: Actor) -> None:
        """Disable (ending every session) or enable the account."""
        _found(lambda: self.auth.set_disabled(username, disabled, actor=actor))

    def reset_password(self, username: str, password: str, actor: Actor) -> None:
        """Set a new password and end every session of the account."""
        _found(lambda: self.auth.reset_password(username, password, actor=actor))

    def end_sessions(self, username: str, actor: Actor) -> None:
        """End every session of the account."""
        _found(lambda: self.auth.end_sessions_of(username, actor=actor))

    def delete_user(self, username: str, actor: Actor) -> None:
        """Delete the account; its sessions end with it."""
        _found(lambda: self.auth.delete_user(username, actor=actor))


def _found(action: Callable[[], T]) -> T:
    # The shared service methods say "no such user" with LookupError (the CLI prints it).
    try:
        return action()
    except LookupError as error:
        raise AuthError("not_found") from error


def _row_error(
    index: int, username: str | None, slug: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "index": index,
        "status": "error",
        "username": username,
        "error": slug,
    }
    if fields:
        result["fields"] = fields
    return result
