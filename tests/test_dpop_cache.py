"""The checked-header cache of authsvc.dpop: faster for a device's next proofs, never laxer.

A header that passed every check is remembered under its exact text (its key object
with it); these tests pin down that nothing else can ride on it.
"""

from __future__ import annotations

import time

import pytest

from authsvc import dpop
from authsvc.dpop import ProofError, verify_proof
from tests.dpop_keys import BASE_URL, DeviceKey, b64, b64json

URL = BASE_URL + "/api/v1/user/me"


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with no header remembered (the cache is per process)."""
    dpop._HEADERS.clear()
    yield
    dpop._HEADERS.clear()


def check(proof: str) -> dpop.Proof:
    return verify_proof(proof, method="GET", url=URL, now=time.time(), window=60)


def reason(proof: str) -> str:
    with pytest.raises(ProofError) as caught:
        check(proof)
    return caught.value.reason


def signed(key: DeviceKey, header: dict, body: dict | None = None) -> str:
    """A proof with exactly this header, signed by ``key`` (whatever the header says)."""
    body = body or {"jti": f"j{time.time_ns()}", "htm": "GET", "htu": URL, "iat": int(time.time())}
    signing_input = f"{b64json(header)}.{b64json(body)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def header_of(key: DeviceKey, **extra: object) -> dict:
    return {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk, **extra}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_a_remembered_header_never_verifies_a_signature_by_another_key(alg):
    """Key A's header, checked and remembered, with a signature by key B: refused, every time."""
    owner, thief = DeviceKey(alg), DeviceKey(alg)
    assert check(owner.proof("GET", "/api/v1/user/me")).jkt == owner.jkt
    for _ in range(2):
        assert reason(signed(thief, header_of(owner))) == "signature"
    assert check(owner.proof("GET", "/api/v1/user/me")).jkt == owner.jkt


def test_another_jwk_with_the_same_kid_is_checked_as_itself():
    """Same kid, another key: a new header text, verified against its own key, own jkt."""
    first, second = DeviceKey(), DeviceKey()
    first_jwk = {**first.jwk, "kid": "device-1"}
    second_jwk = {**second.jwk, "kid": "device-1"}
    assert check(signed(first, {**header_of(first), "jwk": first_jwk})).jkt == first.jkt
    assert check(signed(second, {**header_of(second), "jwk": second_jwk})).jkt == second.jkt
    # The second key signing under the first's header (same kid) gets nowhere.
    assert reason(signed(second, {**header_of(first), "jwk": first_jwk})) == "signature"


def test_a_lookalike_jwk_is_checked_from_scratch():
    """The remembered key's x with another y (off the curve) is refused as a jwk."""
    key, other = DeviceKey(), DeviceKey()
    check(key.proof("GET", "/api/v1/user/me"))
    lookalike = {**key.jwk, "y": other.jwk["y"]}
    assert reason(signed(key, {**header_of(key), "jwk": lookalike})) == "jwk"


def test_the_same_key_spelled_another_way_verifies_with_the_same_thumbprint():
    """Members in another order are another header text: checked again, same RFC 7638 jkt."""
    key = DeviceKey()
    reordered = {name: key.jwk[name] for name in reversed(list(key.jwk))}
    assert check(key.proof("GET", "/api/v1/user/me")).jkt == key.jkt
    assert check(signed(key, {**header_of(key), "jwk": reordered})).jkt == key.jkt


def test_a_refused_header_is_not_remembered():
    """A header refused once is refused again for the same reason (nothing cached)."""
    key = DeviceKey()
    proof = key.proof("GET", "/api/v1/user/me", header={"typ": "JWT"})
    assert reason(proof) == "typ"
    assert dpop._HEADERS.get(proof.split(".")[0]) is None
    assert reason(proof) == "typ"


def test_with_a_remembered_header_the_rest_of_the_proof_is_still_checked():
    """Cached or not: a malformed payload, a tweaked signature, a wrong htm are refused."""
    key = DeviceKey()
    proof = key.proof("GET", "/api/v1/user/me")
    check(proof)
    head, body, signature = proof.split(".")
    assert reason(f"{head}.{b64(b'[]')}.{signature}") == "malformed"
    assert reason(f"{head}.{body}.{signature[:-2]}AA") in ("malformed", "signature")
    assert reason(key.proof("POST", "/api/v1/user/me")) == "htm"
    with pytest.raises(ProofError):
        check(proof.replace(head, head + "A", 1))


def test_the_cache_is_bounded_and_keeps_the_recently_used():
    """At its size the least recently used header goes; the one just used stays."""
    cache = dpop._HeaderCache(2)
    entries = {name: dpop._CheckedHeader(alg="ES256", jkt=name, key=None) for name in "abc"}
    cache.put("a", entries["a"])
    cache.put("b", entries["b"])
    assert cache.get("a") is entries["a"]  # now the most recently used
    cache.put("c", entries["c"])
    assert cache.get("b") is None
    assert cache.get("a") is entries["a"]
    assert cache.get("c") is entries["c"]
