"""The pure DPoP proof verifier (authsvc.dpop): what it accepts, and every way it refuses."""

from __future__ import annotations

import base64
import json
import time

import pytest

from authsvc.dpop import (
    MAX_PROOF_LENGTH,
    NonceSource,
    ProofError,
    normalize_url,
    thumbprint,
    verify_proof,
)
from tests.dpop_keys import BASE_URL, DeviceKey, b64, b64json

URL = BASE_URL + "/api/v1/user/me"


def check(proof: str, *, method: str = "GET", url: str = URL, **kwargs):
    kwargs.setdefault("now", time.time())
    kwargs.setdefault("window", 60)
    return verify_proof(proof, method=method, url=url, **kwargs)


def reason(proof: str, **kwargs) -> str:
    with pytest.raises(ProofError) as caught:
        check(proof, **kwargs)
    return caught.value.reason


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_a_proof_by_each_supported_algorithm_verifies_with_its_rfc7638_thumbprint(alg):
    """ES256, EdDSA and RS256 proofs verify; the thumbprint is the key's RFC 7638 one."""
    key = DeviceKey(alg)
    proof = check(key.proof("GET", "/api/v1/user/me", access_token="tok"), access_token="tok")
    assert proof.jkt == key.jkt
    assert len(proof.replay_id()) == 32


def test_the_rfc7638_example_thumbprint():
    """RFC 7638 section 3.1's worked example gives its published thumbprint."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L"
        "6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-6"
        "5YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd"
        "kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqD"
        "Kgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda k: k.proof("GET", "/api/v1/user/me", header={"typ": "JWT"}), "typ"),
        (lambda k: k.proof("GET", "/api/v1/user/me", header={"alg": "none"}), "alg"),
        (lambda k: k.proof("GET", "/api/v1/user/me", header={"alg": "HS256"}), "alg"),
        (lambda k: k.proof("GET", "/api/v1/user/me", header={"alg": "ES384"}), "alg"),
        (lambda k: k.proof("GET", "/api/v1/user/me", header={"crit": ["b64"]}), "alg"),
        (lambda k: k.proof("POST", "/api/v1/user/me"), "htm"),
        (lambda k: k.proof("GET", "/api/v1/user/sessions"), "htu"),
        (lambda k: k.proof("GET", "/api/v1/user/me", base="https://localhost"), "htu"),
        (lambda k: k.proof("GET", "/api/v1/user/me", base="http://evil.example"), "htu"),
        (lambda k: k.proof("GET", "/api/v1/user/me", iat=time.time() - 61), "iat"),
        (lambda k: k.proof("GET", "/api/v1/user/me", iat=time.time() + 61), "iat"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"iat": "now"}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"iat": True}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"jti": ""}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"jti": "j" * 129}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"htu": 7}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", claims={"nonce": 7}), "claims"),
        (lambda k: k.proof("GET", "/api/v1/user/me", access_token="other"), "ath"),
        (lambda k: k.proof("GET", "/api/v1/user/me"), "ath"),
    ],
)
def test_a_proof_not_made_for_this_request_is_refused(mutate, expected):
    """Wrong typ/alg, htm, htu (path, scheme, host), stale or future iat, bad claims, ath."""
    proof = mutate(DeviceKey())
    assert reason(proof, access_token="tok") == expected


def _resigned(key: DeviceKey, jwk: dict) -> str:
    head = {"typ": "dpop+jwt", "alg": key.alg, "jwk": jwk}
    body = {"jti": "j1", "htm": "GET", "htu": URL, "iat": int(time.time())}
    signing_input = f"{b64json(head)}.{b64json(body)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


@pytest.mark.parametrize(
    "change",
    [
        {"d": "AAAA"},  # private key material
        {"crv": "P-384"},  # unknown curve for ES256
        {"crv": "secp256k1"},
        {"kty": "oct", "k": "c2VjcmV0"},  # a symmetric key
        {"x": "AAAA"},  # wrong length
        {"nested": {"a": {"b": 1}}},
        {"kid": "k" * 65},
        {"key_ops": ["verify"] * 9},
        {f"m{i}": "v" for i in range(8)},  # too many members
    ],
)
def test_a_jwk_that_is_private_symmetric_unknown_nested_or_huge_is_refused(change):
    """Private members, another kty or crv, a short coordinate, nesting, oversize: jwk."""
    key = DeviceKey()
    assert reason(_resigned(key, {**key.jwk, **change})) == "jwk"


def test_a_point_off_the_curve_is_refused():
    """An EC public key that is not on P-256 never reaches the signature check."""
    key = DeviceKey()
    jwk = {**key.jwk, "y": b64((1).to_bytes(32, "big"))}
    assert reason(_resigned(key, jwk)) == "jwk"


def test_a_small_rsa_key_is_refused():
    """RSA below 2048 bits is refused."""
    key = DeviceKey("RS256")
    jwk = {**key.jwk, "n": b64((2**1023 + 1).to_bytes(128, "big"))}
    assert reason(_resigned(key, jwk)) == "jwk"


def test_webcrypto_export_members_are_accepted():
    """A JWK exported by WebCrypto (ext, key_ops) is accepted; its thumbprint ignores them."""
    key = DeviceKey()
    proof = check(_resigned(key, {**key.jwk, "ext": True, "key_ops": ["verify"]}))
    assert proof.jkt == key.jkt


def test_a_proof_signed_by_another_key_than_its_jwk_is_refused():
    """The signature must be by the key in the header."""
    key, other = DeviceKey(), DeviceKey()
    head, body, _ = key.proof("GET", "/api/v1/user/me").split(".")
    forged = f"{head}.{body}.{b64(other.sign(f'{head}.{body}'.encode()))}"
    assert reason(forged) == "signature"


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "not a jwt",
        "a.b",
        "a.b.c.d",
        "x" * (MAX_PROOF_LENGTH + 1),
        f"{b64(b'[]')}.{b64(b'{}')}.AA",
        f"{b64(b'{not json')}.{b64(b'{}')}.AA",
        f"{b64(b'{}')}=.{b64(b'{}')}.AA",  # padding is not base64url
    ],
)
def test_malformed_proofs_are_refused(proof):
    """Not a compact JWS, not JSON objects, padded base64: malformed."""
    assert reason(proof) == "malformed"


def test_non_canonical_base64_is_refused():
    """Setting the unused low bits of the last character makes another spelling: refused."""
    proof = DeviceKey().proof("GET", "/api/v1/user/me")
    head, body, signature = proof.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    tweaked = signature[:-1] + alphabet[last ^ 1]  # 64-byte signature: 86 chars, 4 spare bits
    assert reason(f"{head}.{body}.{tweaked}") == "malformed"


def test_htu_compares_without_query_fragment_default_port_or_case():
    """RFC 9449 section 4.3: scheme and host case, default port, query and fragment ignored."""
    assert normalize_url("HTTP://LocalHost:80/a?x=1#f") == "http://localhost/a"
    assert normalize_url("https://h:443") == "https://h/"
    assert normalize_url("https://h:8443/a") == "https://h:8443/a"
    with pytest.raises(ProofError):
        normalize_url("ftp://h/a")


def test_stateless_nonces_last_one_to_two_slots_and_cannot_be_forged():
    """A nonce of this slot or the previous one is accepted; older, forged or empty is not."""
    source = NonceSource("s" * 32, 60)
    now = 1_000_000.0
    nonce = source.current(now)
    assert source.accepts(nonce, now)
    assert source.accepts(nonce, now + 60)
    assert not source.accepts(nonce, now + 120)
    assert not source.accepts(None, now)
    assert not source.accepts(nonce[:-1] + ("A" if nonce[-1] != "A" else "B"), now)
    assert not NonceSource("t" * 32, 60).accepts(nonce, now)
    key = DeviceKey()
    fresh = key.proof("GET", "/api/v1/user/me", claims={"nonce": source.current(time.time())})
    assert check(fresh, nonce_ok=lambda n: source.accepts(n, time.time())).nonce is not None
    stale = key.proof("GET", "/api/v1/user/me")
    assert reason(stale, nonce_ok=lambda n: source.accepts(n, time.time())) == "nonce"


def test_a_deeply_nested_header_is_malformed_not_a_crash():
    """orjson's depth limit turns into a refusal, never a RecursionError."""
    deep = "[" * 2000 + "]" * 2000
    header = base64.urlsafe_b64encode(json.dumps({"typ": deep}).encode()).rstrip(b"=")
    raw = "{" + '"a":' * 0 + '"jwk":' + deep + "}"
    for segment in (header.decode(), b64(raw.encode())):
        with pytest.raises(ProofError):
            check(f"{segment}.{b64(b'{}')}.AA")
