"""``/api/v1/user``: login, refresh, logout, sessions, password; the IoT-style API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from authsvc.auth import (
    auth_service,
    bearer_token,
    current_principal,
    request_client,
    require_access,
)
from authsvc.errors import ok
from authsvc.schemas import login_schema, password_change_schema, refresh_schema

bp = Blueprint("user", __name__, url_prefix="/api/v1/user")


def _json_body() -> Any:
    # Flask answers 415 for a non-JSON Content-Type and 400 for malformed JSON;
    # both reach the envelope through the registered HTTPException handler.
    return request.get_json()


@bp.post("/login")
def login() -> Response:
    """Exchange username + password for a token pair and a new session."""
    body = login_schema.load(_json_body())
    pair = auth_service().login(
        body["username"], body["password"], request_client(body["device_id"])
    )
    return ok(pair.as_dict())


@bp.get("/refresh")
def refresh_from_header() -> Response:
    """Rotate the refresh token sent as ``Authorization: Bearer`` (the IoT shape)."""
    token = bearer_token(request.headers.get("Authorization"))
    return ok(auth_service().refresh(token, request_client()).as_dict())


@bp.post("/refresh")
def refresh_from_body() -> Response:
    """Rotate the refresh token sent as JSON ``{"refresh_token": ...}``."""
    token = refresh_schema.load(_json_body())["refresh_token"]
    return ok(auth_service().refresh(token, request_client()).as_dict())


@bp.post("/logout")
@require_access
def logout() -> Response:
    """End this session and revoke the access token presented."""
    auth_service().logout(current_principal())
    return ok(None)


@bp.post("/logout-all")
@require_access
def logout_all() -> Response:
    """End every session of the user and every access token issued before now."""
    auth_service().logout_all(current_principal())
    return ok(None)


@bp.get("/me")
@require_access
def me() -> Response:
    """Who the access token belongs to: the protected example endpoint."""
    principal = current_principal()
    return ok(
        {
            "user_id": principal.user_id,
            "username": principal.username,
            "roles": list(principal.roles),
            "session_id": principal.session_id,
        }
    )


@bp.get("/sessions")
@require_access
def sessions() -> Response:
    """The user's live sessions (devices), the current one flagged."""
    return ok({"sessions": auth_service().list_sessions(current_principal())})


@bp.delete("/sessions/<session_id>")
@require_access
def end_session(session_id: str) -> Response:
    """End one of the user's sessions."""
    auth_service().end_session(current_principal(), session_id)
    return ok(None)


@bp.post("/password")
@require_access
def change_password() -> Response:
    """Change the password and end every other session."""
    body = password_change_schema.load(_json_body())
    auth_service().change_password(
        current_principal(), body["old_password"], body["new_password"], request_client()
    )
    return ok(None)
