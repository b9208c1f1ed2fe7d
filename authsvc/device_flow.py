"""The device authorization grant (RFC 8628): a keyboard-less device gets its own session.

1. The device asks for codes (:meth:`DeviceFlow.authorize`): a secret ``device_code``
   it keeps, and a short ``user_code`` it shows its owner.
2. The owner, logged in elsewhere, enters the code and approves or denies
   (:meth:`DeviceFlow.describe`, :meth:`DeviceFlow.decide`). A wrong code counts as a
   failed login attempt of that account and network, so 8 characters from a 20-letter
   alphabet (34 bits) cannot be guessed within the throttle.
3. The device polls the token endpoint (:meth:`DeviceFlow.poll`) until it gets the
   tokens of a normal session of the approving user, opened for the asking client
   with the approved scope; a code is redeemed once, atomically.

No Flask here: the views turn the domain errors into RFC 8628 / RFC 6749 answers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from authsvc.clients import (
    ClientRegistry,
    check_requested,
    format_scope,
    granted_scopes,
    parse_scope,
)
from authsvc.dpop import Proof
from authsvc.errors import AuthError
from authsvc.events import emit
from authsvc.networks import login_network
from authsvc.service import AuthService, Client, Principal, normalize_username
from authsvc.store.devices import Decision, DeviceCodes, DeviceRequest, PollStatus
from authsvc.tokens import TokenPair

# RFC 8628 section 6.1: consonants only (no words, no 0/O or 1/I look-alikes).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The grant name a client lists to be allowed the flow (``grants``).
DEVICE_GRANT_NAME = "device_code"
SLOW_DOWN_STEP = 5  # RFC 8628 section 3.5
_DRAWS = 5  # user-code collisions are ~1e-10 likely per draw; five misses mean a bug
_MAX_DEVICE_NAME = 128


def new_user_code() -> str:
    """Eight random characters of :data:`USER_CODE_ALPHABET` (normalised form)."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: str) -> str | None:
    """The code as stored: upper case, no dashes or spaces; None if it cannot be a code."""
    code = "".join(text.split()).replace("-", "").upper()
    if len(code) != USER_CODE_LENGTH or not set(code) <= set(USER_CODE_ALPHABET):
        return None
    return code


def display_user_code(code: str) -> str:
    """``XXXX-XXXX``: how the device shows the code and the page echoes it."""
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True)
class DeviceAuthorization:
    """The RFC 8628 section 3.2 answer to a device."""

    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int

    def as_dict(self) -> dict[str, object]:
        """The JSON body, ``verification_uri_complete`` included."""
        return {
            "device_code": self.device_code,
            "user_code": self.user_code,
            "verification_uri": self.verification_uri,
            "verification_uri_complete": f"{self.verification_uri}?user_code={self.user_code}",
            "expires_in": self.expires_in,
            "interval": self.interval,
        }


class DeviceFlow:
    """Issue, approve and redeem device codes over the service's sessions and throttles."""

    def __init__(self, service: AuthService, codes: DeviceCodes) -> None:
        self.service = service
        self.codes = codes
        self.settings = service.settings
        self.clients: ClientRegistry = service.clients

    def authorize(
        self,
        client_id: str,
        scope: str | None,
        client: Client,
        *,
        verification_uri: str,
        proof: Proof | None = None,
    ) -> DeviceAuthorization:
        """New codes for ``client_id`` (which must allow the grant).

        A DPoP ``proof`` binds the session to come to its key: the poll that collects
        it must carry a proof by the same key. A client that requires DPoP gets
        ``dpop_required`` without one.
        """
        registered = self.clients.resolve(client_id)
        if DEVICE_GRANT_NAME not in registered.grants:
            raise AuthError("unauthorized_client")
        if proof is None and registered.dpop == "required":
            raise AuthError("dpop_required")
        jkt = proof.jkt if proof else ""
        wanted = check_requested(None if scope is None else parse_scope(scope), registered)
        expires_in = self.settings.device_code_ttl
        interval = self.settings.device_poll_interval
        device_code = secrets.token_urlsafe(32)
        for _ in range(_DRAWS):
            user_code = new_user_code()
            if self.codes.issue(
                device_code,
                user_code,
                client_id=registered.id,
                scope=format_scope(wanted),
                jkt=jkt,
                device_name=(client.device_id or "")[:_MAX_DEVICE_NAME],
                ip=client.ip,
                user_agent=(client.user_agent or "")[:_MAX_DEVICE_NAME],
                interval=interval,
                expires_ms=(int(time.time()) + expires_in) * 1000,
            ):
                break
        else:  # pragma: no cover - 20^8 codes; only a broken random source gets here
            raise RuntimeError("could not draw a free user code")
        emit("device_code_issued", client_id=registered.id, ip=client.ip, bound=bool(jkt))
        return DeviceAuthorization(
            device_code=device_code,
            user_code=display_user_code(user_code),
            verification_uri=verification_uri,
            expires_in=expires_in,
            interval=interval,
        )

    def describe(self, user_code: str, principal: Principal, client: Client) -> DeviceRequest:
        """What the code asks for, for the approving user; a wrong code is a counted failure."""
        return self._pending(user_code, principal, client)

    def decide(
        self, user_code: str, principal: Principal, client: Client, *, approve: bool
    ) -> DeviceRequest:
        """Approve or deny the code for the logged-in user (final either way)."""
        request = self._pending(user_code, principal, client)
        code = normalize_user_code(user_code) or ""
        decision = self.codes.decide(code, principal.user_id, approve=approve)
        if decision is Decision.GONE:
            raise AuthError("device_code_unknown")
        if decision is Decision.DECIDED:
            raise AuthError("device_code_used")
        emit(
            "device_approved" if approve else "device_denied",
            user_id=principal.user_id,
            client_id=request.client_id,
            ip=client.ip,
        )
        return request

    def _pending(self, user_code: str, principal: Principal, client: Client) -> DeviceRequest:
        # Every look-up is an attempt on the user's and the network's login budget,
        # handed back when the code is right: guessing codes is guessing passwords.
        attempts = self.service.attempts
        network = login_network(client.ip, self.settings.login_ipv6_prefix)
        attempt = attempts.new(normalize_username(principal.username), network)
        with attempts.handed_back_if_cut_off(attempt):
            attempts.begin(attempt, client.ip, flow="device", lookup=False)
            code = normalize_user_code(user_code)
            request = self.codes.find(code) if code else None
            if request is None:
                emit("device_code_failed", user_id=principal.user_id, ip=client.ip)
                raise AuthError("device_code_unknown")
            attempts.settle(attempt)
        if request.status != "pending":
            raise AuthError("device_code_used")
        return request

    def poll(
        self, device_code: str, client_id: str, client: Client, *, proof: Proof | None = None
    ) -> TokenPair:
        """One poll: the RFC 8628 section 3.5 error, or (once) the tokens of a new session.

        A code asked for with a DPoP proof is redeemed only with a ``proof`` by the same
        key, and its session is bound to that key (the proof remembered against replay).
        """
        registered = self.clients.resolve(client_id)
        if DEVICE_GRANT_NAME not in registered.grants:
            raise AuthError("unauthorized_client")
        result = self.codes.poll(
            device_code, client_id=registered.id, jkt=proof.jkt if proof else ""
        )
        if result.status is PollStatus.SLOW_DOWN:
            raise AuthError("slow_down", retry_after=result.interval)
        if result.status is not PollStatus.APPROVED:
            raise AuthError(_POLL_ERRORS[result.status])
        user = self.service.store.get_user(result.user_id)
        if user is None or user.disabled:
            raise AuthError("access_denied")
        scope = format_scope(set(result.scope.split()) & granted_scopes(user.roles))
        device = Client(ip=client.ip, user_agent=client.user_agent, device_id=result.device_name)
        pair = self.service.open_session(
            user,
            device,
            auth_ms=self.service.store.clock(),
            registered=registered,
            scope=scope,
            # Only a bound code's poll binds: a proof sent for a bearer code is ignored.
            proof=proof if result.jkt else None,
        )
        emit(
            "device_token_issued",
            user_id=user.id,
            session_id=pair.session_id,
            client_id=registered.id,
            ip=client.ip,
        )
        return pair

    def pending(self, *, limit: int = 100) -> list[DeviceRequest]:
        """Codes awaiting a decision, for support (CLI and admin API)."""
        return self.codes.pending(limit=limit)


_POLL_ERRORS = {
    PollStatus.EXPIRED: "expired_token",
    PollStatus.INVALID_GRANT: "invalid_grant",
    PollStatus.PENDING: "authorization_pending",
    PollStatus.DENIED: "access_denied",
    PollStatus.DPOP_MISMATCH: "invalid_dpop_proof",
}
