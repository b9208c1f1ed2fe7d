"""Device codes in Redis (RFC 8628): the pending authorizations of keyboard-less devices.

No Flask here. The keys (``P:{device}:...``, one hash tag, so each script is atomic on
a Redis Cluster too) are named in :mod:`authsvc.store.layout`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

from authsvc.store.base import RedisClient, Script, now_ms
from authsvc.store.layout import KeyLayout
from authsvc.store.scripts import _script

_ISSUE_LUA = _script("device_issue")
_DECIDE_LUA = _script("device_decide")
_POLL_LUA = _script("device_poll")


class PollStatus(Enum):
    """What a device's poll of the token endpoint found."""

    EXPIRED = "expired"
    INVALID_GRANT = "invalid_grant"
    SLOW_DOWN = "slow_down"
    PENDING = "pending"
    DENIED = "denied"
    DPOP_MISMATCH = "dpop_mismatch"
    APPROVED = "approved"


class Decision(Enum):
    """What a user's approval or denial did."""

    DONE = "ok"
    GONE = "gone"  # expired, never issued, or the code names another record
    DECIDED = "decided"  # approved, denied or redeemed already: final


@dataclass(frozen=True)
class DeviceRequest:
    """A device authorization as the approving user (and operators) may see it."""

    user_code: str
    client_id: str
    scope: str
    device_name: str
    ip: str
    user_agent: str
    status: str
    created_ms: int
    expires_ms: int
    bound: bool  # the device asked with a DPoP proof: its session will be bound


@dataclass(frozen=True)
class Poll:
    """The answer of one poll; the session fields are set only when ``APPROVED``."""

    status: PollStatus
    interval: int = 0
    user_id: str = ""
    scope: str = ""
    client_id: str = ""
    device_name: str = ""
    jkt: str = ""


def hash_device_code(device_code: str) -> str:
    """The key material stored for a device code: its SHA-256 (hex).

    The code is 256 random bits, so a fast hash is enough: a copy of Redis cannot be
    turned back into a code that polls.
    """
    return hashlib.sha256(device_code.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class DeviceCodes:
    """The device-code records: issue, look up, decide, poll, list pending."""

    def __init__(self, client: RedisClient, *, prefix: str = "authsvc") -> None:
        self.redis = client
        self.prefix = prefix
        self.layout = KeyLayout(prefix)
        self._issue = Script(client, _ISSUE_LUA)
        self._decide = Script(client, _DECIDE_LUA)
        self._poll = Script(client, _POLL_LUA)

    def _record_key(self, device_hash: str) -> str:
        return self.layout.device_record(device_hash)

    def _user_code_key(self, user_code: str) -> str:
        return self.layout.device_user_code(user_code)

    def _pending_key(self) -> str:
        return self.layout.device_pending()

    def issue(
        self,
        device_code: str,
        user_code: str,
        *,
        client_id: str,
        scope: str,
        jkt: str,
        device_name: str,
        ip: str,
        user_agent: str,
        interval: int,
        expires_ms: int,
    ) -> bool:
        """Store a new pending authorization; False (nothing written) if ``user_code`` is taken."""
        fields: dict[str, str | int] = {
            "cid": client_id,
            "scope": scope,
            "jkt": jkt,
            "name": device_name,
            "ip": ip,
            "ua": user_agent,
            "interval": interval,
        }
        flat: list[str | int] = [item for pair in fields.items() for item in pair]
        return bool(
            self._issue(
                keys=[
                    self._record_key(hash_device_code(device_code)),
                    self._user_code_key(user_code),
                    self._pending_key(),
                ],
                args=[now_ms(), expires_ms, user_code, *flat],
            )
        )

    def find(self, user_code: str) -> DeviceRequest | None:
        """The authorization a (normalised) user code names, if it is still there."""
        record_key = self.redis.get(self._user_code_key(user_code))
        if record_key is None:
            return None
        return self._request(_text(record_key))

    def _request(self, record_key: str) -> DeviceRequest | None:
        raw = self.redis.hgetall(record_key)
        if not raw:
            return None
        record = {_text(k): _text(v) for k, v in raw.items()}
        return DeviceRequest(
            user_code=record.get("ucode", ""),
            client_id=record.get("cid", ""),
            scope=record.get("scope", ""),
            device_name=record.get("name", ""),
            ip=record.get("ip", ""),
            user_agent=record.get("ua", ""),
            status=record.get("status", ""),
            created_ms=int(record.get("created") or 0),
            expires_ms=int(record.get("exp") or 0),
            bound=bool(record.get("jkt")),
        )

    def decide(self, user_code: str, user_id: str, *, approve: bool) -> Decision:
        """Approve or deny the pending authorization of ``user_code`` for ``user_id``.

        Two round trips (the user code names the record, then the atomic decision):
        approval is a person's click, not a hot path.
        """
        record_key = self.redis.get(self._user_code_key(user_code))
        if record_key is None:
            return Decision.GONE
        answer = self._decide(
            keys=[_text(record_key), self._user_code_key(user_code), self._pending_key()],
            args=["approved" if approve else "denied", user_id, user_code],
        )
        return Decision(_text(answer))

    def poll(self, device_code: str, *, client_id: str, jkt: str) -> Poll:
        """One poll by the device: pending, slow down, denied, or (once) the approval."""
        answer = [
            _text(part)
            for part in self._poll(
                keys=[self._record_key(hash_device_code(device_code)), self._pending_key()],
                args=[now_ms(), client_id, jkt],
            )
        ]
        status = PollStatus(answer[0])
        if status is PollStatus.SLOW_DOWN:
            return Poll(status, interval=int(answer[1]))
        if status is PollStatus.APPROVED:
            uid, scope, cid, name, bound_jkt = answer[1:6]
            return Poll(
                status,
                user_id=uid,
                scope=scope,
                client_id=cid,
                device_name=name,
                jkt=bound_jkt,
            )
        return Poll(status)

    def pending(self, *, limit: int = 100) -> list[DeviceRequest]:
        """The authorizations still awaiting a decision, oldest expiry first (for support)."""
        now = now_ms()
        keys = self.redis.zrangebyscore(self._pending_key(), now, "+inf", start=0, num=limit)
        requests = (self._request(_text(key)) for key in keys)
        return [request for request in requests if request is not None]
