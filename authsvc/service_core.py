"""The state every flow of the service shares: settings, store, hasher, clients, proofs."""

from __future__ import annotations

import time

from authsvc.attempts import LoginAttempts
from authsvc.binding import ProofPolicy
from authsvc.clients import ClientRegistry
from authsvc.config import Settings
from authsvc.networks import login_network
from authsvc.passwords import Passwords
from authsvc.service_model import Client
from authsvc.store import Store
from authsvc.store.login import Attempt


class ServiceCore:
    """One store, one hasher and one set of settings; the flows are mixins over it."""

    def __init__(self, settings: Settings, store: Store, passwords: Passwords) -> None:
        self.settings = settings
        self.store = store
        self.passwords = passwords
        self.clients = ClientRegistry(settings, store)
        self.proofs = ProofPolicy(settings)
        self.attempts = LoginAttempts(settings, store)

    @staticmethod
    def _now() -> int:
        """The service's clock, in whole seconds: token times and session times read it here."""
        return int(time.time())

    def _attempt(self, name: str, client: Client) -> Attempt:
        """A login attempt for ``name`` from the client's network (throttled per both)."""
        return self.attempts.new(name, login_network(client.ip, self.settings.login_ipv6_prefix))

    def redis_ready(self) -> bool:
        """True when Redis answers (a Redis error propagates as an outage)."""
        return self.store.ping()
