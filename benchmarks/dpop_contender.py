"""The DPoP contender of benchmarks/run.py: authsvc with device-bound sessions (RFC 9449).

Same server and settings as contender (c), except that every session is bound to one
device key (ES256) and every request carries a fresh proof. wrk cannot sign, so the
proofs are made before each wrk run and each is sent once (the server remembers every
proof's jti and refuses a second use): S1 sends ``Authorization: DPoP <token>`` with a
proof carrying ``ath``; S2 a refresh token from the rotating pool with a refresh proof.
Proofs are made ahead of use, so the contender runs with ``AUTHSVC_DPOP_PROOF_WINDOW=300``
(the proof's ``iat`` may be minutes old when wrk sends it); this changes no per-request
work. ``--dpop-rate`` sizes the proof files: wrk sending more requests per second than
that runs out and the extra requests count as errors in the report.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PROOF_WINDOW = 300
ME, REFRESH, LOGIN = "/api/v1/user/me", "/api/v1/user/refresh", "/api/v1/user/login"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class DeviceKey:
    """The benchmark device's ES256 key; picklable as PEM for the signing processes."""

    def __init__(self, pem: bytes | None = None) -> None:
        self.private: Any = (
            serialization.load_pem_private_key(pem, password=None)
            if pem
            else ec.generate_private_key(ec.SECP256R1())
        )
        numbers = self.private.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        self._header = _b64(json.dumps(header).encode())

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """One fresh proof (new jti, iat now) for ``method url``."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = _b64(hashlib.sha256(access_token.encode()).digest())
        signing_input = f"{self._header}.{_b64(json.dumps(claims).encode())}"
        der = self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _sign_batch(job: tuple[bytes, str, str, str | None, int]) -> list[str]:
    pem, method, url, access_token, count = job
    key = DeviceKey(pem)
    return [key.proof(method, url, access_token) for _ in range(count)]


def write_proofs(
    key: DeviceKey,
    path: Path,
    method: str,
    url: str,
    count: int,
    access_token: str | None = None,
    processes: int = 2,
) -> None:
    """``count`` proofs, one a line, signed in ``processes`` processes."""
    batch = max(count // (processes * 4), 1)
    jobs = [(key.pem(), method, url, access_token, batch) for _ in range(-(-count // batch))]
    with ProcessPoolExecutor(processes) as pool, path.open("w") as out:
        for proofs in pool.map(_sign_batch, jobs):
            out.write("\n".join(proofs) + "\n")


def login(url: str, key: DeviceKey, username: str, password: str) -> dict[str, Any]:
    """A bound login over HTTP; the token pair."""
    response = requests.post(
        url + LOGIN,
        json={"username": username, "password": password},
        headers={"DPoP": key.proof("POST", url + LOGIN)},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["data"]


def prepare(
    contender: Any,
    scenario: str,
    key: DeviceKey,
    workdir: Path,
    *,
    seconds: float,
    rate: int,
    threads: int,
    sessions: int,
    accounts: int,
    password: str,
) -> list[str]:
    """The files a DPoP wrk script reads: a token (S1) or tokens (S2), and proofs."""
    count = int(seconds * rate) + 1000
    proofs = workdir / f"dpop-{scenario}-proofs"
    if scenario == "S1":
        if not contender.access_token:
            contender.access_token = login(contender.url, key, "bench0", password)["access_token"]
        token = workdir / "dpop-access"
        token.write_text(contender.access_token + "\n")
        write_proofs(key, proofs, "GET", contender.url + ME, count, contender.access_token)
        return [str(token), str(proofs), str(threads)]
    tokens = workdir / "dpop-refresh"
    pairs = [login(contender.url, key, f"bench{i % accounts}", password) for i in range(sessions)]
    tokens.write_text("\n".join(p["refresh_token"] for p in pairs) + "\n")
    write_proofs(key, proofs, "GET", contender.url + REFRESH, count)
    return [str(tokens), str(proofs), str(threads)]


def probe_headers(contender: Any, key: DeviceKey, scenario: str) -> dict[str, str]:
    """Headers for one probe request of ``scenario`` (round-trip counting)."""
    if scenario == "S1":
        return {
            "Authorization": f"DPoP {contender.access_token}",
            "DPoP": key.proof("GET", contender.url + ME, contender.access_token),
        }
    return {"DPoP": key.proof("GET", contender.url + REFRESH)}
