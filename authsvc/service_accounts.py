"""The account flows: sessions of a user, password changes, administration."""

from __future__ import annotations

import uuid

from authsvc.clients import DEFAULT_CLIENT_ID
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.service_core import ServiceCore
from authsvc.service_model import (
    CLI,
    SESSION_ID_RE,
    USERNAME_RE,
    Actor,
    Client,
    InvalidUsername,
    Principal,
    UsernameTaken,
    check_password_length,
    normalize_username,
)
from authsvc.store import RevocationStatus, User


class AccountFlows(ServiceCore):
    """What a user does to their account and what an admin does to any account."""

    def users(self) -> list[User]:
        """Every account (admin listing)."""
        return self.store.list_users()

    def list_sessions(self, principal: Principal) -> list[dict[str, object]]:
        """The caller's live sessions, the current one flagged."""
        return self.sessions_of(principal.user_id, current_session_id=principal.session_id)

    def sessions_of(
        self, user_id: str, *, current_session_id: str | None = None
    ) -> list[dict[str, object]]:
        """The live sessions of ``user_id``, newest first; ``current_session_id`` flagged."""
        return [
            {
                "session_id": s.session_id,
                "device_id": s.device_id,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "created": s.created_ms // 1000,
                "last_refresh": s.last_refresh_ms // 1000,
                "expires": s.expires_ms // 1000,
                "client_id": s.client_id or DEFAULT_CLIENT_ID,
                "bound": s.bound,
                "current": s.session_id == current_session_id,
            }
            for s in self.store.list_sessions(
                user_id, idle_ms=self.settings.session_idle_timeout * 1000
            )
        ]

    def end_session(self, principal: Principal, session_id: str) -> None:
        """End one of the caller's own sessions; another user's id is simply not found."""
        if not SESSION_ID_RE.match(session_id) or not self.store.end_session(
            principal.user_id, session_id
        ):
            raise AuthError("not_found")
        emit(
            "session_revoked",
            user_id=principal.user_id,
            session_id=session_id,
            reason="user_request",
        )

    def change_password(
        self, principal: Principal, old_password: str, new_password: str, client: Client
    ) -> None:
        """Change the password after checking the old one; end every other session.

        Wrong old passwords count against the same throttles as failed logins, so a
        stolen access token cannot be used to guess the password.
        """
        user = self.store.get_user(principal.user_id)
        if user is None:
            raise AuthError("session_revoked")
        attempt = self._attempt(user.username, client)
        with self.attempts.handed_back_if_cut_off(attempt):
            self.attempts.begin(attempt, client.ip, flow="password_change", lookup=False)
            if not self.passwords.verify(user.password_hash, old_password):
                emit("password_change_failed", user_id=user.id, ip=client.ip)
                raise AuthError(
                    "validation_failed",
                    fields={"old_password": ["The current password is wrong."]},
                )
            self.attempts.settle(attempt)
        # Compare-and-set against the hash just verified: an admin reset landing during
        # the (slow) check must not be silently overwritten.
        status = self.store.end_all_sessions(
            user.id,
            keep_sid=principal.session_id,
            new_password_hash=self.passwords.hash(new_password),
            verified_hash=user.password_hash,
        )
        if status is RevocationStatus.CHANGED:
            # A parallel login upgraded the hash of the same password: nothing changed,
            # and the same request succeeds when sent again.
            raise AuthError(
                "validation_failed",
                fields={"old_password": ["The password changed meanwhile; try again."]},
            )
        if status is not RevocationStatus.DONE:
            # REVOKED: an admin reset won and ended this session; GONE: user deleted.
            raise AuthError("session_revoked")
        emit("password_changed", user_id=user.id, ip=client.ip)

    # -- administration (CLI and /api/v1/admin) ------------------------------------
    def add_user(
        self,
        username: str,
        password: str,
        roles: tuple[str, ...] = (),
        *,
        actor: Actor = CLI,
    ) -> User:
        """Create an account; InvalidUsername or UsernameTaken (both ValueError) when it can't."""
        name = normalize_username(username)
        if not USERNAME_RE.match(name):
            raise InvalidUsername(
                "username must be 1-64 characters of a-z 0-9 . _ @ + - "
                "(after NFKC normalisation and case folding)"
            )
        check_password_length(password)
        uid = uuid.uuid4().hex
        if not self.store.create_user(uid, name, self.passwords.hash(password), roles):
            raise UsernameTaken(f"username {name!r} is taken")
        emit("user_created", user_id=uid, **actor.fields())
        user = self.store.get_user(uid)
        assert user is not None  # noqa: S101 - just written
        return user

    def find_user(self, username: str) -> User:
        """The account named ``username``; LookupError when there is none."""
        uid = self.store.find_user_id(normalize_username(username))
        user = self.store.get_user(uid) if uid else None
        if user is None:
            raise LookupError(f"no user {username!r}")
        return user

    def reset_password(self, username: str, password: str, *, actor: Actor = CLI) -> None:
        """Set a new password (admin) and end every session of the account."""
        check_password_length(password)
        user = self.find_user(username)
        status = self.store.end_all_sessions(
            user.id, new_password_hash=self.passwords.hash(password)
        )
        if status is RevocationStatus.GONE:
            raise LookupError(f"no user {username!r}")
        emit("logout_all", user_id=user.id, reason="password_reset", **actor.fields())

    def end_sessions_of(self, username: str, *, actor: Actor = CLI) -> None:
        """End every session of the account (admin), O(1) like a logout-all."""
        user = self.find_user(username)
        if self.store.end_all_sessions(user.id) is RevocationStatus.GONE:
            raise LookupError(f"no user {username!r}")
        emit("logout_all", user_id=user.id, reason="admin_request", **actor.fields())

    def set_disabled(self, username: str, disabled: bool, *, actor: Actor = CLI) -> None:
        """Disable (ending every session) or re-enable an account."""
        user = self.find_user(username)
        if not self.store.set_disabled(user.id, disabled):
            raise LookupError(f"no user {username!r}")
        if disabled:
            emit("logout_all", user_id=user.id, reason="account_disabled", **actor.fields())
        else:
            emit("account_enabled", user_id=user.id, **actor.fields())

    def delete_user(self, username: str, *, actor: Actor = CLI) -> None:
        """Delete an account; its sessions end with it."""
        user = self.find_user(username)
        self.store.delete_user(user.id, user.username)
        emit("logout_all", user_id=user.id, reason="account_deleted", **actor.fields())
