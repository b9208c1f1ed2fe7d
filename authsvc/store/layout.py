"""The key layout of the store: every Redis key name authsvc uses, in one place.

The scripts live one per file in ``authsvc/lua/``; this docstring is where keys are named,
and :class:`KeyLayout` is the only code that spells them.

No Flask here. Callers pass plain values and get plain values back.

Key layout (``P`` is the configured prefix, ``U`` a user id). Every key of one user
shares the hash tag ``{u:U}``, so the multi-key scripts run unchanged on Redis Cluster:

``P:{u:U}:user``          hash  username, pw (argon2 hash), roles, disabled, nbf (ms), created
``P:{u:U}:sessions``      zset  sid -> absolute expiry (ms); the per-user session index
``P:{u:U}:s:<sid>``       hash  created, auth (ms, the session's not-before), last (ms),
                                exp (ms), jti/ajti/iat (current pair), pjti/rot (previous
                                refresh jti and when it was first rotated), cid
                                (client id), scope (space-separated), attl (access-token
                                lifetime, s), tr (the client's transports at login,
                                space-separated; absent: any), jkt (DPoP: the thumbprint
                                of the key the session is bound to; absent: bearer);
                                cid/scope/attl absent: a session opened before clients
                                existed; TTL = exp
``P:{u:U}:s:<sid>:meta``  string JSON {device_id, user_agent, ip}; kept apart so the hash
                                stays in Redis's compact listpack encoding; TTL = exp
``P:{u:U}:deny:<jti>``    string an access token revoked by logout; TTL = exp - now + leeway
``P:{u:U}:dpop:<hash>``   string a DPoP proof already presented (hash of jkt and jti) -> the
                                attempt id; TTL = until the proof's iat window closes
``P:uname:<username>``    string username -> user id ("pending:<uid>:<deadline ms>", with a
                                TTL, while the user is being created)
``P:users``               set   every user id (admin listing, never a keyspace scan)
``P:usernames``           zset  "<username> <user id>" per user, every score 0: the admin
                                listing's name index (:mod:`authsvc.store.users`)
``P:throttle:{a:<name>}:known`` zset  network -> ms until which the account is known there
                                (a login succeeded from it); at most 20; TTL = the latest
``P:throttle:{a:<name>}:any``  zset  attempt ids from networks the account is not known on
``P:throttle:{a:<name>}:net:<net>``  zset  attempt ids from one known network
``P:throttle:net:<net>``       zset  attempt ids from one client network, any account;
                                every attempt bucket: TTL = window, at most limit members
``P:{clients}:c:<id>``     hash  a registered client: name, scopes, transports (space-separated),
                                attl, rttl (s; empty: the service's), created (ms); a
                                confidential client also: sec (its secret's hash), psec and
                                psecexp (the previous secret's hash and until when, ms, it
                                is still accepted), cep (random epoch, new each time the
                                client becomes confidential; its machine tokens' jti starts
                                with it); no TTL (client_secrets.py)
``P:{clients}:deny:<id>:<jti>`` string a revoked machine (client-credentials) token;
                                TTL = exp - now + leeway
``P:{clients}:ids``        set   every registered client id (listing, never a keyspace scan)
``P:{keyring}:keys``           hash  kid -> signing-key record (private key encrypted), #manifest
``P:{keyring}:version``        string the key ring's change counter (keyring.py)
``P:{device}:dc:<H>``    hash  one device authorization (RFC 8628), ``H`` = SHA-256 of the
                               device code (the code itself is never stored): status
                               (pending, approved, denied, redeemed), ucode, cid, scope,
                               jkt (the DPoP key thumbprint the device asked with, '' for
                               none), name (the device's name), ip, ua, interval (s), last
                               (ms of the last poll), uid (once decided), created, exp
                               (ms); TTL = expires_in (devices.py)
``P:{device}:uc:<CODE>`` string the user code (normalised) -> the record's key; TTL = expires_in
``P:{device}:pending``   zset  record key -> expiry (ms): the codes awaiting a decision,
                               for operators (never a keyspace scan); TTL = the latest

The device keys share the hash tag ``{device}``, so each device script is atomic on a
Cluster too; the flow is an onboarding path (a few requests per device), so one slot
is no hot spot.

A session is alive while its hash exists, its user exists and is enabled, and its
``auth`` is not older than the user's ``nbf``. Logout-all and password changes move
``nbf`` strictly forward: one write, whatever the number of sessions or tokens. No
script writes a user hash that does not exist (a delete is final).
"""

from __future__ import annotations


class KeyLayout:
    """The Redis key names under one prefix; every store class builds its keys here."""

    def __init__(self, prefix: str = "authsvc") -> None:
        self.prefix = prefix

    # -- one user's slot: {u:U} -------------------------------------------------
    def user(self, uid: str) -> str:
        """The user's hash."""
        return f"{self.prefix}:{{u:{uid}}}:user"

    def sessions(self, uid: str) -> str:
        """The user's session index (zset sid -> expiry)."""
        return f"{self.prefix}:{{u:{uid}}}:sessions"

    def session(self, uid: str, sid: str) -> str:
        """One session's hash."""
        return f"{self.prefix}:{{u:{uid}}}:s:{sid}"

    def meta(self, uid: str, sid: str) -> str:
        """One session's device metadata (JSON string)."""
        return f"{self.prefix}:{{u:{uid}}}:s:{sid}:meta"

    def denied(self, uid: str, jti: str) -> str:
        """A revoked access token."""
        return f"{self.prefix}:{{u:{uid}}}:deny:{jti}"

    def proof(self, uid: str, replay_id: str) -> str:
        """A DPoP proof already presented."""
        # In the user's slot, so the session scripts can remember it (Cluster).
        return f"{self.prefix}:{{u:{uid}}}:dpop:{replay_id}"

    def session_keys(self, uid: str, sid: str) -> list[str]:
        """The keys one session occupies (for memory accounting and tests)."""
        return [self.session(uid, sid), self.meta(uid, sid)]

    # -- users and names --------------------------------------------------------
    def users(self) -> str:
        """The set of every user id."""
        return f"{self.prefix}:users"

    def username(self, username: str) -> str:
        """A username's owner (user id, or a pending reservation)."""
        return f"{self.prefix}:uname:{username}"

    def username_index(self) -> str:
        """The admin listing's name index (zset, every score 0)."""
        return f"{self.prefix}:usernames"

    # -- clients: {clients} -----------------------------------------------------
    def client(self, client_id: str) -> str:
        """A registered client's hash."""
        return f"{self.prefix}:{{clients}}:c:{client_id}"

    def client_ids(self) -> str:
        """The set of every registered client id."""
        return f"{self.prefix}:{{clients}}:ids"

    def client_denied(self, client_id: str, jti: str) -> str:
        """A revoked machine (client-credentials) token."""
        return f"{self.prefix}:{{clients}}:deny:{client_id}:{jti}"

    # -- login throttles --------------------------------------------------------
    def network_bucket(self, network: str) -> str:
        """Attempt ids from one client network, any account."""
        return f"{self.prefix}:throttle:net:{network}"

    def account_throttle(self, username: str, network: str) -> list[str]:
        """An account's known-networks zset and its two attempt buckets, in that order."""
        # One hash tag per account: its three keys share a cluster slot. (A "}" in a
        # login's username cuts the tag at the same place in all three.)
        account = f"{self.prefix}:throttle:{{a:{username}}}"
        return [f"{account}:known", f"{account}:any", f"{account}:net:{network}"]

    # -- the key ring: {keyring} ------------------------------------------------
    def keyring_records(self) -> str:
        """Kid -> signing-key record, and the sealed manifest."""
        return f"{self.prefix}:{{keyring}}:keys"

    def keyring_version(self) -> str:
        """The key ring's change counter."""
        return f"{self.prefix}:{{keyring}}:version"

    # -- device codes: {device} -------------------------------------------------
    def device_record(self, device_hash: str) -> str:
        """One device authorization, by the hash of its device code."""
        return f"{self.prefix}:{{device}}:dc:{device_hash}"

    def device_user_code(self, user_code: str) -> str:
        """A user code -> its record's key."""
        return f"{self.prefix}:{{device}}:uc:{user_code}"

    def device_pending(self) -> str:
        """The codes awaiting a decision."""
        return f"{self.prefix}:{{device}}:pending"
