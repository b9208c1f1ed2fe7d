"""Domain events: what happened, announced once, for the audit log and metrics to follow.

The service emits an event for every outcome that matters (``login_failed``,
``refresh_rotated`` ...). Subscribers (the audit logger below, the metrics in
:mod:`authsvc.observability`) connect to :data:`auth_event`. Fields are ids, IPs and
reasons only: never a token, a password or a hash.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace

_signals = Namespace()
auth_event = _signals.signal("authsvc.auth-event")

audit_log = logging.getLogger("authsvc.audit")

# The events that make an audit line; the others (refresh_rotated, ...) feed metrics.
AUDIT_EVENTS = frozenset(
    {
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "refresh_reused",
        # A DPoP proof refused: with user_id/session_id when a bound refresh token came
        # without its key (what a stolen token looks like); never the proof itself.
        "dpop_refused",
        "session_revoked",
        "logout_all",
        "password_changed",
        "password_change_failed",
        "key_rotated",
        # Administration (CLI and /api/v1/admin): each line names its actor ("cli" or
        # "api") and, over the API, the acting admin's admin_user_id.
        "user_created",
        "users_bulk_created",
        "account_enabled",
        "client_created",
        "client_updated",
        "client_deleted",
        "client_secret_issued",
        "client_secret_removed",
        # A wrong client secret at /oauth/token (client_credentials), like login_failed.
        "client_auth_failed",
        # The device flow (RFC 8628); a wrong user code counts like a failed login.
        "device_code_issued",
        "device_code_failed",
        "device_approved",
        "device_denied",
        "device_token_issued",
    }
)
_WARNING_EVENTS = frozenset({"refresh_reused"})


def emit(event: str, **fields: Any) -> None:
    """Announce ``event`` with its fields to every subscriber."""
    auth_event.send(event, **fields)


@auth_event.connect
def _write_audit_line(event: str, **fields: Any) -> None:
    if event not in AUDIT_EVENTS:
        return
    level = logging.WARNING if event in _WARNING_EVENTS else logging.INFO
    text = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
    audit_log.log(level, "event=%s %s", event, text, extra={"event": event, "fields": fields})
