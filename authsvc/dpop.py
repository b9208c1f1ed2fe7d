"""DPoP proofs (RFC 9449): parse and verify one proof, compute key thumbprints. Pure.

No Flask, no Redis: the replay check of a proof's ``jti`` happens in the Lua script
that already checks the session (one round trip); this module only says whether a
proof is well formed, signed by the key in its own header, and made for this request
(``htm``, ``htu``, ``iat``, ``ath``, ``nonce``). The resource-server helper
(:mod:`authsvc.resource`) reuses it.

Accepted: ``ES256`` (P-256), ``EdDSA`` (Ed25519) and ``RS256`` (2048-4096 bit)
public keys. Refused: ``none``, HMAC and every other ``alg``, a ``jwk`` holding private
key members, unknown members of unusual types, nested objects, unknown curves, and
any non-canonical base64url (one proof, one spelling).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PROOF_TYP = "dpop+jwt"
ALGORITHMS = ("ES256", "EdDSA", "RS256")
MAX_PROOF_LENGTH = 4096  # an RS256 proof with a 4096-bit key is about 1.4 KB
MAX_JTI_LENGTH = 128
MAX_JWK_MEMBERS = 10
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 4096
# Public members a JWK may carry besides the key itself (WebCrypto exports ext and
# key_ops); anything else, and every private member, is refused.
_OPTIONAL_JWK_MEMBERS = frozenset({"alg", "use", "kid", "ext", "key_ops"})
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_REQUIRED_JWK_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
_KTY_BY_ALG = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519"), "RS256": ("RSA", None)}
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PADDING = {0: "", 2: "==", 3: "="}
_SPARE_BITS = {2: 0b1111, 3: 0b11}  # bits of the last character no byte uses
# Stateless, so shared: built once instead of for every signature check.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()
_PKCS1V15 = padding.PKCS1v15()
_HEADER_CACHE_SIZE = 4096  # devices seen lately, per worker process


class ProofError(ValueError):
    """A refused proof; ``reason`` is a short stable word for metrics, never the proof itself."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Proof:
    """A verified proof: the key's RFC 7638 thumbprint and the claims that matter later."""

    jkt: str
    jti: str
    iat: int
    nonce: str | None = None

    def replay_id(self) -> str:
        """The proof's identity for the replay memory: hashed, so a long jti stays small."""
        return hashlib.sha256(f"{self.jkt}:{self.jti}".encode()).hexdigest()[:32]


def b64url(raw: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(segment: Any) -> bytes:
    """Decode canonical unpadded base64url; anything else (padding, stray bits) is refused."""
    if not isinstance(segment, str) or not _B64URL.match(segment):
        raise ProofError("malformed")
    tail = len(segment) % 4
    # One spelling per value: a last character of a partial group carries 4 (or 2) bits
    # that decoding drops, and they must be zero; a lone character is no byte at all.
    # (Cheaper than encoding the result again to compare, with the same outcome.)
    if tail == 1 or (tail and _B64URL_ALPHABET.index(segment[-1]) & _SPARE_BITS[tail]):
        raise ProofError("malformed")
    # The alphabet is checked above, so the standard decoder sees only its own letters.
    return binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + _PADDING[tail])


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim for ``access_token``: base64url(SHA-256(ASCII))."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a (checked) public JWK."""
    required = _REQUIRED_JWK_MEMBERS[jwk["kty"]]
    canonical = orjson.dumps({name: jwk[name] for name in required})  # sorted, no spaces
    return b64url(hashlib.sha256(canonical).digest())


def _check_jwk(jwk: Any, alg: str) -> dict[str, Any]:
    """``jwk`` if it is a public key of the kind ``alg`` needs; else ProofError.

    Nothing private, nested or unknown is accepted.
    """
    if not isinstance(jwk, dict) or len(jwk) > MAX_JWK_MEMBERS:
        raise ProofError("jwk")
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise ProofError("jwk")
    kty, crv = _KTY_BY_ALG[alg]
    if jwk.get("kty") != kty:
        raise ProofError("jwk")
    required = _REQUIRED_JWK_MEMBERS[kty]
    for name, value in jwk.items():
        if name in required:
            if not isinstance(value, str):
                raise ProofError("jwk")
        elif name not in _OPTIONAL_JWK_MEMBERS:
            raise ProofError("jwk")
        elif name == "key_ops":
            if not isinstance(value, list) or len(value) > 8:
                raise ProofError("jwk")
            if not all(isinstance(op, str) and len(op) <= 32 for op in value):
                raise ProofError("jwk")
        elif not isinstance(value, str | bool) or (isinstance(value, str) and len(value) > 64):
            raise ProofError("jwk")
    if any(name not in jwk for name in required):
        raise ProofError("jwk")
    if crv is not None and jwk["crv"] != crv:
        raise ProofError("jwk")
    return jwk


def _public_key(jwk: dict[str, Any]) -> Any:
    """The ``cryptography`` public key of a checked JWK (point and size validated)."""
    try:
        if jwk["kty"] == "EC":
            x, y = _decode(jwk["x"]), _decode(jwk["y"])
            if len(x) != 32 or len(y) != 32:
                raise ProofError("jwk")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            return numbers.public_key()  # raises ValueError for a point not on the curve
        if jwk["kty"] == "OKP":
            x = _decode(jwk["x"])
            if len(x) != 32:
                raise ProofError("jwk")
            return Ed25519PublicKey.from_public_bytes(x)
        n, e = _decode(jwk["n"]), _decode(jwk["e"])
        modulus = int.from_bytes(n, "big")
        if not MIN_RSA_BITS <= modulus.bit_length() <= MAX_RSA_BITS or not 1 <= len(e) <= 8:
            raise ProofError("jwk")
        return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), modulus).public_key()
    except ValueError as error:
        if isinstance(error, ProofError):
            raise
        raise ProofError("jwk") from error


@dataclass(frozen=True)
class _CheckedHeader:
    """What a proof header yields once checked: its ``alg``, key thumbprint and key object."""

    alg: str
    jkt: str
    key: Any


class _HeaderCache:
    """Checked proof headers per exact header segment (base64url text); bounded LRU.

    A device sends the same header (``typ``, ``alg``, ``jwk``) with every proof, and
    checking it costs more than the rest of the proof besides the signature: decoding,
    the JWK checks, the thumbprint and building the key object (a point check, and
    OpenSSL's first use of a new key). The key is the header's exact text, so an entry
    is only ever reused for a byte-identical header: another JWK, even with the same
    ``kid`` or members in another order, is another text and is checked from scratch.
    Only headers that passed every check are stored. The signature is never cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, _CheckedHeader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, segment: str) -> _CheckedHeader | None:
        """The checked header for this exact segment, if it is remembered."""
        with self._lock:
            checked = self._entries.get(segment)
            if checked is not None:
                self._entries.move_to_end(segment)
            return checked

    def put(self, segment: str, checked: _CheckedHeader) -> None:
        """Remember a header that passed every check; the least recently used goes first."""
        with self._lock:
            self._entries[segment] = checked
            self._entries.move_to_end(segment)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every header (tests and benchmarks: the cost of a first proof)."""
        with self._lock:
            self._entries.clear()


_HEADERS = _HeaderCache(_HEADER_CACHE_SIZE)


def _verify_signature(alg: str, key: Any, signing_input: bytes, signature: bytes) -> None:
    try:
        if alg == "ES256":
            if len(signature) != 64:
                raise ProofError("signature")
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
        elif alg == "EdDSA":
            key.verify(signature, signing_input)
        else:
            key.verify(signature, signing_input, _PKCS1V15, _SHA256)
    except InvalidSignature as error:
        raise ProofError("signature") from error


def normalize_url(url: str) -> str:
    """``url`` as ``htu`` is compared (RFC 9449 section 4.3): no query or fragment.

    Scheme and host are case-folded and a default port dropped (RFC 3986 sections
    6.2.2 and 6.2.3); an empty path is ``/``. Raises ProofError for a non-HTTP URL.
    """
    # The same few URLs come back with every request (the service's own, and each
    # client's htu for it): urlsplit and its properties cost more than a cache lookup.
    # Refusals are not cached (lru_cache keeps no exceptions).
    return _normalized(url)


@lru_cache(maxsize=512)
def _normalized(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ProofError("htu") from error
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ProofError("htu")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _split(proof: str) -> list[str]:
    if len(proof) > MAX_PROOF_LENGTH or not _COMPACT_JWS.match(proof):
        raise ProofError("malformed")
    return proof.split(".")


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_decode(segment))
    except orjson.JSONDecodeError as error:
        raise ProofError("malformed") from error
    if not isinstance(value, dict):
        raise ProofError("malformed")
    return value


def parse_proof(proof: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split and decode a compact proof: (header, payload, signing input, signature).

    Only the shape is checked here; nothing is trusted before :func:`verify_proof`.
    """
    header_segment, payload_segment, signature_segment = _split(proof)
    header, payload = _json_object(header_segment), _json_object(payload_segment)
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return header, payload, signing_input, _decode(signature_segment)


def _check_header(header: dict[str, Any]) -> _CheckedHeader:
    """A decoded header's ``typ``, ``alg`` and ``jwk`` checked; its key built."""
    if header.get("typ") != PROOF_TYP:
        raise ProofError("typ")
    alg = header.get("alg")
    if alg not in ALGORITHMS or "crit" in header or "b64" in header:
        raise ProofError("alg")
    jwk = _check_jwk(header.get("jwk"), alg)
    return _CheckedHeader(alg=alg, jkt=thumbprint(jwk), key=_public_key(jwk))


def _read(proof: str) -> tuple[_CheckedHeader, dict[str, Any], bytes, bytes]:
    """The proof's checked header, payload, signing input and signature; nothing verified.

    A header seen before (byte for byte) is not decoded or checked again. Refusal
    reasons come in the same order either way: a malformed proof is ``malformed``
    before its header is judged.
    """
    header_segment, payload_segment, signature_segment = _split(proof)
    checked = _HEADERS.get(header_segment)
    if checked is None:
        header = _json_object(header_segment)
        payload = _json_object(payload_segment)
        signature = _decode(signature_segment)
        checked = _check_header(header)
        _HEADERS.put(header_segment, checked)
    else:
        payload = _json_object(payload_segment)
        signature = _decode(signature_segment)
    return checked, payload, f"{header_segment}.{payload_segment}".encode("ascii"), signature


def _number(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ProofError("claims")
    return float(value)


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: float,
    window: int,
    access_token: str | None = None,
    nonce_ok: Callable[[str | None], bool] | None = None,
) -> Proof:
    """Verify one DPoP proof for this request; raise :class:`ProofError` with a reason.

    ``url`` is the request URL as the client saw it (query ignored); ``window`` is how
    far ``iat`` may be from ``now`` either way, in seconds. With ``access_token`` the
    proof must carry its ``ath`` (a resource request). With ``nonce_ok`` the proof's
    ``nonce`` must satisfy it (``use_dpop_nonce`` otherwise). The replay check of the
    ``jti`` is the caller's (see :meth:`Proof.replay_id`).
    """
    header, payload, signing_input, signature = _read(proof)
    jkt = header.jkt
    _verify_signature(header.alg, header.key, signing_input, signature)
    jti, htm, htu = payload.get("jti"), payload.get("htm"), payload.get("htu")
    if not (isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH):
        raise ProofError("claims")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise ProofError("claims")
    iat = _number(payload.get("iat"))
    nonce = payload.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise ProofError("claims")
    if htm != method:
        raise ProofError("htm")
    if normalize_url(htu) != normalize_url(url):
        raise ProofError("htu")
    if abs(now - iat) > window:
        raise ProofError("iat")
    if access_token is not None:
        ath = payload.get("ath")
        expected = access_token_hash(access_token)
        if not isinstance(ath, str) or not hmac.compare_digest(ath, expected):
            raise ProofError("ath")
    if nonce_ok is not None and not nonce_ok(nonce):
        raise ProofError("nonce")
    return Proof(jkt=jkt, jti=jti, iat=int(iat), nonce=nonce)


class NonceSource:
    """Stateless server nonces (RFC 9449 section 8): an HMAC of a time slot.

    Any worker on any host with the same secret makes and checks the same nonces,
    with no Redis call. The current and the previous slot are accepted, so a nonce
    lives between one and two slots.
    """

    def __init__(self, secret: str, slot_seconds: int) -> None:
        self._secret = secret.encode()
        self._slot = slot_seconds

    def _mac(self, slot: int) -> str:
        digest = hmac.new(self._secret, f"dpop-nonce:{slot}".encode(), hashlib.sha256).digest()
        return f"{slot}.{b64url(digest[:18])}"

    def current(self, now: float) -> str:
        """The nonce to hand out now (``DPoP-Nonce`` header)."""
        return self._mac(int(now // self._slot))

    def accepts(self, nonce: str | None, now: float) -> bool:
        """Whether ``nonce`` was made in this slot or the previous one."""
        if not nonce or len(nonce) > 64:
            return False
        slot_text, _, _ = nonce.partition(".")
        if not slot_text.isdigit() or len(slot_text) > 15:
            return False
        current = int(now // self._slot)
        slot = int(slot_text)
        return slot in (current, current - 1) and hmac.compare_digest(self._mac(slot), nonce)
