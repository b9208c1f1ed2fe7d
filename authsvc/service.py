"""The authentication flows: login, refresh, access checks, logout, sessions, accounts.

Built on :mod:`authsvc.store` (Redis) and :mod:`authsvc.tokens` (JWT); raises
:class:`~authsvc.errors.AuthError` with a stable slug. No request objects here:
the views pass in what they read from HTTP.
"""

from __future__ import annotations

from authsvc.service_accounts import AccountFlows
from authsvc.service_login import LoginFlows
from authsvc.service_model import (
    CLI,
    MAX_USER_AGENT_LENGTH,
    Actor,
    Client,
    InvalidUsername,
    Principal,
    UsernameTaken,
    normalize_username,
)
from authsvc.service_tokens import TokenFlows

__all__ = [
    "CLI",
    "MAX_USER_AGENT_LENGTH",
    "Actor",
    "AuthService",
    "Client",
    "InvalidUsername",
    "Principal",
    "UsernameTaken",
    "normalize_username",
]


class AuthService(LoginFlows, TokenFlows, AccountFlows):
    """Every flow of the service over one store, one hasher and one set of settings.

    The flows live by concern in their own modules; this class only puts them together,
    so callers keep one object with every public method.
    """
