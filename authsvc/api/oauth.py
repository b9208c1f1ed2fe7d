"""``/oauth/*``: the plain OAuth 2.x endpoints (RFC 6749 token, RFC 7662, RFC 7009).

Form-encoded requests, plain JSON answers, RFC 6749 section 5.2 errors (the one error
path answers in that shape on these paths, :mod:`authsvc.oauth_errors`). The logic is
the enveloped API's: the refresh grant is :meth:`AuthService.refresh`, introspection and
revocation are :class:`~authsvc.introspection.TokenInspector`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Response, current_app, jsonify, request

from authsvc.api import oauth_device
from authsvc.api.forms import load_form
from authsvc.auth import auth_service, request_client, request_proof
from authsvc.client_credentials import ClientCredentials
from authsvc.device_flow import DEVICE_CODE_GRANT
from authsvc.errors import AuthError
from authsvc.introspection import Caller, TokenInspector
from authsvc.oauth_errors import OAuthError
from authsvc.oauth_schemas import oauth_token_operation_schema, oauth_token_request_schema

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


@dataclass(frozen=True)
class PresentedClient:
    """The client a token request names: by HTTP Basic, by the form, or by ``client_id`` only."""

    client_id: str
    secret: str | None
    basic: bool


def _credentials() -> ClientCredentials:
    return current_app.extensions["authsvc_client_credentials"]


def _inspector() -> TokenInspector:
    return current_app.extensions["authsvc_introspection"]


def _presented_client(body: dict[str, Any]) -> PresentedClient | None:
    """The client of the request (RFC 6749 section 2.3.1); one method only."""
    try:
        credentials = request.authorization
    except ValueError:  # Werkzeug's Basic parser raises on non-ASCII base64
        credentials = None
    if credentials is not None and credentials.type == "basic":
        username = credentials.username or ""
        if body["client_secret"] is not None:
            raise OAuthError("invalid_request", "more than one client authentication method")
        if body["client_id"] not in (None, username, unquote(username)):
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        return PresentedClient(username, credentials.password or "", basic=True)
    if request.headers.get("Authorization"):
        raise AuthError("invalid_client")
    if body["client_id"] is None:
        if body["client_secret"] is not None:
            raise OAuthError("invalid_request", "client_secret without client_id")
        return None
    return PresentedClient(body["client_id"], body["client_secret"], basic=False)


def _either(action: Any, presented: PresentedClient) -> Any:
    """Run ``action(client_id, secret)``; Basic credentials are tried form-decoded as well.

    RFC 6749 section 2.3.1 has Basic credentials form-urlencoded first (Authlib does
    so); plain HTTP clients send them as they are. Generated ids and secrets read
    the same either way.
    """
    try:
        return action(presented.client_id, presented.secret)
    except AuthError as error:
        decoded = (unquote(presented.client_id), unquote(presented.secret or ""))
        if error.slug != "invalid_client" or not presented.basic:
            raise
        if decoded == (presented.client_id, presented.secret):
            raise
        return action(*decoded)


def _token_answer(data: dict[str, Any]) -> Response:
    response = jsonify(data)
    # RFC 6749 section 5.1.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/token")
def token() -> Response:
    """The OAuth 2.x token endpoint: `refresh_token` and `client_credentials` grants.

    `grant_type=refresh_token` rotates a refresh token exactly as
    `/api/v1/user/refresh` does (reuse detection, grace window, `scope` narrowing); a
    public client sends its `client_id` alone, a confidential one may authenticate, and
    either must be the token's client. `grant_type=client_credentials` gives a
    confidential client (HTTP Basic or `client_id` + `client_secret` in the form) an
    access token for itself: no refresh token; throttled like logins.
    """
    body = load_form(oauth_token_request_schema)
    presented = _presented_client(body)
    grant = body["grant_type"]
    if grant == "refresh_token":
        if body["refresh_token"] is None:
            raise OAuthError("invalid_request", "refresh_token is required")
        client_id = None
        if presented is not None:
            if presented.secret is not None:
                client_id = _either(_credentials().authenticate, presented).id
            else:
                client_id = presented.client_id
        pair = auth_service().refresh(
            body["refresh_token"],
            request_client(),
            scope=body["scope"],
            client_id=client_id,
            # A DPoP-bound refresh token needs a proof by its key here too (RFC 9449).
            proof=request_proof(token_endpoint=True),
        )
        return _token_answer(pair.as_dict())
    if grant == "client_credentials":
        if presented is None or presented.secret is None:
            raise AuthError("invalid_client")
        ip = request_client().ip
        machine = _either(
            lambda cid, secret: _credentials().grant(cid, secret, body["scope"], ip), presented
        )
        return _token_answer(machine.as_dict())
    if grant == DEVICE_CODE_GRANT:
        return _token_answer(oauth_device.poll(body).as_dict())
    raise OAuthError(
        "unsupported_grant_type",
        f"grant_type must be refresh_token, client_credentials or {DEVICE_CODE_GRANT}",
    )


def _caller(body: dict[str, Any]) -> Caller:
    presented = _presented_client(body)
    if presented is None or presented.secret is None:
        raise AuthError("invalid_client")
    return _either(_inspector().authenticate, presented)


def _hint(body: dict[str, Any]) -> str | None:
    # RFC 7009 section 2.2.1 / RFC 7662 section 2.1: an unknown hint is not an error
    # for introspection; the search simply covers every kind.
    hint = body["token_type_hint"]
    return hint if hint in ("access_token", "refresh_token") else None


@bp.post("/introspect")
def introspect() -> Response:
    """RFC 7662 introspection: `{"active": true, ...claims}` or only `{"active": false}`."""
    body = load_form(oauth_token_operation_schema)
    _caller(body)
    return _token_answer(_inspector().introspect(body["token"], _hint(body)))


@bp.post("/revoke")
def revoke() -> Response:
    """RFC 7009 revocation: 200 with an empty body, also for an unknown or dead token.

    A refresh token ends its session; an access token (a machine token too) is
    denylisted by its `jti`. A registered client may revoke only its own tokens.
    """
    body = load_form(oauth_token_operation_schema)
    caller = _caller(body)
    _inspector().revoke(body["token"], _hint(body), caller=caller)
    return _token_answer({})
