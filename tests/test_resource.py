"""The resource-server helper (authsvc.resource): DPoP-bound tokens verified offline."""

from __future__ import annotations

import time

import pytest

from authsvc import create_app
from authsvc.keys import KeyDirectory
from authsvc.resource import DPoPResource, ReplayCache, ResourceError
from tests.conftest import PASSWORD, USERNAME, login_pair
from tests.dpop_keys import DeviceKey

LOGIN = "/api/v1/user/login"
ORDERS = "https://orders.example/api/orders"


@pytest.fixture
def issued(fake_redis, tmp_path):
    """An ES256 authsvc, a device key, a bound access token and the JWKS."""
    KeyDirectory(tmp_path, "ES256").generate(activate=True)
    app = create_app(
        {"JWT_ALGORITHM": "ES256", "JWT_KEY_DIR": str(tmp_path)}, redis_client=fake_redis
    )
    app.extensions["authsvc"].add_user(USERNAME, PASSWORD)
    client = app.test_client()
    key = DeviceKey()
    response = client.post(
        LOGIN,
        json={"username": USERNAME, "password": PASSWORD},
        headers={"DPoP": key.proof("POST", LOGIN)},
    )
    token = response.get_json()["data"]["access_token"]
    jwks = client.get("/.well-known/jwks.json").get_json()
    resource = DPoPResource(jwks=lambda: jwks, issuer="authsvc", audience="authsvc")
    return resource, key, token, client


def call(resource: DPoPResource, token: str, proof: str, **kw):
    return resource.verify(
        authorization=kw.pop("authorization", f"DPoP {token}"),
        proof=proof,
        method=kw.pop("method", "GET"),
        url=kw.pop("url", ORDERS),
        **kw,
    )


def test_a_bound_token_with_its_proof_is_accepted_offline(issued):
    """Signature from the JWKS, cnf.jkt = the proof's key, ath, htm, htu: the claims."""
    resource, key, token, _ = issued
    proof = key.proof("GET", "/api/orders", access_token=token, base="https://orders.example")
    claims = call(resource, token, proof)
    assert claims["cnf"] == {"jkt": key.jkt}


def refused(resource, token, proof, **kw) -> tuple[str, str]:
    with pytest.raises(ResourceError) as caught:
        call(resource, token, proof, **kw)
    return caught.value.error, caught.value.reason


def test_every_attack_on_the_helper_is_refused(issued):
    """Another key, a replayed proof, a missing ath, a Bearer scheme, an unbound or forged
    token: each refused with its RFC 9449 error."""
    resource, key, token, client = issued
    base = "https://orders.example"

    def good() -> str:
        return key.proof("GET", "/api/orders", access_token=token, base=base)

    thief = DeviceKey().proof("GET", "/api/orders", access_token=token, base=base)
    assert refused(resource, token, thief) == ("invalid_dpop_proof", "key_mismatch")
    once = good()
    call(resource, token, once)
    assert refused(resource, token, once) == ("invalid_dpop_proof", "replay")
    no_ath = key.proof("GET", "/api/orders", base=base)
    assert refused(resource, token, no_ath) == ("invalid_dpop_proof", "ath")
    assert refused(resource, token, good(), method="POST") == ("invalid_dpop_proof", "htm")
    assert refused(resource, token, good(), authorization=f"Bearer {token}")[0] == "invalid_token"
    assert refused(resource, token, None) == ("invalid_dpop_proof", "missing")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    assert refused(resource, forged, good())[0] == "invalid_token"
    bearer_token = login_pair(client)["access_token"]
    unbound = key.proof("GET", "/api/orders", access_token=bearer_token, base=base)
    assert refused(resource, bearer_token, unbound)[0] == "invalid_token"  # no cnf
    error = ResourceError("invalid_dpop_proof", "x")
    assert error.challenge == 'DPoP algs="ES256 EdDSA RS256", error="invalid_dpop_proof"'


def test_the_replay_cache_forgets_expired_entries_and_stays_bounded():
    """Entries past their time go; at the size bound the oldest go first."""
    cache = ReplayCache(max_entries=2)
    now = time.time()
    assert cache.first_use("a", now + 10, now)
    assert not cache.first_use("a", now + 10, now)
    assert cache.first_use("a", now + 30, now + 11)  # expired, forgotten
    assert cache.first_use("b", now + 30, now + 11)
    assert cache.first_use("c", now + 30, now + 11)  # evicts the oldest
    assert cache.first_use("a", now + 30, now + 11)
