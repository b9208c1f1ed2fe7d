"""What each outcome of the session scripts means to a caller: its slug and its event.

The store answers with a status (:class:`~authsvc.store.RotationStatus`,
:class:`~authsvc.store.AccessStatus`); the service turns it into an error slug for the
envelope and a domain event for the audit log and metrics, with these tables.
"""

from __future__ import annotations

from authsvc.store import AccessStatus, RotationStatus

REFRESH_FAILURES = {
    RotationStatus.REUSED: "refresh_reused",
    RotationStatus.IDLE: "session_expired",
    RotationStatus.GONE: "session_revoked",
    RotationStatus.REVOKED: "session_revoked",
    RotationStatus.INVALID_SCOPE: "invalid_scope",
    RotationStatus.TRANSPORT_NOT_ALLOWED: "transport_not_allowed",
}
REFRESH_EVENTS = {
    RotationStatus.ROTATED: "refresh_rotated",
    RotationStatus.GRACE: "refresh_grace",
    RotationStatus.REUSED: "refresh_reused",
    RotationStatus.IDLE: "refresh_expired",
    RotationStatus.GONE: "refresh_revoked",
    RotationStatus.REVOKED: "refresh_revoked",
    RotationStatus.INVALID_SCOPE: "refresh_invalid",
    RotationStatus.TRANSPORT_NOT_ALLOWED: "refresh_invalid",
    RotationStatus.KEY_MISMATCH: "refresh_invalid",
    RotationStatus.REPLAY: "refresh_invalid",
}
# A DPoP refusal from the session's script (nothing changed), by metrics reason.
PROOF_REFUSALS = {
    RotationStatus.KEY_MISMATCH: "key_mismatch",
    RotationStatus.REPLAY: "replay",
    AccessStatus.KEY_MISMATCH: "key_mismatch",
    AccessStatus.REPLAY: "replay",
}
# A denylisted token is token_revoked; a token whose session ended, whether deleted
# (logout elsewhere, reuse) or cut off by the user's not-before (logout-all, password
# change, disable), is session_revoked: the same answer whichever state Redis is in.
ACCESS_FAILURES = {
    AccessStatus.DENIED: "token_revoked",
    AccessStatus.GONE: "session_revoked",
    AccessStatus.REVOKED: "session_revoked",
}
