"""``/api/v1/admin``: accounts and registered clients, for admin tokens (role and scope).

Thin views: load the body or query, call one :class:`~authsvc.admin.AdminService`
method with the acting admin, answer in the envelope. Every view is guarded by
:func:`~authsvc.auth.require_admin`, the one admin policy.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from authsvc.admin import AdminService, api_actor
from authsvc.auth import current_principal, require_admin
from authsvc.errors import ok
from authsvc.oauth_schemas import client_secret_request_schema
from authsvc.schemas import (
    MAX_BULK_ROWS,
    bulk_create_schema,
    client_update_schema,
    new_client_schema,
    password_reset_schema,
    user_query_schema,
)

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")

# A full bulk request is larger than AUTHSVC_MAX_BODY_BYTES allows other requests; its
# cost is bounded by the row count, this only bounds the parsing.
BULK_MAX_BODY_BYTES = MAX_BULK_ROWS * 2048


def _admin() -> AdminService:
    return current_app.extensions["authsvc_admin"]


@bp.post("/users")
@require_admin
def create_users() -> Response:
    """Create accounts in bulk: one result per row, a bad row never stops the others.

    Send `{"users": [{"username", "password", "roles"?}, ...]}` with at most 100 rows.
    Each row answers `created` (with its `user_id`) or `error` with a slug:
    `validation_failed` (see its `fields`) or `username_taken`. Rows are hashed one
    after the other (argon2id): a full request takes a few seconds.
    """
    request.max_content_length = max(BULK_MAX_BODY_BYTES, current_app.config["MAX_CONTENT_LENGTH"])
    body = bulk_create_schema.load(request.get_json())
    return ok(_admin().create_users(body["users"], api_actor(current_principal())))


@bp.get("/users")
@require_admin
def list_users() -> Response:
    """List accounts in username order, a page at a time, optionally by username prefix.

    Pass `data.next_cursor` as `cursor` for the next page (null: the last page). Pages
    come from an index of usernames, never a scan of the keyspace; an account created
    or deleted meanwhile appears or not, but no account is listed twice.
    """
    query = user_query_schema.load(request.args)
    return ok(_admin().list_users(query["q"], query["cursor"], query["limit"]))


@bp.get("/users/<username>")
@require_admin
def show_user(username: str) -> Response:
    """One account and its live sessions (devices)."""
    return ok(_admin().show_user(username, current_principal()))


@bp.delete("/users/<username>")
@require_admin
def delete_user(username: str) -> Response:
    """Delete an account; its sessions end with it."""
    _admin().delete_user(username, api_actor(current_principal()))
    return ok(None)


@bp.post("/users/<username>/disable")
@require_admin
def disable_user(username: str) -> Response:
    """Disable an account and end all its sessions."""
    _admin().set_disabled(username, True, api_actor(current_principal()))
    return ok(None)


@bp.post("/users/<username>/enable")
@require_admin
def enable_user(username: str) -> Response:
    """Enable an account again (sessions ended by the disable stay ended)."""
    _admin().set_disabled(username, False, api_actor(current_principal()))
    return ok(None)


@bp.post("/users/<username>/password")
@require_admin
def reset_password(username: str) -> Response:
    """Set a new password and end all the account's sessions."""
    body = password_reset_schema.load(request.get_json())
    _admin().reset_password(username, body["password"], api_actor(current_principal()))
    return ok(None)


@bp.post("/users/<username>/logout-all")
@require_admin
def end_sessions(username: str) -> Response:
    """End every session of an account (it can log in again)."""
    _admin().end_sessions(username, api_actor(current_principal()))
    return ok(None)


@bp.get("/clients")
@require_admin
def list_clients() -> Response:
    """List the clients: the built-in `default` first, then the registered ones by id."""
    return ok(_admin().clients.list())


@bp.post("/clients")
@require_admin
def create_client() -> Response:
    """Register a client (an application that logs users in) and the scopes it may ask for.

    Defaults: scopes `["profile"]`, both transports, the service's token lifetimes. A
    taken or reserved id, or a setting the service refuses (a lifetime above the
    service's), is `validation_failed` naming the field.
    """
    body = new_client_schema.load(request.get_json())
    return ok(_admin().clients.create(body, api_actor(current_principal())))


@bp.get("/clients/<client_id>")
@require_admin
def show_client(client_id: str) -> Response:
    """One client's settings (the built-in `default` included)."""
    return ok(_admin().clients.show(client_id))


@bp.patch("/clients/<client_id>")
@require_admin
def update_client(client_id: str) -> Response:
    """Change some settings of a registered client: the fields sent, the others stay.

    A null lifetime goes back to the service's. The change applies to new logins: live
    sessions keep their scope and lifetimes. The built-in `default` client cannot be
    changed (`validation_failed` on `client_id`).
    """
    body = client_update_schema.load(request.get_json())
    return ok(_admin().clients.update(client_id, body, api_actor(current_principal())))


@bp.delete("/clients/<client_id>")
@require_admin
def delete_client(client_id: str) -> Response:
    """Delete a registered client: it can no longer log in; live sessions run out.

    The built-in `default` client cannot be deleted (`validation_failed` on `client_id`).
    """
    _admin().clients.delete(client_id, api_actor(current_principal()))
    return ok(None)


@bp.post("/clients/<client_id>/secret")
@require_admin
def issue_client_secret(client_id: str) -> Response:
    """Give a registered client a new secret: it becomes (or stays) confidential.

    The secret is in this answer only (it is stored hashed). The previous secret stays
    valid for `overlap_seconds` (default one day; 0 ends it now), so the client's
    instances can move to the new one. A confidential client may use the
    `client_credentials` grant of `/oauth/token`, `/oauth/introspect` and `/oauth/revoke`.
    """
    body = client_secret_request_schema.load(request.get_json(silent=True) or {})
    return ok(
        _admin().clients.issue_secret(
            client_id, body["overlap_seconds"], api_actor(current_principal())
        )
    )


@bp.delete("/clients/<client_id>/secret")
@require_admin
def remove_client_secret(client_id: str) -> Response:
    """Make a client public again: its secrets go and its machine tokens stop working."""
    _admin().clients.remove_secret(client_id, api_actor(current_principal()))
    return ok(None)
