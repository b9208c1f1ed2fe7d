"""``/api/v1/user``: login, refresh, logout, sessions, password; the IoT-style API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from authsvc.auth import (
    auth_service,
    authenticate_request,
    bearer_token,
    current_principal,
    raise_fast_path_failure,
    request_client,
    request_proof,
    require_access,
)
from authsvc.cookies import clear_refresh_cookies, cookie_refresh_credentials, set_refresh_cookies
from authsvc.errors import ok
from authsvc.schemas import (
    cookie_refresh_schema,
    login_schema,
    password_change_schema,
    refresh_schema,
)
from authsvc.service import Principal
from authsvc.tokens import TokenPair

bp = Blueprint("user", __name__, url_prefix="/api/v1/user")


def _json_body() -> Any:
    # Flask answers 415 for a non-JSON Content-Type and 400 for malformed JSON;
    # both reach the envelope through the registered HTTPException handler.
    return request.get_json()


def _pair_response(pair: TokenPair, *, cookie: bool) -> Response:
    if not cookie:
        return ok(pair.as_dict())
    response = ok(pair.as_dict(include_refresh_token=False))
    set_refresh_cookies(response, pair)
    return response


def _cookie_refresh(token: str, csrf: str, scope: str | None = None) -> Response:
    pair = auth_service().refresh(
        token,
        request_client(),
        csrf_value=csrf,
        scope=scope,
        transport="cookie",
        proof=request_proof(token_endpoint=True),
    )
    return _pair_response(pair, cookie=True)


@bp.post("/login")
def login() -> Response:
    """Exchange username + password for a token pair and a new session."""
    body = login_schema.load(_json_body())
    pair = auth_service().login(
        body["username"],
        body["password"],
        request_client(body["device_id"]),
        client_id=body["client_id"],
        scope=body["scope"],
        transport=body["transport"],
        proof=request_proof(token_endpoint=True),
    )
    return _pair_response(pair, cookie=body["transport"] == "cookie")


@bp.get("/refresh")
def refresh_from_header() -> Response:
    """Rotate the refresh token sent as ``Authorization: Bearer`` (IoT) or as a cookie."""
    raise_fast_path_failure()
    if (cookie := cookie_refresh_credentials()) is not None:
        return _cookie_refresh(*cookie)
    token = bearer_token(request.headers.get("Authorization"))
    proof = request_proof(token_endpoint=True)
    return ok(auth_service().refresh(token, request_client(), proof=proof).as_dict())


@bp.post("/refresh")
def refresh_from_body() -> Response:
    """Rotate the refresh token sent as JSON ``{"refresh_token": ...}`` or as a cookie.

    The cookie form takes no body, or ``{"scope": ...}`` to narrow the session.
    """
    if not request.content_length and (cookie := cookie_refresh_credentials()) is not None:
        return _cookie_refresh(*cookie)
    raw = _json_body()
    if (
        isinstance(raw, dict)
        and "refresh_token" not in raw
        and (cookie := cookie_refresh_credentials()) is not None
    ):
        return _cookie_refresh(*cookie, scope=cookie_refresh_schema.load(raw)["scope"])
    body = refresh_schema.load(raw)
    pair = auth_service().refresh(
        body["refresh_token"],
        request_client(),
        scope=body["scope"],
        proof=request_proof(token_endpoint=True),
    )
    return ok(pair.as_dict())


@bp.post("/logout")
def logout() -> Response:
    """End this session: by access token (which is revoked too) or by the refresh cookie.

    The cookie form (with its CSRF header) lets a browser whose access token is lost
    or expired still end its session.
    """
    service = auth_service()
    if (cookie := cookie_refresh_credentials()) is not None:
        service.logout_by_refresh_token(*cookie, proof=request_proof())
    else:
        service.logout(authenticate_request())
    response = ok(None)
    clear_refresh_cookies(response)
    return response


@bp.post("/logout-all")
@require_access
def logout_all() -> Response:
    """End every session of the user and every access token issued before now."""
    auth_service().logout_all(current_principal())
    response = ok(None)
    clear_refresh_cookies(response)
    return response


@bp.get("/me")
@require_access
def me() -> Response:
    """Who the access token belongs to: the protected example endpoint."""
    return ok(me_document(current_principal()))


def me_document(principal: Principal) -> dict[str, Any]:
    """``/me``'s data (shared with the fast path, authsvc/api/fastpath.py)."""
    return {
        "user_id": principal.user_id,
        "username": principal.username,
        "roles": list(principal.roles),
        "session_id": principal.session_id,
        "client_id": principal.client_id,
        "scope": " ".join(sorted(principal.scopes)),
        # Whether the session is bound to a device key (DPoP), and to which.
        "bound": principal.jkt is not None,
        "cnf": {"jkt": principal.jkt} if principal.jkt else None,
    }


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
